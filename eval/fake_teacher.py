"""Local OpenAI-compatible teacher servers for benchmarks and tests (loopback only).

- `FakeTeacher` answers POST .../chat/completions (streamed when asked) after a fixed delay, can fail the
  first N calls with 429 + Retry-After, counts calls per request body, keeps the requests it saw (path,
  headers, body), and runs the Batch API (files, batches) the labeller uses for large jobs. The reply is
  "Thanks for your patience. Orders ship within 1 business day." unless a `reply` function is given.
  A `profile` makes it behave like one provider (`PROFILES`): which parameters it refuses with OpenAI's
  400 "Unsupported parameter" error, and how it reports usage and prompt-cache hits.
- `FaultyTeacher` streams a proper reply, or one fault picked by its `mode` (which may change between
  requests): 500, a garbage body, a broken event stream, an empty answer, a stream that stalls or drips,
  no answer at all, 429. It closes every connection, so a client never keeps one from an earlier mode,
  and once closed its address refuses connections: the "teacher is down" fault.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

TEACHER_TEXT = "Thanks for your patience. Orders ship within 1 business day."


class LoopbackServer:
    """An HTTP server on a free loopback port, serving in a thread while used as a context manager.
    Its handler reaches the fake through `self.server.fake`."""

    def _serve(self, handler) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.fake = self
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop listening: from now on the address refuses connections."""
        self.server.shutdown()
        self.server.server_close()

    def __exit__(self, *exc) -> None:
        self.close()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1, no access log, and a JSON writer."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_body(self, code: int, body: bytes, ctype: str = "application/json", headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, code: int, payload: dict, headers: dict | None = None) -> None:
        self.send_body(code, json.dumps(payload).encode(), headers=headers)


# ---- FakeTeacher: answers, after a delay, with optional 429s; the Batch API ----------------------------

@dataclass(frozen=True)
class Profile:
    """How one provider's endpoint treats a chat-completions request."""

    refuses: tuple[str, ...] = ()  # parameters answered with 400 "Unsupported parameter"
    cache_field: str | None = "openai"  # prompt-cache hits: "openai" (prompt_tokens_details), "deepseek", None
    cached_tokens: int = 0  # how many prompt tokens the cache served


PROFILES = {
    "openai": Profile(cached_tokens=0),
    # o-series and gpt-5 models: max_tokens and a non-default temperature are refused
    "openai-reasoning": Profile(refuses=("max_tokens", "temperature"), cached_tokens=64),
    "deepseek": Profile(cache_field="deepseek", cached_tokens=32),
    "vllm": Profile(cached_tokens=0),
    "ollama": Profile(cache_field=None),  # reports prompt and completion tokens only
    "azure": Profile(refuses=("max_tokens", "temperature"), cached_tokens=16),  # a reasoning-model deployment
}


def usage_for(profile: Profile, prompt_tokens: int, completion_tokens: int) -> dict:
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}
    cached = min(profile.cached_tokens, prompt_tokens)
    if profile.cache_field == "openai":
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    elif profile.cache_field == "deepseek":
        usage["prompt_cache_hit_tokens"], usage["prompt_cache_miss_tokens"] = cached, prompt_tokens - cached
    return usage


def refusal(param: str) -> dict:
    """OpenAI's 400 body for a parameter a model does not take."""
    message = (f"Unsupported parameter: '{param}' is not supported with this model. Use 'max_completion_tokens' instead."
               if param == "max_tokens" else
               f"Unsupported value: '{param}' does not support 0.2 with this model. Only the default (1) value is supported.")
    return {"error": {"message": message, "type": "invalid_request_error", "param": param,
                      "code": "unsupported_parameter" if param == "max_tokens" else "unsupported_value"}}

def completion(n: int, model: str, text: str, usage: dict | None) -> dict:
    """A non-streamed chat.completion response."""
    return {"id": f"fake-{n}", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            **({"usage": usage} if usage else {})}


