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
import threading
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from assistant import students
from assistant.errors import Cancelled, InputError
from assistant.settings import REPO_ROOT
from assistant.store import Store, now
from distill import registry
from distill.scoring import gold_fact_recall, token_f1
from distill.train import TrainConfig, TrainProgress, TrainResult, loss_function, train_lora


@dataclass
class TrainOutcome:
    version: str
    gguf_path: Path | None  # None when trained with --export-type none
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
    from distill.dataset import labelled_turns

    turns = labelled_turns(rows)
    # turns with gold facts first: they say most about correctness
    turns.sort(key=lambda t: not t["gold_facts"])
    return turns[:limit]


def score_model(model, turns: list[dict], max_tokens: int = 128) -> float | None:
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


def held_out_retriever(store: Store, settings, dd, retriever=None):
    """Retrieval that never returns the validation or test conversations (they judge the student)."""
    from assistant.retrieval import Retriever, build_retriever, embedder_for

    retriever = retriever or build_retriever(store, embedder_for(settings))
    held = frozenset(r["conversation_id"] for split in ("validation", "test") if split in dd for r in dd[split])
    return Retriever(retriever.kb, retriever.cases, exclude=held | retriever.exclude)


def grounding_for_training(retriever, rows_by_split):
    """The `ground` callable of train_lora: the served layout of a conversation, never showing its own replies."""
    from assistant.grounding import student_layout

    retriever.warm([r["messages"][:t] for rows in rows_by_split for r in rows for t in range(1, len(r["messages"]) + 1)
                    if r["messages"][t - 1]["role"] == "user"])
    return lambda messages, conversation_id: student_layout(messages, retriever, conversation_id)


def _refuse_what_cannot_run(base: str, gguf_type: str, config: TrainConfig) -> None:
    """InputError for a run that would fail after hours of training (or at once), before anything is loaded."""
    from distill.base_model import qlora_problem
    from distill.export import TYPES

    if gguf_type != "none" and gguf_type not in TYPES:
        raise InputError(f"unknown export type {gguf_type!r}; choose one of {', '.join(TYPES)} or none")
    if gguf_type != "none" and Path(base).suffix.lower() != ".gguf":
        raise InputError(f"serving through llama.cpp needs a GGUF base, and {base} is not one: train with "
                         "--export-type none to register the adapter only (serve it with e.g. vLLM --enable-lora)")
    loss_function(config.loss)
    problem = qlora_problem() if config.load_in_4bit else None
    if problem:
        raise InputError(problem)


def _train_adapter(store: Store, settings, dd, manifest: dict, config: TrainConfig, *, base_loader, retriever,
                   progress, should_stop, log) -> tuple[TrainResult, object]:
    """Load the base and train the adapter in the run folder named by config and data (a rerun resumes it).

    Returns the result and the held-out retriever (None when neither the new nor the serving student
    is retrieval-augmented), which the quick evaluation grounds both students with.
    """
    from distill.base_model import load_base
    from distill.train import device_and_dtype, distributed

    dist = distributed()
    _, amp_dtype = device_and_dtype(dist.local_rank)
    model, tokenizer = (base_loader or (lambda b: load_base(b, settings.cache_dir, dtype=amp_dtype, load_in_4bit=config.load_in_4bit,
                                                            device_index=dist.local_rank)))(settings.student_path)
    run_dir = settings.home / "models" / "runs" / f"{config.digest()}-{manifest['content_hash'][:10]}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "checkpoint").exists():
        log(f"resuming from the checkpoint in {run_dir}")
    train_rows, val_rows = list(dd["train"]), list(dd["validation"])
    held_out = (held_out_retriever(store, settings, dd, retriever)
                if config.retrieval_augmented or students.retrieval_augmented(students.serving(store)) else None)
    ground = None
    if config.retrieval_augmented:
        log("retrieval-augmented: every customer turn carries the KB passage and similar replies it is served with")
        ground = grounding_for_training(held_out, [train_rows, val_rows])
    result = train_lora(model, tokenizer, train_rows, val_rows, config, run_dir, progress, should_stop, ground=ground)
    return result, held_out


