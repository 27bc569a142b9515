"""Several chats decoded together in one llama.cpp context: the student's serving engine.

A 135M student on two CPU cores spends its time reading weights, so one decode step for eight chats costs
little more than a step for one. `BatchEngine` keeps one llama.cpp context with a sequence per *slot* and
one scheduler thread that, step after step, feeds every active request its next token (and a chunk of a
newly admitted prompt) in a single batch.

- **Prefix reuse.** A slot keeps the KV cache of the last prompt it served. A request goes to the idle slot
  whose cache shares the longest prefix with its prompt, so a chat's follow-up turn prefills only its new
  tokens even when other chats ran in between. When no idle slot holds its prefix, the least recently used
  slot is taken; its cache is first saved to RAM (`SavedStates`, bounded in bytes) and a saved cache of the
  new request's chat is restored when one exists.
- **Queueing.** Requests beyond the slots wait in arrival order; each waiting request is told its place in
  line whenever it changes (`Queued`), so the chat can say "2 chats ahead of you". Nothing is refused.
- **Confidence.** Each piece of text is a `TokenText`: a str that also carries its tokens' log-probability and
  entropy, for routers that judge a draft by how sure the student was.
- **Sampling** is llama.cpp's own sampler chain (repeat penalty over the reply so far, then greedy), as
  `Llama.create_completion` builds it for temperature 0, so replies match the single-chat path token for
  token.

Only the scheduler thread touches the context; callers talk to it through queues.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from assistant.errors import ModelError

log = logging.getLogger(__name__)

PENALTY_LAST_N = 64  # llama-cpp-python's default window for the repeat penalty
REPEAT_PENALTY = 1.1  # the served student's repeat penalty (an Ollama Modelfile of it says the same)
# Fewer shared tokens than this is a chat template's opening, not a conversation: not worth keeping a slot for,
# nor saving when dropped.
MIN_REUSE = 32


@dataclass
class Queued:
    """A request is waiting for a slot: every slot is busy and `ahead` other requests are in line before it."""

    ahead: int


class TokenText(str):
    """A piece of the reply (it is a str, so every caller can treat it as one) that also says how sure the model
    was: the summed log-probability of its tokens, their mean entropy (nats) and how many tokens it holds.
    Routers read these from a held-back draft (low confidence: the teacher should answer)."""

    logprob: float = 0.0
    entropy: float = 0.0
    tokens: int = 0

    @classmethod
    def of(cls, text: str, scores: list[tuple[float, float]]) -> "TokenText":
        piece = cls(text)
        piece.logprob = sum(lp for lp, _ in scores)
        piece.entropy = sum(e for _, e in scores) / len(scores) if scores else 0.0
        piece.tokens = len(scores)
        return piece


@dataclass
class Finished:
    prompt_tokens: int
    prefilled: int  # prompt tokens actually evaluated (the rest came from a cached prefix)
    output_tokens: int
    finish_reason: str


@dataclass(eq=False)
class _Request:
    tokens: list[int]
    max_tokens: int
    stop: list[str]
    repeat_penalty: float
    out: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    slot: "_Slot | None" = None
    pending: list[int] = field(default_factory=list)  # prompt tokens still to evaluate
    next_token: int | None = None  # sampled, not yet evaluated
    generated: int = 0
    prefilled: int = 0
    sampler: object = None
    text: "_StreamText | None" = None
    scores: list = field(default_factory=list)  # (log-probability, entropy) of tokens not yet sent as text
    told: int | None = None  # the place in line last reported


@dataclass(eq=False)
class _Slot:
    seq: int
    tokens: list[int] = field(default_factory=list)  # what this sequence's KV cache holds
    request: _Request | None = None
    used_at: float = 0.0


def common_prefix(a, b) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class _StreamText:
    """Bytes of generated tokens -> text chunks, holding back what may be a split UTF-8 character or the start
    of a stop string, so a stop string never reaches the customer."""

    def __init__(self, stop: list[str]):
        self.stop = [s for s in stop if s]
        self.buffer = b""
        self.pending = ""

    def feed(self, piece: bytes) -> tuple[str, bool]:
        """(text safe to show now, whether a stop string was reached)."""
        self.buffer += piece
        try:
            self.pending += self.buffer.decode("utf-8")
            self.buffer = b""
        except UnicodeDecodeError as exc:
            if exc.reason != "unexpected end of data":
                self.pending += self.buffer.decode("utf-8", errors="replace")
                self.buffer = b""
        for s in self.stop:
            at = self.pending.find(s)
            if at >= 0:
                text, self.pending = self.pending[:at], ""
                return text, True
        hold = max((k for s in self.stop for k in range(1, len(s)) if self.pending.endswith(s[:k])), default=0)
        cut = len(self.pending) - hold
        text, self.pending = self.pending[:cut], self.pending[cut:]
        return text, False

    def flush(self) -> str:
        text = self.pending + self.buffer.decode("utf-8", errors="ignore")
        self.pending, self.buffer = "", b""
        return text


class SavedStates:
    """KV caches of chats whose slot was taken by another chat, newest last, within `capacity` bytes."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self.size = 0

    def put(self, tokens: list[int], data: bytes) -> None:
        if self.capacity <= 0 or len(data) > self.capacity:
            return
        key = tuple(tokens)
        if key in self._items:
            self.size -= len(self._items.pop(key))
        self._items[key] = data
        self.size += len(data)
        while self.size > self.capacity:
            self.size -= len(self._items.popitem(last=False)[1])

    def _best(self, tokens: list[int]) -> tuple[tuple | None, int]:
        best, best_len = None, 0
        for key in self._items:
            n = common_prefix(key, tokens)
            if n > best_len:
                best, best_len = key, n
        return best, best_len

    def longest(self, tokens: list[int]) -> int:
        """How many of `tokens` the best saved cache holds."""
        return self._best(tokens)[1]

    def take(self, tokens: list[int]) -> tuple[list[int], bytes]:
        """The saved cache sharing the longest prefix with `tokens`, removed from the store (the caller holds it
        now). Only call after `longest` found one."""
        best, _ = self._best(tokens)
        data = self._items.pop(best)
        self.size -= len(data)
        return list(best), data


