"""The chat loop: route one customer message, stream the reply, fall back when the teacher fails, log it.

`respond()` answers a given message list (the CLI and the benchmarks call it). It yields `ChatEvent`s:
text deltas while the reply streams, a `reset` if text already shown must be replaced (the teacher
failed mid-reply and the student answers instead), `wait` while every slot of the student is busy (the
customer's place in line, as text to show until the reply starts), and a final `done` carrying the logged
exchange row.
`converse()` is the chat UI's entry: one new message in a session whose history lives on the server
(rebuilt from the logged exchanges), so nothing a client sends back reaches the model as context.

Modes: "Student" and "Teacher" force a model; "Auto" asks the router (`assistant.router.auto_route`). In
Auto the student's first tokens are held back briefly (DRAFT_TOKENS) so the router can look at the draft:
an empty, evasive or looping opening goes to the teacher before the customer sees it. With an online
experiment configured, the session's arm picks the mode (`assistant.experiments`).

Bounded waits: the teacher has `settings.chat_teacher_deadline` seconds (all its retries included) to
start answering, and as long again between two pieces of its reply (`bounded_stream`); past it the
student answers and the customer sees a notice. Past the daily teacher budget (`assistant.spend`) the
student answers too, with its own notice, and no shadow answer is asked for.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from assistant import spend
from assistant.errors import TeacherUnavailable
from assistant.experiments import experiment_mode, shadow, should_shadow
from assistant.models import ChatModel, Completion, Queued
from assistant.pricing import reply_cost
from assistant.router import DRAFT_TOKENS, RouteDecision, route_draft

log = logging.getLogger(__name__)

MODES = ("Student", "Teacher", "Auto")


@dataclass
class ChatEvent:
    kind: str  # "delta" | "reset" | "wait" (the customer's place in line, as text) | "done"
    text: str = ""
    exchange: dict = field(default_factory=dict)


UNAVAILABLE_NOTICE = "The teacher model is unavailable right now, so the student model answered."
SLOW_NOTICE = "The teacher model took too long to answer, so the student model answered."


class TeacherTooSlow(TeacherUnavailable):
    """The teacher did not answer (or stalled mid-reply) within the chat's deadline."""


# The whole teacher reply may take this many chat deadlines (8 s x 4 = 32 s by default).
TOTAL_DEADLINES = 4


def bounded_stream(model: ChatModel, messages: Sequence[dict], max_tokens: int | None,
                   deadline_s: float | None) -> Iterator[str | Completion]:
    """`model.stream(...)`, but waiting at most `deadline_s` for its first text (whatever retries the model
    makes inside), at most as long again for each further piece, and TOTAL_DEADLINES x `deadline_s` for the
    whole reply (a teacher dripping one piece every few seconds would otherwise hold the chat for minutes);
    then `TeacherTooSlow`.

    The model runs in a daemon thread that hands items over a queue; a model that is given up on keeps
    its thread only until its own client timeout ends the call (its output is dropped)."""
    if not deadline_s or deadline_s <= 0:
        yield from model.stream(messages, max_tokens)
        return
    items: queue.Queue = queue.Queue()
    abandoned = threading.Event()

    def pump() -> None:
        stream = model.stream(messages, max_tokens)
        try:
            for item in stream:
                if abandoned.is_set():
                    break
                items.put(("item", item))
            items.put(("end", None))
        except BaseException as exc:  # handed to the chat, which decides what the customer sees
            items.put(("error", exc))
        finally:
            stream.close()

    threading.Thread(target=pump, daemon=True, name=f"teacher-{model.name}").start()
    started = waiting_since = time.monotonic()
    pieces = 0
    try:
        while True:
            now = time.monotonic()
            gap_left = deadline_s - (now - waiting_since)
            total_left = TOTAL_DEADLINES * deadline_s - (now - started)
            try:
                kind, value = items.get(timeout=max(0.0, min(gap_left, total_left)))
            except queue.Empty:
                if not pieces:
                    reason = f"gave no answer within {deadline_s:g} s"
                elif total_left <= gap_left:  # the whole reply's time ran out first
                    reason = f"had not finished after {TOTAL_DEADLINES * deadline_s:g} s"
                else:
                    reason = f"stopped sending for {deadline_s:g} s"
                raise TeacherTooSlow(f"teacher {model.name} {reason}") from None
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
            pieces += 1
            waiting_since = time.monotonic()
    finally:
        abandoned.set()


