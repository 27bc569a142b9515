"""The one interface every model that answers customers implements, and a fake of it for tests.

`ChatModel.stream(messages)` yields the reply as text chunks and finishes with one `Completion`
(full text, token usage, time to first token, total latency). Timing is measured here, once, for
every model, so student and teacher figures are comparable: time to first token includes any wait in
line. An implementation writes `_generate`: text chunks, then optionally one `Usage`; a model that
queues requests also yields `Queued` while one waits, which `stream(..., waits=True)` passes on (for
the chat to show the customer's place in line) and plain `stream` drops.

`FakeModel`: canned replies for tests (`enqueue()`), like simonw/llm's mock model.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from assistant.models.engine import Queued

@dataclass
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None
    extra: dict = field(default_factory=dict)  # model-specific facts worth logging (e.g. which case answered)


@dataclass
class Completion:
    text: str
    model_name: str
    model_version: str
    input_tokens: int | None
    output_tokens: int | None
    ttft_ms: float | None
    latency_ms: float
    finish_reason: str | None = None
    cached_tokens: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float | None:
        if not self.output_tokens or not self.latency_ms:
            return None
        gen_ms = self.latency_ms - (self.ttft_ms or 0)
        return self.output_tokens / (gen_ms / 1000) if gen_ms > 0 else None


class ChatModel(ABC):
    """Streams a reply for a message list; the last item is always a `Completion`."""

    name: str = "model"
    version: str = "unversioned"
    role: str = "student"  # "student" or "teacher"
    local: bool = True  # priced by compute time rather than per token
    generates: bool = True  # False for retrieval stand-ins: tokens/s means nothing for them
    description: str = ""

    def stream(self, messages: Sequence[dict], max_tokens: int | None = None,
               waits: bool = False) -> Iterator[str | Queued | Completion]:
        start = time.perf_counter()
        first = None
        parts: list[str] = []
        usage = Usage()
        for item in self._generate(list(messages), max_tokens):
            if isinstance(item, Usage):
                usage = item
                continue
            if isinstance(item, Queued):
                if waits:
                    yield item
                continue
            if not item:
                continue
            if first is None:
                first = time.perf_counter()
            parts.append(item)
            yield item
        end = time.perf_counter()
        yield Completion(
            text="".join(parts),
            model_name=self.name,
            model_version=self.version,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            ttft_ms=None if first is None else (first - start) * 1000,
            latency_ms=(end - start) * 1000,
            finish_reason=usage.finish_reason,
            cached_tokens=usage.cached_tokens,
            extra=usage.extra,
        )

    def complete(self, messages: Sequence[dict], max_tokens: int | None = None) -> Completion:
        for item in self.stream(messages, max_tokens):
            if isinstance(item, Completion):
                return item
        raise AssertionError("stream ended without a Completion")  # pragma: no cover

    @abstractmethod
    def _generate(self, messages: list[dict], max_tokens: int | None) -> Iterator[str | Usage]:
        """Yield text chunks, and optionally one Usage with token counts."""



class FakeModel(ChatModel):
    """Replies from a queue (or echoes), for tests. `fail_with` makes the next call raise."""

    def __init__(self, name: str = "fake", role: str = "student", replies: Sequence[str] = (), delay_s: float = 0.0):
        self.name, self.role, self.version = name, role, "test"
        self.description = f"fake {role}"
        self.queue = list(replies)
        self.delay_s = delay_s
        self.calls: list[list[dict]] = []
        self.fail_with: Exception | None = None
        self.line: list[int] = []  # places in line to report (Queued) before the next reply, like a busy student
        self._lock = threading.Lock()

    def enqueue(self, *replies: str) -> None:
        self.queue.extend(replies)

    def _generate(self, messages, max_tokens):
        with self._lock:
            self.calls.append(messages)
            if self.fail_with is not None:
                exc, self.fail_with = self.fail_with, None
                raise exc
            reply = self.queue.pop(0) if self.queue else f"echo: {messages[-1]['content']}"
            line, self.line = self.line, []
        for ahead in line:
            yield Queued(ahead)
        words = reply.split(" ")
        for i, word in enumerate(words):
            if self.delay_s:
                time.sleep(self.delay_s)
            yield word if i == 0 else " " + word
        yield Usage(sum(len(m["content"].split()) for m in messages), len(words), finish_reason="stop")

