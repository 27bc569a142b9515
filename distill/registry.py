"""Student model versions, the writing side: promotion, rejection and rollback (reads: `assistant.students`).

A version is registered only once its artifacts (adapter, GGUF, manifest) are complete on disk. At most
one version has status "serving"; with none, the packaged base (or ASSISTANT_STUDENT_BASE) serves.
Every promotion and rollback is recorded in `promotions`, newest last.
"""

from __future__ import annotations

import json

from assistant.errors import InputError
from assistant.store import Store, now


def reject(store: Store, version: str) -> None:
    store.execute("UPDATE model_versions SET status = 'rejected' WHERE version = ?", [version])


def promote(store: Store, version: str, reason: str) -> None:
    with store.transaction() as db:
        row = next(db.query("SELECT id, gguf_path FROM model_versions WHERE version = ?", [version]), None)
        if row is None:
            raise InputError(f"no model version {version!r}")
        if not row["gguf_path"]:
            raise InputError(f"{version} has no GGUF to serve (trained with --export-type none)")
        db.execute("UPDATE model_versions SET status = 'retired' WHERE status = 'serving'")
        db.execute("UPDATE model_versions SET status = 'serving' WHERE version = ?", [version])
        db["promotions"].insert({"version": version, "action": "promote", "reason": reason, "created_at": now()})


def rollback(store: Store) -> str:
    """Serve the version promoted before the current one (or the packaged base). Returns what serves now."""
    with store.transaction() as db:
        current = next(db.query("SELECT version FROM model_versions WHERE status = 'serving'"), None)
        if current is None:
            raise InputError("nothing to roll back: the base student is serving")
        history = [r["version"] for r in db.query(
            "SELECT version FROM promotions WHERE action = 'promote' ORDER BY id")]
        earlier = [v for v in history if v != current["version"]]
        previous = earlier[-1] if earlier else None
        db.execute("UPDATE model_versions SET status = 'retired' WHERE status = 'serving'")
        if previous:
            db.execute("UPDATE model_versions SET status = 'serving' WHERE version = ?", [previous])
        db["promotions"].insert({"version": previous or "base", "action": "rollback",
                                 "reason": f"rolled back from {current['version']}", "created_at": now()})
        # the rolled-back-from version leaves the promotion history so a second rollback goes further back
        db.execute("DELETE FROM promotions WHERE action = 'promote' AND version = ?", [current["version"]])
    return previous or "base"


def describe(row: dict) -> str:
    metrics = json.loads(row["metrics"] or "{}")
    evaluation = json.loads(row["evaluation"] or "{}")
    config = json.loads(row["config"] or "{}")
    parts = [f"{row['version']:26}", f"{row['status']:9}", f"dataset {row['dataset_version']}",
             "retrieval-augmented" if config.get("retrieval_augmented") else "plain"]
    if metrics.get("best_val_loss") is not None:
        start = f" (base {metrics['base_val_loss']:.4f})" if metrics.get("base_val_loss") is not None else ""
        parts.append(f"val loss {metrics['best_val_loss']:.4f}{start}")
    if evaluation.get("candidate_score") is not None:
        parts.append(f"quick eval {evaluation['candidate_score']:.3f} vs serving {evaluation['serving_score']:.3f}")
    parts.append(f"{row['gguf_type']} {row['gguf_bytes'] / 1e6:.0f} MB" if row["gguf_bytes"] else "adapter only, no GGUF")
    parts.append(row["created_at"])
    return "  ".join(parts)
