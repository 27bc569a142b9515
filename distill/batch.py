"""Batch API mode for large labelling jobs against OpenAI (half the price, results within 24 hours).

submit: the missing teacher calls become a JSONL file of requests whose custom_id is the call's cache
key, uploaded and submitted as one batch, recorded in `label_batches`; poll: the batch's status until it
ends; collect: every result is stored like a live call (same cache, same labels). Running the same job
again while a batch is in flight resumes polling that batch instead of paying for a second one.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path

from assistant.errors import AssistantError
from assistant.store import now
from distill.label import CallResult, build_request, store_call

TERMINAL = {"completed", "failed", "expired", "cancelled"}
BATCH_DISCOUNT = 0.5  # OpenAI bills Batch API tokens at half the list price


def run_batch(store, settings, options, backend, retriever, prompt, params, todo, record, prog, lock, progress, stop) -> str:
    import openai

    from distill.label import TeacherRejected

    try:
        return _run_batch(store, settings, options, backend, retriever, prompt, params, todo, record, prog, lock,
                          progress, stop)
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise TeacherRejected(f"teacher rejected the API key (HTTP {exc.status_code})") from exc


def _run_batch(store, settings, options, backend, retriever, prompt, params, todo, record, prog, lock, progress, stop) -> str:
    if not hasattr(backend, "client"):
        raise AssistantError("batch mode needs an OpenAI-compatible teacher endpoint (ASSISTANT_TEACHER_BASE_URL / OPENAI_API_KEY)")
    client = backend.client
    by_key = {key: task for task, key in todo}
    request_hash = hashlib.sha256("".join(sorted(by_key)).encode()).hexdigest()
    row = next(store.db.query("SELECT * FROM label_batches WHERE request_hash = ? AND status NOT IN "
                              "('failed', 'expired', 'cancelled', 'collected') ORDER BY id DESC LIMIT 1", [request_hash]), None)
    references = {}
    if row is None:
        lines = []
        for task, key in todo:
            request, references[key] = build_request(task, retriever, prompt, options)
            lines.append(json.dumps({"custom_id": key, "method": "POST", "url": "/v1/chat/completions",
                                     "body": {"model": backend.name, "messages": request.messages, **params}}))
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        with open(fh.name, "rb") as upload:
            input_file = client.files.create(file=upload, purpose="batch")
        Path(fh.name).unlink(missing_ok=True)
        batch = client.batches.create(input_file_id=input_file.id, endpoint="/v1/chat/completions", completion_window="24h")
        batch_row_id = store.insert("label_batches", {
            "request_hash": request_hash, "batch_id": batch.id, "input_file_id": input_file.id,
            "n_requests": len(lines), "status": batch.status, "created_at": now()})
        batch_id = batch.id
    else:
        batch_row_id, batch_id = row["id"], row["batch_id"]
        for task, key in todo:  # the references the teacher saw, for the leak check
            references[key] = build_request(task, retriever, prompt, options)[1]
    while True:
        batch = client.batches.retrieve(batch_id)
        store.update("label_batches", batch_row_id, {"status": batch.status})
        if batch.status in TERMINAL or stop.is_set():
            break
        if progress:
            progress(prog)
        stop.wait(options.poll_s)
    if stop.is_set():
        return f"stopped: batch {batch_id} still {batch.status}; run the same command again to resume"
    if batch.status != "completed" or not batch.output_file_id:
        return f"batch {batch_id} ended {batch.status}"
    price = settings.price(backend.name)
    for line in client.files.content(batch.output_file_id).text.splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        key = item.get("custom_id")
        body = (item.get("response") or {}).get("body") or {}
        try:
            choice, usage = body["choices"][0], body.get("usage") or {}
            result = CallResult(choice["message"].get("content") or "", choice.get("finish_reason"),
                                usage.get("prompt_tokens"), usage.get("completion_tokens"),
                                (usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
        except (KeyError, IndexError, TypeError, AttributeError):  # a malformed result line
            result = None
        if key not in by_key or item.get("error") or result is None or not result.text.strip():
            # failed, malformed or empty: never stored, so running the job again asks for it again
            with lock:
                prog.failed += 1
            continue
        cost = 0.0
        if price and result.input_tokens is not None:
            cost = BATCH_DISCOUNT * (result.input_tokens * price[0] + (result.output_tokens or 0) * price[1]) / 1e6
        store_call(store, key, backend.name, prompt, params, result, cost, None, references.get(key, ""))
        with lock:
            prog.called += 1
            prog.input_tokens += result.input_tokens or 0
            prog.output_tokens += result.output_tokens or 0
            prog.cost += cost
        record(by_key[key], "teacher", result.text, result.finish_reason, key, references.get(key, ""))
    store.update("label_batches", batch_row_id, {"status": "collected", "finished_at": now()})
    return "done" if not prog.failed else f"done with {prog.failed} failed turns"
