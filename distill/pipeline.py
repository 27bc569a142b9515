"""The student's life cycle in plain functions: train -> export -> register -> quick-evaluate -> promote,
and the whole retrain loop from an uploaded transcript file (import -> label -> train -> ... -> promote).

`assistant train`, the Retrain tab and the tests call these. A cancelled or failed run registers
nothing: artifacts are built in a temporary folder that becomes the version folder only when complete,
and the version row is written after that.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from assistant.errors import InputError
from assistant.settings import REPO_ROOT
from assistant.store import Store, now
from distill import registry
from distill.train import TrainConfig, TrainProgress, train_lora


@dataclass
class TrainOutcome:
    version: str
    gguf_path: Path
    metrics: dict
    evaluation: dict
    promoted: bool


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _libraries() -> dict:
    out = {}
    for lib in ("torch", "transformers", "peft", "gguf", "llama_cpp_python", "datasets"):
        try:
            out[lib] = metadata.version(lib.replace("_", "-"))
        except metadata.PackageNotFoundError:
            pass
    return out


def eval_turns(rows, limit: int) -> list[dict]:
    """Validation turns to compare students on: history as it really happened, the label, the gold facts."""
    turns = []
    for row in rows:
        history = [{"role": m["role"], "content": m["content"]} for m in row["original_messages"]]
        for i in row["train_turns"]:
            turns.append({"history": history[:i], "reference": row["messages"][i]["content"],
                          "gold_facts": list(row["gold_facts"][i]) if i < len(row["gold_facts"]) else []})
    # turns with gold facts first: they say most about correctness
    turns.sort(key=lambda t: not t["gold_facts"])
    return turns[:limit]


def score_model(model, turns: list[dict], max_tokens: int = 128) -> float | None:
    from eval.scoring import gold_fact_recall, token_f1

    scores = []
    for t in turns:
        reply = model.complete(t["history"], max_tokens).text
        g = gold_fact_recall(reply, t["gold_facts"])
        scores.append(g if g is not None else token_f1(reply, t["reference"]))
    return sum(scores) / len(scores) if scores else None


def quick_evaluate(candidate, serving, rows, limit: int = 40) -> dict:
    turns = eval_turns(rows, limit)
    return {"metric": "gold-fact recall (token F1 where a turn has no gold facts) on validation turns",
            "turns": len(turns), "candidate": candidate.name, "serving": serving.name,
            "candidate_score": score_model(candidate, turns), "serving_score": score_model(serving, turns)}


def serving_student(store: Store, settings):
    """The ChatModel serving now: the promoted version, or the configured base."""
    from assistant.models import LlamaStudent

    row = registry.serving(store)
    if row is not None:
        return LlamaStudent(row["gguf_path"], name=row["version"], version=row["version"], n_ctx=settings.student_context,
                            n_threads=settings.student_threads, max_tokens=settings.max_new_tokens)
    return LlamaStudent(settings.student_path, n_ctx=settings.student_context, n_threads=settings.student_threads,
                        max_tokens=settings.max_new_tokens)


def train_student(store: Store, settings, *, dataset_version: str | None = None, config: TrainConfig | None = None,
                  gguf_type: str = "q8_0", promote: bool = True, force: bool = False, eval_limit: int = 40,
                  progress: Callable[[TrainProgress], None] | None = None, should_stop: Callable[[], bool] | None = None,
                  log: Callable[[str], None] = lambda line: None, base_loader=None, evaluate=None) -> TrainOutcome:
    from assistant.models import LlamaStudent
    from distill.base_model import base_identity, load_base
    from distill.dataset import load_dataset
    from distill.export import export_gguf

    config = config or TrainConfig()
    dd, manifest = load_dataset(store, dataset_version)
    base = settings.student_path
    log(f"dataset {manifest['version']}: {dd['train'].num_rows} train / {dd['validation'].num_rows} validation rows "
        f"(test split reserved for evaluation)")
    model, tokenizer = (base_loader or (lambda b: load_base(b, settings.cache_dir)))(base)
    run_dir = settings.home / "models" / "runs" / f"{config.digest()}-{manifest['content_hash'][:10]}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "checkpoint").exists():
        log(f"resuming from the checkpoint in {run_dir}")
    result = train_lora(model, tokenizer, list(dd["train"]), list(dd["validation"]), config, run_dir, progress, should_stop)
    log(f"trained {result.steps} steps; best validation loss {result.metrics['best_val_loss']}")

    n = store.db["model_versions"].count + 1
    version = f"student-{n:03d}-{config.digest()[:6]}"
    final = settings.home / "models" / version
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(result.adapter_dir, tmp / "adapter")
    if should_stop and should_stop():
        shutil.rmtree(tmp, ignore_errors=True)
        from distill.train import Cancelled

        raise Cancelled("cancelled before export")
    gguf_path = export_gguf(result.model, Path(base),
                            tmp / "model.gguf", gguf_type, name=version)
    log(f"exported {gguf_type.upper()} GGUF: {gguf_path.stat().st_size / 1e6:.0f} MB")
    info = {"version": version, "created_at": now(), "config": asdict(config),
            "dataset": {"version": manifest["version"], "content_hash": manifest["content_hash"],
                        "teacher": manifest["teacher"]},
            "base": base_identity(base), "metrics": result.metrics, "gguf": {"type": gguf_type, "file": "model.gguf"},
            "libraries": _libraries(), "git_commit": _git_commit()}
    (tmp / "manifest.json").write_text(json.dumps(info, indent=2, default=str))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    gguf_final = final / "model.gguf"

    candidate = LlamaStudent(gguf_final, name=version, version=version, n_ctx=settings.student_context,
                             n_threads=settings.student_threads)
    current = serving_student(store, settings)
    evaluation = (evaluate or quick_evaluate)(candidate, current, list(dd["validation"]), eval_limit) if promote else {}
    better = bool(evaluation) and (evaluation["candidate_score"] or 0) > (evaluation["serving_score"] or 0)
    status = "candidate"
    with store.transaction() as db:
        db["model_versions"].insert({
            "version": version, "base": base, "base_sha256": info["base"]["sha256"], "dataset_version": manifest["version"],
            "path": str(final), "gguf_path": str(gguf_final), "gguf_type": gguf_type, "gguf_bytes": gguf_final.stat().st_size,
            "config": json.dumps(asdict(config)), "metrics": json.dumps(result.metrics, default=str),
            "evaluation": json.dumps(evaluation), "status": status, "created_at": now()})
    promoted = False
    if promote and (better or force):
        reason = "forced" if force and not better else (
            f"quick eval {evaluation['candidate_score']:.3f} > {evaluation['serving_score']:.3f} ({current.name})")
        registry.promote(store, version, reason)
        promoted = True
        log(f"promoted {version}: {reason}")
    elif promote:
        store._write(lambda db: db["model_versions"].update(
            next(db.query("SELECT id FROM model_versions WHERE version = ?", [version]))["id"], {"status": "rejected"}))
        log(f"not promoted: {version} scored {evaluation['candidate_score']:.3f}, serving {current.name} "
            f"{evaluation['serving_score']:.3f} (use --force to promote anyway)")
    return TrainOutcome(version, gguf_final, result.metrics, evaluation, promoted)


def retrain_from_file(store: Store, settings, path: Path, *, config: TrainConfig | None = None, log=lambda line: None,
                      progress=None, should_stop=None, retriever=None) -> TrainOutcome:
    """The Retrain tab's loop: import the file, label, build the dataset, train, evaluate, promote if better."""
    from distill.dataset import build_dataset
    from distill.importer import import_file
    from distill.label import LabelOptions, label

    summary = import_file(store, path)
    for line in summary.lines(max_rejected=5):
        log(line)
    if should_stop and should_stop():
        raise InputError("cancelled after import (the import itself is complete and kept)")
    result = label(store, settings, LabelOptions(), retriever=retriever)
    log(f"label job {result.job_id}: {result.status}; {result.progress.line()}")
    if not result.status.startswith("done"):
        raise InputError(f"labelling did not finish: {result.status}")
    ds = build_dataset(store, settings, result.job_id)
    log(f"dataset {ds.version}: " + ", ".join(f"{s} {c['rows']}" for s, c in ds.manifest["counts"].items()))
    return train_student(store, settings, dataset_version=ds.version, config=config, log=log, progress=progress,
                         should_stop=should_stop)