@dataclass
class _Turn:
    """One reply in the making: the request, where it goes and why, and what the customer has seen so far."""

    messages: list[dict]
    mode: str
    session_id: str
    turn_index: int
    experiment_arm: str | None
    start: float = field(default_factory=time.perf_counter)
    target: str = "student"  # "student" or "teacher"
    decision: RouteDecision | None = None
    completion: Completion | None = None
    notice: str = ""
    error: str = ""
    shown_at: float | None = None  # when text first reached the customer

    def relay(self, items) -> Iterator[ChatEvent]:
        """Pass text on to the customer as events (and their place in line while they wait); return the
        Completion that ends the stream."""
        for item in items:
            if isinstance(item, Completion):
                return item
            if isinstance(item, Queued):
                yield _waiting(item)
                continue
            if self.shown_at is None:
                self.shown_at = time.perf_counter()
            yield ChatEvent("delta", item)
        return None


def respond(services, messages: Sequence[dict], mode: str = "Auto", session_id: str = "", turn_index: int = 0) -> Iterator[ChatEvent]:
    """Answer the last message of `messages`: route it, stream the reply as events, log the exchange."""
    mode, experiment_arm = experiment_mode(services.settings, session_id, mode)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    turn = _Turn([{"role": m["role"], "content": m["content"]} for m in messages], mode, session_id, turn_index,
                 experiment_arm)
    student = services.current_student()
    if mode == "Auto":
        yield from _auto(services, student, turn)
    else:
        turn.target = mode.lower()
        turn.decision = RouteDecision(1.0 if mode == "Teacher" else 0.0, f"{mode} picked by the user")
        _within_budget(services, turn)
    if turn.completion is None and turn.target == "teacher":
        yield from _teacher_or_fallback(services, turn)
    model: ChatModel = services.teacher if turn.target == "teacher" else student
    if turn.completion is None:
        turn.completion = yield from turn.relay(model.stream(turn.messages, services.settings.max_new_tokens, waits=True))
    exchange = _log_exchange(services, turn, model)
    yield ChatEvent("done", exchange=exchange)


def _within_budget(services, turn: _Turn) -> None:
    """Past today's teacher budget the student answers, with a notice, wherever the route said to go."""
    if turn.target == "teacher" and spend.budget_reached(services.store, services.settings):
        turn.target, turn.notice = "student", spend.NOTICE
        turn.decision = RouteDecision(turn.decision.score, f"{turn.decision.reason}; {spend.REACHED}, so the student answers")


def _auto(services, student: ChatModel, turn: _Turn) -> Iterator[ChatEvent]:
    """Auto mode: the router decides; when the question alone does not send it to the teacher, the opening of
    the student's reply (DRAFT_TOKENS) is held back, judged too, and shown only if the student keeps the turn."""
    settings = services.settings
    before = services.router.score(turn.messages)
    if before.to_teacher(settings.router_threshold):
        turn.target, turn.decision = "teacher", before
        _within_budget(services, turn)
        return
    stream = student.stream(turn.messages, settings.max_new_tokens, waits=True)
    held: list[str] = []
    for item in stream:
        if isinstance(item, Queued):
            yield _waiting(item)
            continue
        if isinstance(item, Completion):
            turn.completion = item
            break
        held.append(item)
        if len(held) >= DRAFT_TOKENS:
            break
    turn.target, turn.decision = route_draft(services.router, turn.messages, settings.router_threshold, before,
                                             "".join(held))
    _within_budget(services, turn)
    if turn.target == "teacher":
        stream.close()  # frees the student's slot for the next chat
        turn.completion = None
        return
    yield from turn.relay(held)
    if turn.completion is None:
        turn.completion = yield from turn.relay(stream)


