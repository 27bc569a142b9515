"""Batch API mode for large labelling jobs against OpenAI (half the price, results within 24 hours).

submit: the missing teacher calls become a JSONL file of requests whose custom_id is the call's cache
key, uploaded and submitted as one batch, recorded in `label_batches`; poll: the batch's status until it
ends; collect: every result is handed back to the labeller (`distill.label`), which stores it like a live
call (same cache, same labels). Running the same job again while a batch is in flight resumes polling that
batch instead of paying for a second one. Each request line's body is the backend's own (`OpenAIBackend.body`:
the model's token parameter, temperature only where accepted, the extra body), exactly what a live call
sends. Only the labeller calls this module.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Callable

from assistant.errors import AssistantError
from assistant.store import now
from assistant.models.teacher import usage_counts
from distill.backends import CallResult, TeacherRejected

TERMINAL = {"completed", "failed", "expired", "cancelled"}


def run_batch(store, backend, requests: dict[str, list[dict]], params: dict, *, poll_s: float, stop,
              accept: Callable[[str, CallResult | None], None], on_poll: Callable[[], None] | None = None) -> str:
    """Submit (or resume) one batch for `requests` ({cache key: prompt messages}), wait for it, and hand every
    result to `accept(key, result)`: None for a failed, malformed or empty one (never stored, so running
    the job again asks for it again). Returns the job's status."""
    import openai

    try:
        return _run_batch(store, backend, requests, params, poll_s, stop, accept, on_poll)
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise TeacherRejected(f"teacher rejected the API key (HTTP {exc.status_code})") from exc


def _run_batch(store, backend, requests, params, poll_s, stop, accept, on_poll) -> str:
    if not hasattr(backend, "client"):
        raise AssistantError("batch mode needs an OpenAI-compatible teacher endpoint: name it with ASSISTANT_TEACHER_MODEL (and ASSISTANT_TEACHER_BASE_URL)")
    client = backend.client
    request_hash = hashlib.sha256("".join(sorted(requests)).encode()).hexdigest()
    row = next(store.db.query("SELECT * FROM label_batches WHERE request_hash = ? AND status NOT IN "
                              "('failed', 'expired', 'cancelled', 'collected') ORDER BY id DESC LIMIT 1", [request_hash]), None)
    if row is None:
        batch_row_id, batch_id = _submit(store, client, backend, requests, params, request_hash)
    else:
        batch_row_id, batch_id = row["id"], row["batch_id"]
    while True:
        batch = client.batches.retrieve(batch_id)
        store.update("label_batches", batch_row_id, {"status": batch.status})
        if batch.status in TERMINAL or stop.is_set():
            break
        if on_poll:
            on_poll()
        stop.wait(poll_s)
    if stop.is_set():
        return f"stopped: batch {batch_id} still {batch.status}; run the same command again to resume"
    if batch.status != "completed" or not batch.output_file_id:
        return f"batch {batch_id} ended {batch.status}"
    failed = 0
    for line in client.files.content(batch.output_file_id).text.splitlines():
        if not line.strip():
            continue
        key, result = _parse_result(json.loads(line))
        if key not in requests or result is None:
            failed += 1
            accept(key, None)
        else:
            accept(key, result)
    store.update("label_batches", batch_row_id, {"status": "collected", "finished_at": now()})
    return "done" if not failed else f"done with {failed} failed turns"


def _submit(store, client, backend, requests: dict[str, list[dict]], params: dict, request_hash: str) -> tuple[int, str]:
    """Upload the requests as one JSONL file and submit the batch; (its label_batches row id, its batch id)."""
    lines = [json.dumps({"custom_id": key, "method": "POST", "url": "/v1/chat/completions",
                         "body": backend.body(messages, params.get("max_tokens"), params.get("temperature"))})
             for key, messages in requests.items()]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    with open(fh.name, "rb") as upload:
        input_file = client.files.create(file=upload, purpose="batch")
    Path(fh.name).unlink(missing_ok=True)
    batch = client.batches.create(input_file_id=input_file.id, endpoint="/v1/chat/completions", completion_window="24h")
    row_id = store.insert("label_batches", {
        "request_hash": request_hash, "batch_id": batch.id, "input_file_id": input_file.id,
        "n_requests": len(lines), "status": batch.status, "created_at": now()})
    return row_id, batch.id


def _parse_result(item: dict) -> tuple[str | None, CallResult | None]:
    """(cache key, result) of one output line; the result is None when the line is an error, malformed or empty."""
    key = item.get("custom_id")
    body = (item.get("response") or {}).get("body") or {}
    try:
        choice = body["choices"][0]
        result = CallResult(choice["message"].get("content") or "", choice.get("finish_reason"),
                            *usage_counts(body.get("usage") or {}))
    except (KeyError, IndexError, TypeError, AttributeError):  # a malformed result line
        return key, None
    if item.get("error") or not result.text.strip():
        return key, None
    return key, result
