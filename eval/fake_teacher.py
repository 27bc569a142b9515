"""A local OpenAI-compatible chat-completions server for benchmarks and tests (loopback only).

It answers POST /v1/chat/completions (streaming or not) after a fixed delay, can fail the first N calls
with 429 + Retry-After, counts calls per request body, and keeps the requests it saw. The reply is
"Thanks for your patience. <last line of the user message>" unless a `reply` function is given.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections import Counter
from typing import Callable


class LoopbackServer:
    """An HTTP server on a free loopback port, serving in a thread while used as a context manager."""

    def _serve(self, handler) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeTeacher(LoopbackServer):
    def __init__(self, delay_s: float = 0.0, fail_first: int = 0, retry_after: float = 0.0,
                 reply: Callable[[list[dict]], str] | None = None, usage: bool = True):
        self.delay_s, self.fail_first, self.retry_after = delay_s, fail_first, retry_after
        self.reply = reply or (lambda msgs: "Thanks for your patience. Orders ship within 1 business day.")
        self.usage = usage
        self.calls = 0
        self.bodies: list[dict] = []
        self.per_request: Counter = Counter()
        self.lock = threading.Lock()
        self.files: dict[str, str] = {}
        self.batches: dict[str, dict] = {}
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, code: int, payload: dict, headers: dict | None = None):
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.startswith("/v1/batches/"):
                    batch = fake.batches[self.path.rsplit("/", 1)[1]]
                    if batch["status"] == "validating":
                        batch["status"] = "in_progress"  # completes on the next poll
                    elif batch["status"] == "in_progress":
                        batch["status"] = "completed"
                        lines = []
                        for line in fake.files[batch["input_file_id"]].splitlines():
                            req = json.loads(line)
                            text = fake.reply(req["body"]["messages"])
                            with fake.lock:
                                fake.calls += 1
                                fake.per_request[json.dumps(req["body"]["messages"], sort_keys=True)] += 1
                            lines.append(json.dumps({"custom_id": req["custom_id"], "response": {"status_code": 200, "body": {
                                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                                "usage": {"prompt_tokens": 100, "completion_tokens": len(text.split())}}}}))
                        fake.files[f"out-{batch['id']}"] = "\n".join(lines) + "\n"
                        batch["output_file_id"] = f"out-{batch['id']}"
                    self._send(200, batch)
                elif self.path.startswith("/v1/files/") and self.path.endswith("/content"):
                    body = fake.files[self.path.split("/")[3]].encode()
                    self.send_response(200)
                    self.send_header("content-type", "application/octet-stream")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self._send(200, {"object": "list", "data": [{"id": "fake-teacher", "object": "model"}]})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path.endswith("/files"):
                    # multipart upload: keep the JSONL request lines, ignore the form around them
                    lines = [l for l in raw.decode("utf-8", "replace").splitlines() if l.startswith('{"custom_id"')]
                    file_id = f"file-{len(fake.files) + 1}"
                    fake.files[file_id] = "\n".join(lines)
                    self._send(200, {"id": file_id, "object": "file", "bytes": len(raw), "created_at": 0,
                                     "filename": "batch.jsonl", "purpose": "batch", "status": "processed"})
                    return
                body = json.loads(raw)
                if self.path.endswith("/batches"):
                    batch_id = f"batch-{len(fake.batches) + 1}"
                    fake.batches[batch_id] = {"id": batch_id, "object": "batch", "endpoint": body["endpoint"],
                                              "input_file_id": body["input_file_id"], "completion_window": "24h",
                                              "status": "validating", "created_at": 0, "output_file_id": None}
                    self._send(200, fake.batches[batch_id])
                    return
                with fake.lock:
                    fake.calls += 1
                    n = fake.calls
                    fake.bodies.append(body)
                    fake.per_request[json.dumps(body["messages"], sort_keys=True)] += 1
                if n <= fake.fail_first:
                    self._send(429, {"error": {"message": "slow down", "type": "rate_limit"}},
                               {"retry-after": str(fake.retry_after)})
                    return
                time.sleep(fake.delay_s)
                text = fake.reply(body["messages"])
                usage = {"prompt_tokens": sum(len(m["content"]) for m in body["messages"]) // 4,
                         "completion_tokens": len(text.split()), "total_tokens": 0,
                         "prompt_tokens_details": {"cached_tokens": 0}}
                self._send(200, {
                    "id": f"fake-{n}", "object": "chat.completion", "created": 0, "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                    **({"usage": usage} if fake.usage else {}),
                })

        self._serve(Handler)