def _build_version(store: Store, settings, result: TrainResult, config: TrainConfig, manifest: dict, gguf_type: str,
                   *, should_stop, log) -> tuple[str, Path, dict]:
    """The version folder (adapter, GGUF unless `none`, manifest), built aside and renamed into place when complete.

    Returns the version's name, its folder and its manifest."""
    from distill.base_model import base_identity, load_base
    from distill.export import export_gguf

    base = settings.student_path
    n = store.db["model_versions"].count + 1
    version = f"student-{n:03d}-{config.digest()[:6]}"
    final = settings.home / "models" / version
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(result.adapter_dir, tmp / "adapter")
    if should_stop and should_stop():
        shutil.rmtree(tmp, ignore_errors=True)
        raise Cancelled("cancelled before export")
    if gguf_type == "none":
        log("not exported (--export-type none): the adapter is registered; it cannot be promoted to the llama.cpp student")
    else:
        export_model = result.model
        if config.load_in_4bit:
            # merge into the full-precision base, not the 4-bit copy the adapter was trained against
            from peft import PeftModel

            export_model = PeftModel.from_pretrained(load_base(base, settings.cache_dir)[0], str(result.adapter_dir))
        gguf_path = export_gguf(export_model, Path(base), tmp / "model.gguf", gguf_type, name=version)
        log(f"exported {gguf_type.upper()} GGUF: {gguf_path.stat().st_size / 1e6:.0f} MB")
    info = {"version": version, "created_at": now(), "config": version_config(config),
            "dataset": {"version": manifest["version"], "content_hash": manifest["content_hash"],
                        "teacher": manifest["teacher"]},
            "base": base_identity(base), "metrics": result.metrics,
            "gguf": None if gguf_type == "none" else {"type": gguf_type, "file": "model.gguf"},
            "libraries": _libraries(), "git_commit": _git_commit()}
    (tmp / "manifest.json").write_text(json.dumps(info, indent=2, default=str))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return version, final, info


def version_config(config: TrainConfig) -> dict:
    """What a version records of how it was trained: the config, and the grounding budget its prompts carried
    (serving gives it the same, `assistant.grounding.budget_of`)."""
    from assistant.grounding import DEFAULT_BUDGET

    return {**asdict(config), **({"grounding": asdict(DEFAULT_BUDGET)} if config.retrieval_augmented else {})}


def _register(store: Store, settings, final: Path, info: dict, gguf_type: str, config: TrainConfig,
              evaluation: dict) -> None:
    """The version's row, as a candidate: written only once its folder is complete."""
    gguf_final = final / "model.gguf" if gguf_type != "none" else None
    with store.transaction() as db:
        db["model_versions"].insert({
            "version": info["version"], "base": settings.student_path, "base_sha256": info["base"]["sha256"],
            "dataset_version": info["dataset"]["version"],
            "path": str(final), "gguf_path": str(gguf_final) if gguf_final else None, "gguf_type": gguf_type,
            "gguf_bytes": gguf_final.stat().st_size if gguf_final else None,
            "config": json.dumps(version_config(config)), "metrics": json.dumps(info["metrics"], default=str),
            "evaluation": json.dumps(evaluation), "status": "candidate", "created_at": now()})


def _promote_if_better(store: Store, version: str, evaluation: dict, serving_name: str, force: bool, log) -> bool:
    """Promote the candidate when its quick evaluation beats the serving student's (or when forced); else reject it."""
    better = bool(evaluation) and (evaluation["candidate_score"] or 0) > (evaluation["serving_score"] or 0)
    if better or force:
        reason = "forced" if force and not better else (
            f"quick eval {evaluation['candidate_score']:.3f} > {evaluation['serving_score']:.3f} ({serving_name})")
        registry.promote(store, version, reason)
        log(f"promoted {version}: {reason}")
        return True
    registry.reject(store, version)
    log(f"not promoted: {version} scored {evaluation['candidate_score']:.3f}, serving {serving_name} "
        f"{evaluation['serving_score']:.3f} (use --force to promote anyway)")
    return False