def _waiting(item: Queued) -> ChatEvent:
    ahead = f"{item.ahead} chat{'s' if item.ahead != 1 else ''} ahead of you" if item.ahead else "you are next"
    return ChatEvent("wait", f"All our assistants are busy: {ahead}. Your answer starts in a moment.")


def _teacher_or_fallback(services, turn: _Turn) -> Iterator[ChatEvent]:
    """The teacher's reply within the chat's deadline; when it fails or is too slow, the student answers instead
    (and text the teacher already showed is reset)."""
    settings = services.settings
    try:
        turn.completion = yield from turn.relay(bounded_stream(services.teacher, turn.messages, settings.max_new_tokens,
                                                               settings.chat_teacher_deadline))
    except TeacherUnavailable as exc:
        log.warning("teacher failed, the student answers: %s", exc)
        turn.error = str(exc)
        turn.notice = SLOW_NOTICE if isinstance(exc, TeacherTooSlow) else UNAVAILABLE_NOTICE
        if turn.shown_at is not None:
            yield ChatEvent("reset")
            turn.shown_at = None
        turn.target, turn.completion = "student", None


def _log_exchange(services, turn: _Turn, model: ChatModel) -> dict:
    """Log the exchange (and maybe ask for a shadow answer); the row, plus what the UI shows beside the reply."""
    settings, completion, end = services.settings, turn.completion, time.perf_counter()
    exchange = {
        "session_id": turn.session_id,
        "turn_index": turn.turn_index,
        "route": turn.mode,
        "routed_to": turn.target,
        "route_score": turn.decision.score,
        "route_reason": turn.decision.reason,
        "model_name": model.name,
        "model_version": model.version,
        "request_messages": turn.messages,
        "reply": completion.text,
        # What the customer experienced, from the message arriving to the first / last text shown.
        "ttft_ms": round((turn.shown_at - turn.start) * 1000, 1) if turn.shown_at is not None else None,
        "latency_ms": round((end - turn.start) * 1000, 1),
        "input_tokens": completion.input_tokens,
        "output_tokens": completion.output_tokens,
        "cost": reply_cost(model, completion, settings),
        "error": turn.error,
        "notice": turn.notice,
        "experiment_arm": turn.experiment_arm,
    }
    exchange["id"] = services.store.log_exchange(exchange)
    if turn.target == "student" and settings.shadow_rate and not spend.budget_reached(services.store, settings):
        if should_shadow(exchange["id"], settings.shadow_rate):
            shadow(services.store, services.teacher, exchange["id"], turn.messages, settings)
    exchange["model_description"] = model.description
    exchange["tokens_per_s"] = completion.tokens_per_s if model.generates else None
    exchange["source"] = completion.extra
    return exchange


def converse(services, session_id: str, message: str, mode: str = "Auto") -> Iterator[ChatEvent]:
    """One customer message in a chat session kept on the server: what the chat UI calls.

    The model sees the session's history rebuilt from the exchanges this server logged
    (`store.session_history`) plus the new message, never a history sent by the client: a client
    could otherwise forge system or assistant turns. The turn index is counted here for the same reason.
    """
    if not session_id:
        raise ValueError("a conversation needs a session id")
    history = services.store.session_history(session_id)
    messages = history + [{"role": "user", "content": message}]
    yield from respond(services, messages, mode, session_id, turn_index=len(history) // 2)


def reply(services, messages: Sequence[dict], mode: str = "Auto", session_id: str = "", turn_index: int = 0) -> dict:
    """Non-streaming convenience: the logged exchange of one reply."""
    for event in respond(services, messages, mode, session_id, turn_index):
        if event.kind == "done":
            return event.exchange
    raise AssertionError("respond() ended without a done event")  # pragma: no cover


def content_text(content) -> str:
    """Plain text of a chat message's content: a str, a list of parts (dicts or strings), or one part.

    Gradio 6 hands earlier turns back as lists of content parts ([{"type": "text", "text": ...}]).
    Parts without text (files, components) show as nothing; this app sends none.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content_text(content.get("text"))
    if isinstance(content, (list, tuple)):
        return "\n".join(text for text in map(content_text, content) if text)
    return str(content)