class _FakeTeacherHandler(QuietHandler):
    def do_GET(self):
        fake: FakeTeacher = self.server.fake
        if self.path.startswith("/v1/batches/"):
            self.send_json(200, fake.poll_batch(self.path.rsplit("/", 1)[1]))
        elif self.path.startswith("/v1/files/") and self.path.endswith("/content"):
            self.send_body(200, fake.files[self.path.split("/")[3]].encode(), "application/octet-stream")
        else:
            self.send_json(200, {"object": "list", "data": [{"id": "fake-teacher", "object": "model"}]})

    def do_POST(self):
        fake: FakeTeacher = self.server.fake
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path.endswith("/files"):
            self.send_json(200, fake.upload(raw))
        elif self.path.endswith("/batches"):
            self.send_json(200, fake.create_batch(json.loads(raw)))
        else:
            body = json.loads(raw)
            with fake.lock:
                fake.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "body": body})
            code, payload, headers = fake.chat(body)
            if code == 200 and body.get("stream"):
                self.send_stream(payload, bool((body.get("stream_options") or {}).get("include_usage")))
            else:
                self.send_json(code, payload, headers)

    def send_stream(self, payload: dict, include_usage: bool) -> None:
        """A completion as server-sent events: the text in word-sized chunks, the finish, the usage if asked."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        head = {"id": payload["id"], "object": "chat.completion.chunk", "created": 0, "model": payload["model"]}
        words = payload["choices"][0]["message"]["content"].split(" ")
        events = [{**head, "choices": [{"index": 0, "delta": {"content": w if i == 0 else " " + w}, "finish_reason": None}]}
                  for i, w in enumerate(words)]
        events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if include_usage and payload.get("usage"):
            events.append({**head, "choices": [], "usage": payload["usage"]})
        for event in events:
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class FakeTeacher(LoopbackServer):
    def __init__(self, delay_s: float = 0.0, fail_first: int = 0, retry_after: float = 0.0,
                 reply: Callable[[list[dict]], str] | None = None, usage: bool = True, profile: str = "openai"):
        self.delay_s, self.fail_first, self.retry_after = delay_s, fail_first, retry_after
        self.reply = reply or (lambda msgs: TEACHER_TEXT)
        self.usage = usage
        self.profile = PROFILES[profile]
        self.calls = 0
        self.bodies: list[dict] = []
        self.requests: list[dict] = []  # {"path", "headers" (lower-case names), "body"} of every chat request
        self.per_request: Counter = Counter()
        self.lock = threading.Lock()
        self.files: dict[str, str] = {}
        self.batches: dict[str, dict] = {}
        self._serve(_FakeTeacherHandler)

    def _count(self, messages: list[dict]) -> int:
        with self.lock:
            self.calls += 1
            self.per_request[json.dumps(messages, sort_keys=True)] += 1
            return self.calls

    def chat(self, body: dict) -> tuple[int, dict, dict | None]:
        """(status, payload, headers) for one chat completion request."""
        n = self._count(body["messages"])
        with self.lock:
            self.bodies.append(body)
        if n <= self.fail_first:
            return 429, {"error": {"message": "slow down", "type": "rate_limit"}}, {"retry-after": str(self.retry_after)}
        refused = next((p for p in self.profile.refuses if p in body), None)
        if refused:
            return 400, refusal(refused), None
        time.sleep(self.delay_s)
        text = self.reply(body["messages"])
        usage = usage_for(self.profile, sum(len(m["content"]) for m in body["messages"]) // 4, len(text.split()))
        return 200, completion(n, body.get("model", "fake"), text, usage if self.usage else None), None

    def upload(self, raw: bytes) -> dict:
        # multipart upload: keep the JSONL request lines, ignore the form around them
        lines = [line for line in raw.decode("utf-8", "replace").splitlines() if line.startswith('{"custom_id"')]
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = "\n".join(lines)
        return {"id": file_id, "object": "file", "bytes": len(raw), "created_at": 0, "filename": "batch.jsonl",
                "purpose": "batch", "status": "processed"}

    def create_batch(self, body: dict) -> dict:
        batch_id = f"batch-{len(self.batches) + 1}"
        self.batches[batch_id] = {"id": batch_id, "object": "batch", "endpoint": body["endpoint"],
                                  "input_file_id": body["input_file_id"], "completion_window": "24h",
                                  "status": "validating", "created_at": 0, "output_file_id": None}
        return self.batches[batch_id]

    def poll_batch(self, batch_id: str) -> dict:
        """A batch moves one step per poll: validating, in progress, completed (answers written then)."""
        batch = self.batches[batch_id]
        if batch["status"] == "validating":
            batch["status"] = "in_progress"
        elif batch["status"] == "in_progress":
            batch["status"] = "completed"
            lines = []
            for line in self.files[batch["input_file_id"]].splitlines():
                req = json.loads(line)
                self.bodies.append(req["body"])
                text = self.reply(req["body"]["messages"])
                self._count(req["body"]["messages"])
                refused = next((p for p in self.profile.refuses if p in req["body"]), None)
                if refused:  # the Batch API answers such a line with an error, not the whole batch
                    lines.append(json.dumps({"custom_id": req["custom_id"], "response": {"status_code": 400,
                                                                                          "body": refusal(refused)}}))
                    continue
                body = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                        "usage": usage_for(self.profile, 100, len(text.split()))}
                lines.append(json.dumps({"custom_id": req["custom_id"], "response": {"status_code": 200, "body": body}}))
            self.files[f"out-{batch['id']}"] = "\n".join(lines) + "\n"
            batch["output_file_id"] = f"out-{batch['id']}"
        return batch


# ---- FaultyTeacher: a streamed reply or a fault ----------------------------------------------------

class _FaultyTeacherHandler(QuietHandler):
    def setup(self):
        super().setup()
        self.close_connection = True  # one request per connection: a mode change is never missed

    def end_headers(self):
        self.send_header("connection", "close")
        super().end_headers()

    def chunk(self, text: str | None, finish: str | None = None, usage: dict | None = None) -> None:
        choices = [] if usage else [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]
        event = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "fake", "choices": choices}
        if usage:
            event["usage"] = usage
        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.flush()

    def stream(self, words: list[str], pause: float = 0.0) -> None:
        """The words as an event stream, `pause` seconds after each; then the finish, the usage and [DONE]."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for i, word in enumerate(words):
            self.chunk(word if i == 0 else " " + word)
            time.sleep(pause)
        self.chunk(None, finish="stop")
        self.chunk(None, usage={"prompt_tokens": 50, "completion_tokens": len(words), "total_tokens": 0})
        self.wfile.write(b"data: [DONE]\n\n")

    def do_POST(self):
        fake: FaultyTeacher = self.server.fake
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        fake.calls += 1
        try:
            fake.answer(self, body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up: what a chat is supposed to do with a bad teacher


class FaultyTeacher(LoopbackServer):
    """An OpenAI-compatible chat-completions server that streams a reply or produces the fault `mode` names:

    ok           streams TEACHER_TEXT word by word
    echo         streams "echo: <the last user message>" (a reply that says which message it answers)
    500          HTTP 500 with an error body
    429          HTTP 429 with Retry-After
    garbage      HTTP 200 with an HTML / binary body
    garbage-sse  an event stream cut off inside a broken event
    empty        HTTP 200 with `{}`
    stall        the first word, then nothing for 10 minutes
    drip         `drip_pieces` words, one every `drip_every_s` seconds
    hang         nothing at all for 10 minutes
    """

    MODES = ("ok", "echo", "500", "429", "garbage", "garbage-sse", "empty", "stall", "drip", "hang")

    def __init__(self, mode: str = "ok", drip_every_s: float = 3.0, drip_pieces: int = 5, retry_after_s: float = 2.0):
        self.mode, self.drip_every_s, self.drip_pieces, self.retry_after_s = mode, drip_every_s, drip_pieces, retry_after_s
        self.calls = 0
        self._serve(_FaultyTeacherHandler)

    def answer(self, out: _FaultyTeacherHandler, body: bytes) -> None:
        mode = self.mode
        if mode not in self.MODES:
            raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(self.MODES)}")
        words = TEACHER_TEXT.split(" ")
        if mode == "500":
            out.send_body(500, b'{"error": {"message": "internal error", "type": "server_error"}}')
        elif mode == "429":
            out.send_json(429, {"error": {"message": "slow down", "type": "rate_limit"}},
                          {"retry-after": f"{self.retry_after_s:g}"})
        elif mode == "garbage":
            out.send_body(200, b"<html><body>502 Bad Gateway</body></html> \x00\xff garbage")
        elif mode == "empty":
            out.send_body(200, b"{}")
        elif mode == "garbage-sse":
            out.send_response(200)
            out.send_header("content-type", "text/event-stream")
            out.end_headers()
            out.wfile.write(b'data: {"id": "x", "choices": [{"delta": {"content": "Hel\n\ndata: ]]]\n\n')
        elif mode in ("stall", "hang"):
            if mode == "stall":
                out.send_response(200)
                out.send_header("content-type", "text/event-stream")
                out.end_headers()
                out.chunk(words[0])
            time.sleep(600)
        elif mode == "drip":
            out.stream(words[: self.drip_pieces], pause=self.drip_every_s)
        elif mode == "echo":
            messages = json.loads(body)["messages"]
            last = next(m["content"] for m in reversed(messages) if m["role"] == "user")
            out.stream(f"echo: {last}".split(" "))
        else:
            out.stream(words)
