"""The served student at each GGUF quantisation: speed, memory and gold-fact accuracy, to choose the export default.

    python -m eval.bench_quant [--student VERSION] [--types q8_0,q4_0] [--conversations 12] [--no-accuracy]

The student version's adapter is merged into its base once and written at every type (`distill.export`; files
cached in $ASSISTANT_HOME/cache, the version's own GGUF used for its own type). For each type, in one run:

- file size, and the memory the process gains loading it and serving one reply (weights as mapped, the KV
  cache of every slot, llama.cpp's buffers): run one type per process (--types q4_0) for a clean figure, since
  a second model in the same process shares what the first already mapped;
- raw llama.cpp on the app's prompts (`eval.bench_serve.raw_arm`): generated tokens/s, time to first token
  p50 on turns 3+ of the held-out multi-turn conversations;
- gold-fact accuracy on the labelled test turns, served as the chat serves it (`eval.bench_grounding`).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from assistant import students
from assistant.grounding import Budget, budget_of
from assistant.models import FakeModel, GroundedStudent, LlamaStudent
from assistant.settings import Settings
from distill.sample import open_services
from eval.bench_grounding import gold_turns, served_accuracy
from eval.bench_serve import raw_arm, summary, test_conversations


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:"))


def variants(settings, row: dict, types: list[str]) -> dict[str, Path]:
    """A GGUF of the version at every type: its own file for its own type, the others exported once and cached."""
    own = Path(row["gguf_path"])
    paths = {t: settings.cache_dir / f"quant-{row['version']}-{t}.gguf" for t in types}
    paths[row["gguf_type"]] = own
    missing = [t for t, p in paths.items() if not p.exists()]
    if missing:
        from peft import PeftModel

        from distill.base_model import load_base
        from distill.export import export_gguf

        merged = PeftModel.from_pretrained(load_base(settings.student_path, settings.cache_dir)[0],
                                           str(own.parent / "adapter")).merge_and_unload()
        for t in missing:
            print(f"exporting {row['version']} as {t.upper()} ...", flush=True)
            export_gguf(merged, Path(settings.student_path), paths[t], t, name=f"{row['version']}-{t}")
    return {t: paths[t] for t in types}


def measure(services, settings, path: Path, budget: Budget, conversations, turns, accuracy: bool = True) -> dict:
    before = rss_mb()
    inner = LlamaStudent(path, name=path.stem, n_ctx=settings.student_context, n_threads=settings.student_threads,
                         max_tokens=settings.max_new_tokens, slots=settings.student_slots,
                         saved_mb=settings.student_state_cache_mb)
    model = GroundedStudent(inner, services.retriever, budget)
    model.complete(turns[0]["history"])
    memory = rss_mb() - before
    speed = summary(raw_arm(model, services.retriever, conversations, settings.max_new_tokens))
    scores = (served_accuracy(model, turns, settings.max_new_tokens) if accuracy
              else {"accuracy": float("nan"), "low": float("nan"), "high": float("nan")})
    return {"file_mb": path.stat().st_size / 1e6, "memory_mb": memory, **speed, **scores}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", help="model version (default: the serving one)")
    parser.add_argument("--types", default="q8_0,q4_0", help="GGUF types (distill.export.TYPES)")
    parser.add_argument("--conversations", type=int, default=12)
    parser.add_argument("--no-accuracy", action="store_true", help="speed and memory only")
    args = parser.parse_args(argv)
    settings = replace(Settings.from_env(), seed_sample=False)
    # nothing loaded before the variants (the serving student would be): memory is measured per variant
    services = open_services(settings, student=FakeModel())
    row = students.resolve(services.store, args.student)
    if row is None or not students.retrieval_augmented(row):
        raise SystemExit("needs a retrieval-augmented student version with its adapter (assistant train)")
    version, turns = gold_turns(services, settings)
    _, conversations = test_conversations(services, settings, args.conversations)
    paths = variants(settings, row, [t.strip().lower() for t in args.types.split(",") if t.strip()])
    print(f"\nstudent {row['version']}; dataset {version}: {len(turns)} test turns with gold facts, "
          f"{len(conversations)} multi-turn conversations for speed\n")
    print(f"{'type':8}{'file MB':>9}{'memory MB':>11}{'tok/s':>8}{'TTFT p50':>10}{'reply p50':>11}{'accuracy':>10}"
          f"{'95% interval':>16}")
    for qtype, path in paths.items():
        r = measure(services, settings, path, budget_of(json.loads(row.get("config") or "{}")), conversations, turns,
                    accuracy=not args.no_accuracy)
        print(f"{qtype:8}{r['file_mb']:>9.0f}{r['memory_mb']:>11.0f}{r['tokens_per_s']:>8.1f}{r['ttft_p50']:>10.0f}"
              f"{r['reply_p50']:>11.0f}{r['accuracy']:>10.1%}{'':>4}{r['low']:.1%}-{r['high']:.1%}", flush=True)


if __name__ == "__main__":
    main()