class BatchEngine:
    """One llama.cpp context, `slots` sequences, one scheduler thread. `generate()` is safe from any thread."""

    def __init__(self, llm, *, slots: int, n_ctx: int, n_threads: int, n_batch: int = 512, saved_bytes: int = 0):
        import llama_cpp
        from llama_cpp import _internals

        self._llama_cpp = llama_cpp
        self.model = llm._model  # the weights and vocabulary of an already loaded Llama, shared, not copied
        self.slots = [_Slot(seq=i) for i in range(slots)]
        self.n_ctx, self.n_batch = n_ctx, n_batch
        # The loaded Llama's own settings (attention kernel, KV types, RoPE), so replies match its create_completion
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx = n_ctx * slots  # every slot holds a whole context window
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = slots
        # A KV stream per slot: attention reads only its own chat's cells. One shared (unified) cache made every
        # token attend over all chats' cells, and a 512-token batch of several chats took 1.6x as long.
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = n_threads
        try:
            self.ctx = _internals.LlamaContext(model=self.model, params=params, verbose=False)
        except Exception as exc:
            raise ModelError(f"llama.cpp could not create a context for {slots} chats of {n_ctx} tokens: {exc}") from exc
        self.batch = _internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        self.saved = SavedStates(saved_bytes)
        self.waiting: list[_Request] = []
        self._wake = threading.Condition()
        self._closed = False
        self.steps = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="student-engine")
        self._thread.start()

    # ---- callers' side ---------------------------------------------------------------------------
    def generate(self, tokens: list[int], *, max_tokens: int, stop: list[str] | None = None,
                 repeat_penalty: float = REPEAT_PENALTY) -> Iterator[str | Queued | Finished]:
        """Text chunks of the reply to `tokens` (a whole prompt), `Queued` while waiting, then one `Finished`.

        Closing the iterator early (the chat gave the turn to the teacher) frees the slot at the next step."""
        if not tokens:
            raise ModelError("empty prompt")
        if len(tokens) >= self.n_ctx:  # it would fail the decode of every chat in the same batch
            raise ModelError(f"a prompt of {len(tokens)} tokens does not fit the student's context of {self.n_ctx}")
        if len(tokens) + max_tokens > self.n_ctx:
            max_tokens = max(1, self.n_ctx - len(tokens))
        request = _Request(list(tokens), max_tokens, list(stop or []), repeat_penalty)
        with self._wake:
            if self._closed:
                raise ModelError("the student engine is closed")
            self.waiting.append(request)
            self._wake.notify()
        try:
            while True:
                try:
                    kind, value = request.out.get(timeout=1.0)
                except queue.Empty:
                    if not self._thread.is_alive():  # never wait forever on a scheduler that is gone
                        raise ModelError("the student engine stopped; restart the app (see its log)") from None
                    continue
                if kind == "error":
                    raise value
                yield value
                if kind == "done":
                    return
        finally:
            request.cancelled.set()
            with self._wake:
                self._wake.notify()

    def clear_cache(self) -> None:
        """Forget every chat's cache (benchmarks measure a cold start with it). Only while no request runs."""
        with self._wake:
            if self.waiting or self._active():
                raise ModelError("the student engine is busy; clear its cache between requests")
            self.ctx.kv_cache_clear()
            for slot in self.slots:
                slot.tokens = []
            self.saved = SavedStates(self.saved.capacity)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=10)

    # ---- the scheduler thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self.waiting and not self._active():
                    self._wake.wait()
                if self._closed:
                    break
                self._drop_cancelled()
                self._admit()
            active = self._active()
            if not active:
                continue
            try:
                self._step(active)
            except Exception as exc:  # a failed decode fails the requests in it, never the engine
                log.exception("student decode failed")
                for request in active:
                    self._finish(request, error=ModelError(f"the student failed to generate: {exc}"))
                self.ctx.kv_cache_clear()
                for slot in self.slots:
                    slot.tokens = []
        for request in self.waiting + self._active():
            request.out.put(("error", ModelError("the student engine was closed")))
        self.batch.close()
        self.ctx.close()

    def _active(self) -> list[_Request]:
        return [s.request for s in self.slots if s.request is not None]

    def _drop_cancelled(self) -> None:
        self.waiting = [r for r in self.waiting if not r.cancelled.is_set()]
        for request in self._active():
            if request.cancelled.is_set():
                self._release(request)

    def _admit(self) -> None:
        """Give waiting requests idle slots, in arrival order; tell the rest their place in line."""
        while self.waiting:
            idle = [s for s in self.slots if s.request is None]
            if not idle:
                break
            request = self.waiting.pop(0)
            try:
                self._assign(request, idle)
            except Exception as exc:  # fails this request; the scheduler, and every other chat, go on
                log.exception("student could not start a request")
                request.out.put(("error", ModelError(f"the student could not start this reply: {exc}")))
                self._release(request)
                for slot in idle:  # what their caches hold is no longer known for sure: start them afresh
                    self.ctx.kv_cache_seq_rm(slot.seq, 0, -1)
                    slot.tokens = []
        for ahead, request in enumerate(self.waiting):
            if request.told != ahead:
                request.told = ahead
                request.out.put(("item", Queued(ahead)))

    def _assign(self, request: _Request, idle: list[_Slot]) -> None:
        """Put a request in the idle slot that already holds most of its prompt, or restore its chat's saved cache
        into the least recently used one; what a slot loses is saved first."""
        tokens = request.tokens
        slot = max(idle, key=lambda s: (common_prefix(s.tokens, tokens), s.used_at))
        reuse = common_prefix(slot.tokens, tokens)
        if reuse < MIN_REUSE:  # a shared template opening is not worth another chat's cache
            slot, reuse = min(idle, key=lambda s: s.used_at), 0
        if self.saved.longest(tokens) >= max(reuse + 1, MIN_REUSE):
            saved = self.saved.take(tokens)  # first: saving the slot's own cache may push it out of the store
            self._save(slot, 0)
            self._restore(slot, *saved)
        keep = min(common_prefix(slot.tokens, tokens), len(tokens) - 1)  # the last prompt token gives the logits
        self._save(slot, keep)
        slot.request, slot.used_at = request, time.monotonic()
        request.slot, request.pending = slot, tokens[keep:]
        request.sampler = self._sampler(request.repeat_penalty)
        request.text = _StreamText(request.stop)

    def _sampler(self, repeat_penalty: float):
        from llama_cpp import _internals

        sampler = _internals.LlamaSampler()
        sampler.add_penalties(n_vocab=self.model.n_vocab(), penalty_last_n=PENALTY_LAST_N,
                              penalty_repeat=repeat_penalty, penalty_freq=0.0, penalty_present=0.0)
        sampler.add_greedy()
        return sampler

    def _save(self, slot: _Slot, keep: int) -> None:
        """Cut the slot's cache to its first `keep` tokens; when that drops another chat's turns, save them first."""
        if len(slot.tokens) - keep >= MIN_REUSE and self.saved.capacity > 0:
            lc = self._llama_cpp
            size = lc.llama_state_seq_get_size(self.ctx.ctx, slot.seq)
            buf = (lc.ctypes.c_uint8 * size)()
            n = lc.llama_state_seq_get_data(self.ctx.ctx, buf, size, slot.seq)
            self.saved.put(slot.tokens, lc.ctypes.string_at(buf, n))
        self.ctx.kv_cache_seq_rm(slot.seq, keep, -1)
        del slot.tokens[keep:]

    def _restore(self, slot: _Slot, tokens: list[int], data: bytes) -> None:
        lc = self._llama_cpp
        buf = (lc.ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if lc.llama_state_seq_set_data(self.ctx.ctx, buf, len(data), slot.seq) == len(data):
            slot.tokens = list(tokens)
        else:  # could not restore (no room): prefill from scratch instead
            self.ctx.kv_cache_seq_rm(slot.seq, 0, -1)
            slot.tokens = []

    def _step(self, active: list[_Request]) -> None:
        """One decode: each generating request's next token, then prompt chunks up to the batch size."""
        b = self.batch.batch
        b.n_tokens = 0
        outputs: list[tuple[_Request, int]] = []

        def add(request: _Request, token: int, wants_logits: bool) -> None:
            i = b.n_tokens
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, len(request.slot.tokens), 1, wants_logits
            b.seq_id[i][0] = request.slot.seq
            b.n_tokens += 1
            request.slot.tokens.append(token)
            if wants_logits:
                outputs.append((request, i))

        for request in active:
            if request.next_token is not None:
                add(request, request.next_token, True)
                request.next_token = None
        for request in active:
            room = self.n_batch - b.n_tokens
            if request.pending and room > 0:
                chunk, request.pending = request.pending[:room], request.pending[room:]
                for j, token in enumerate(chunk):
                    add(request, token, not request.pending and j == len(chunk) - 1)
                request.prefilled += len(chunk)
        if b.n_tokens == 0:
            return
        self.ctx.decode(self.batch)
        self.steps += 1
        for request, i in outputs:
            self._sample(request, i)

    def _sample(self, request: _Request, index: int) -> None:
        lc = self._llama_cpp
        logits, logz, entropy = self._confidence(index)  # before sampling: the model's own distribution
        token = lc.llama_sampler_sample(request.sampler.sampler, self.ctx.ctx, index)
        if lc.llama_vocab_is_eog(self.model.vocab, token):
            return self._finish(request, "stop")
        request.generated += 1
        request.scores.append((float(logits[token]) - logz, entropy))
        text, stopped = request.text.feed(self.model.detokenize([token], special=False))
        if text:
            request.out.put(("item", TokenText.of(text, request.scores)))
            request.scores = []
        if stopped:
            return self._finish(request, "stop")
        if request.generated >= request.max_tokens:
            return self._finish(request, "length")
        request.next_token = token

    def _confidence(self, index: int) -> tuple:
        """(the logits at batch position `index`, their log-partition, the distribution's entropy in nats): a few
        float32 passes over the vocabulary, a fraction of a millisecond per token."""
        logits = np.ctypeslib.as_array(self._llama_cpp.llama_get_logits_ith(self.ctx.ctx, index),
                                       shape=(self.model.n_vocab(),))
        top = float(logits.max())
        shifted = logits - top
        weights = np.exp(shifted)
        z = float(weights.sum())
        logz = top + math.log(z)
        return logits, logz, math.log(z) - float(weights @ shifted) / z

    def _finish(self, request: _Request, reason: str = "stop", error: Exception | None = None) -> None:
        # the slot is free before the caller hears the reply is done (it may clear the cache right away)
        tail = request.text.flush() if request.text and error is None else ""
        scores, request.scores = request.scores, []
        self._release(request)
        if error is not None:
            request.out.put(("error", error))
            return
        if tail:
            request.out.put(("item", TokenText.of(tail, scores)))
        request.out.put(("done", Finished(len(request.tokens), request.prefilled, request.generated, reason)))

    def _release(self, request: _Request) -> None:
        slot = request.slot
        if slot is not None:
            slot.request, slot.used_at = None, time.monotonic()
        if request.sampler is not None:
            request.sampler.close()
            request.sampler = None
