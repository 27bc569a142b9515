"""Training on long conversations with the defaults: peak memory, tokens per epoch and speed, plain vs
retrieval-augmented, measured in one run.

    python -m eval.bench_train_long [--steps 6] [--min-messages 20]

Takes the newest dataset's training conversations with at least --min-messages messages (the sample
company's long multi-issue ones, or your own), and trains the packaged student base on them with the
default TrainConfig for --steps optimizer steps, once per layout, each in a fresh process so that its
peak resident memory (the kernel's high-water mark, everything included: model, embedder, tokenizer,
autograd) is its own. Prints per layout: tokens per epoch, micro-batch budget, the preflight's estimate,
peak RSS, real (non-padding) tokens/s, and the ratios the targets are about (peak <= 4 GB;
retrieval-augmented tokens per epoch <= 1.5x plain; its tokens/s >= 0.9x plain).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def child(layout: str, steps: int, min_messages: int) -> dict:
    from assistant.settings import Settings
    from assistant.store import open_store
    from distill.base_model import load_base
    from distill.dataset import load_dataset
    from distill.pipeline import grounding_for_training, held_out_retriever
    from distill.train import TrainConfig, train_lora

    settings = Settings.from_env()
    store = open_store(settings)
    dd, manifest = load_dataset(store)
    rows = [r for r in dd["train"] if len(r["messages"]) >= min_messages]
    if not rows:
        raise SystemExit(f"dataset {manifest['version']} has no training conversation of {min_messages}+ messages")
    config = TrainConfig(epochs=1, max_steps=steps, checkpoint_steps=0, early_stopping_patience=100,
                         retrieval_augmented=layout == "retrieval-augmented")
    ground = None
    if config.retrieval_augmented:
        ground = grounding_for_training(held_out_retriever(store, settings, dd), [rows])
    model, tokenizer = load_base(settings.student_path, settings.cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        result = train_lora(model, tokenizer, rows, [], config, Path(tmp), ground=ground)
    m = result.metrics
    return {"layout": layout, "dataset": manifest["version"], "conversations": len(rows),
            "messages": sum(len(r["messages"]) for r in rows), "sequences": m["train_examples"],
            "tokens_per_epoch": m["train_tokens_per_epoch"], "tokens_per_s": m["tokens_per_s"],
            "batch_tokens": m["batch_tokens"], "estimate_mb": m["memory_estimate_mb"], "steps": m["steps"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--min-messages", type=int, default=20)
    parser.add_argument("--child", choices=["plain", "retrieval-augmented"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.min_messages)))
        return
    results = {}
    for layout in ("plain", "retrieval-augmented"):
        run = subprocess.run([sys.executable, "-m", "eval.bench_train_long", "--child", layout, "--steps", str(args.steps),
                              "--min-messages", str(args.min_messages)], capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"{layout} run failed:\n{run.stderr[-3000:]}")
        results[layout] = json.loads(run.stdout.strip().splitlines()[-1])
    plain, ra = results["plain"], results["retrieval-augmented"]
    print(f"dataset {plain['dataset']}: {plain['conversations']} training conversations of {args.min_messages}+ messages "
          f"({plain['messages'] / plain['conversations']:.0f} messages on average), {args.steps} optimizer steps each, "
          "default TrainConfig")
    print(f"{'layout':<20} {'sequences':>9} {'tokens/epoch':>12} {'micro-batch':>11} {'estimate MB':>11} "
          f"{'peak RSS MB':>11} {'tokens/s':>8}")
    for r in (plain, ra):
        print(f"{r['layout']:<20} {r['sequences']:>9,} {r['tokens_per_epoch']:>12,} {r['batch_tokens']:>11,} "
              f"{r['estimate_mb']:>11,} {r['peak_rss_mb']:>11,.0f} {r['tokens_per_s']:>8,.0f}")
    print(f"peak RSS: plain {plain['peak_rss_mb'] / 1024:.2f} GB, retrieval-augmented {ra['peak_rss_mb'] / 1024:.2f} GB "
          "(target at most 4 GB)")
    print(f"tokens per epoch, retrieval-augmented / plain = {ra['tokens_per_epoch'] / plain['tokens_per_epoch']:.2f} "
          "(target at most 1.5)")
    print(f"tokens/s, retrieval-augmented / plain = {ra['tokens_per_s'] / plain['tokens_per_s']:.2f} (target at least 0.9)")


if __name__ == "__main__":
    main()