def train_student(store: Store, settings, *, dataset_version: str | None = None, config: TrainConfig | None = None,
                  gguf_type: str | None = None, promote: bool = True, force: bool = False, eval_limit: int = 40,
                  progress: Callable[[TrainProgress], None] | None = None, should_stop: Callable[[], bool] | None = None,
                  log: Callable[[str], None] = lambda line: None, base_loader=None, evaluate=None,
                  retriever=None) -> TrainOutcome:
    """Train a new student version on a dataset (the newest by default), register it, and promote it if better.

    Steps: refuse what cannot run here -> train the adapter -> build the version folder (adapter, GGUF,
    manifest) -> quick-evaluate against the serving student -> register -> promote or reject. Returns
    None in the helper processes of a multi-GPU run: the main one registers the version.
    """
    from distill.dataset import load_dataset

    from distill.export import DEFAULT_TYPE

    config = config or TrainConfig()
    gguf_type = (gguf_type or DEFAULT_TYPE).lower()
    _refuse_what_cannot_run(settings.student_path, gguf_type, config)
    dd, manifest = load_dataset(store, dataset_version)
    log(f"dataset {manifest['version']}: {dd['train'].num_rows} train / {dd['validation'].num_rows} validation rows "
        f"(test split reserved for evaluation)")
    result, held_out = _train_adapter(store, settings, dd, manifest, config, base_loader=base_loader, retriever=retriever,
                                      progress=progress, should_stop=should_stop, log=log)
    if not result.main_process:
        return None
    log(f"trained {result.steps} steps; best validation loss {result.metrics['best_val_loss']}")
    version, final, info = _build_version(store, settings, result, config, manifest, gguf_type, should_stop=should_stop, log=log)
    gguf_final = final / "model.gguf" if gguf_type != "none" else None
    promote = promote and gguf_final is not None
    evaluation, current = {}, None
    if promote:
        # both compared on validation turns whose own conversations their retrieval cannot see
        candidate = students.student_for({"version": version, "gguf_path": str(gguf_final), "config": json.dumps(version_config(config))},
                                         settings, held_out)
        current = students.serving_student(store, settings, held_out)
        evaluation = (evaluate or quick_evaluate)(candidate, current, list(dd["validation"]), eval_limit)
    _register(store, settings, final, info, gguf_type, config, evaluation)
    promoted = promote and _promote_if_better(store, version, evaluation, current.name, force, log)
    return TrainOutcome(version, gguf_final, result.metrics, evaluation, promoted)


def stop_event(should_stop: Callable[[], bool] | None) -> tuple[threading.Event, Callable[[], None]]:
    """The job's cancel flag as the Event that `label` waits on, and a function to call when done with it.

    The JobRunner's `should_stop` is its cancel Event's `is_set`: that Event itself is used. Any other
    callable is watched by a small thread that sets a new Event when it turns true.
    """
    owner = getattr(should_stop, "__self__", None)
    if isinstance(owner, threading.Event):
        return owner, lambda: None
    event, finished = threading.Event(), threading.Event()
    if should_stop is not None:
        def watch():
            while not finished.wait(0.2):
                if should_stop():
                    event.set()
                    return

        threading.Thread(target=watch, daemon=True, name="retrain-stop-watch").start()
    return event, finished.set


def retrain_from_file(store: Store, settings, path: Path, *, config: TrainConfig | None = None, log=lambda line: None,
                      progress=None, should_stop=None, retriever=None, budget: float | None = None,
                      allow_failed: bool = False) -> TrainOutcome:
    """The Retrain tab's loop: import the file, label, build the dataset, train, evaluate, promote if better.

    Labelling stops when the job is cancelled (its cancel flag is the label job's stop event), at `budget`
    US$ for this run, and at the daily teacher cap (settings.teacher_daily_budget) whatever `budget` says.
    A label job that left turns unlabelled builds no dataset unless `allow_failed`.
    """
    from distill.dataset import build_dataset
    from distill.importer import import_file
    from distill.label import LabelOptions, label

    summary = import_file(store, path)
    for line in summary.lines(max_rejected=5):
        log(line)
    if should_stop and should_stop():
        raise Cancelled("cancelled after import (the import itself is complete and kept)")
    stop, release = stop_event(should_stop)
    try:
        result = label(store, settings, LabelOptions(budget=budget), retriever=retriever, stop=stop)
    finally:
        release()
    log(f"label job {result.job_id}: {result.status}; {result.progress.line()}")
    if stop.is_set() or (should_stop and should_stop()):
        raise Cancelled("cancelled while labelling (labels stored so far are kept and reused by the next run)")
    if not result.status.startswith("done"):
        raise InputError(f"labelling did not finish: {result.status}")
    ds = build_dataset(store, settings, result.job_id, allow_failed=allow_failed)
    log(f"dataset {ds.version}: " + ", ".join(f"{s} {c['rows']}" for s, c in ds.manifest["counts"].items()))
    return train_student(store, settings, dataset_version=ds.version, config=config, log=log, progress=progress,
                         should_stop=should_stop, retriever=retriever)
