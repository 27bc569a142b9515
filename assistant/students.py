"""Which student answers: the registered versions as the serving side reads them, and the ChatModel for one.

The registry's writes (register, promote, reject, roll back) belong to the distillation pipeline
(`distill.registry`); serving only reads which version is promoted and loads it, so the chat never goes
through training code to get its student. At most one version has status "serving"; with none, the
packaged base (or ASSISTANT_STUDENT_BASE) serves.
"""

from __future__ import annotations

import json

from assistant.errors import InputError, ModelError
from assistant.grounding import budget_of
from assistant.models import GroundedStudent, LlamaStudent
from assistant.store import Store


def serving(store: Store) -> dict | None:
    return next(store.db.query("SELECT * FROM model_versions WHERE status = 'serving' ORDER BY id DESC LIMIT 1"), None)


def resolve(store: Store, version: str | None) -> dict | None:
    """The named version's row (an error if there is none), or the serving one when no name is given."""
    if not version:
        return serving(store)
    row = next(store.db.query("SELECT * FROM model_versions WHERE version = ?", [version]), None)
    if row is None:
        raise InputError(f"no model version {version!r} (see assistant models)")
    return row


def versions(store: Store) -> list[dict]:
    return list(store.db.query("SELECT * FROM model_versions ORDER BY id"))


def retrieval_augmented(row: dict | None) -> bool:
    return bool(row) and bool(json.loads(row.get("config") or "{}").get("retrieval_augmented"))


def student_for(row: dict | None, settings, retriever=None, max_tokens: int | None = None):
    """The ChatModel for a registered version (None: the configured base).

    A version trained retrieval-augmented is served the way it was trained: with KB passages and similar
    cases in its prompt, as much as its recorded grounding budget says, so it needs the retriever.
    """
    options = dict(n_ctx=settings.student_context, n_threads=settings.student_threads,
                   max_tokens=max_tokens or settings.max_new_tokens, slots=settings.student_slots,
                   saved_mb=settings.student_state_cache_mb)
    if row is None:
        return LlamaStudent(settings.student_path, **options)
    if not row.get("gguf_path"):
        raise ModelError(f"{row['version']} has no GGUF (trained with --export-type none); llama.cpp cannot serve it")
    model = LlamaStudent(row["gguf_path"], name=row["version"], version=row["version"], **options)
    if retrieval_augmented(row):
        if retriever is None:
            raise ModelError(f"{row['version']} was trained retrieval-augmented and needs the KB and case retrieval to serve")
        model = GroundedStudent(model, retriever, budget_of(json.loads(row.get("config") or "{}")))
    return model


def serving_student(store: Store, settings, retriever=None):
    """The ChatModel serving now: the promoted version, or the configured base."""
    return student_for(serving(store), settings, retriever)
