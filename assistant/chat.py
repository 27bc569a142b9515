"""The chat loop: route one customer message, stream the reply, fall back when the teacher fails, log it.

`respond()` answers a given message list (the CLI and the benchmarks call it). It yields `ChatEvent`s:
text deltas while the reply streams, a `reset` if text already shown must be replaced (the teacher
failed mid-reply and the student answers instead), `wait` while every slot of the student is busy (the
customer's place in line, as text to show until the reply starts), and a final `done` carrying the logged
exchange row.
`converse()` is the chat UI's entry: one new message in a session whose history lives on the server
(rebuilt from the logged exchanges), so nothing a client sends back reaches the model as context.

Modes: "Student" and "Teacher" force a model; "Auto" asks the router (`assistant.router.auto_route`): the
one the settings name, or another picked in the chat's Auto options, at the threshold its calibration or a
chosen teacher share gives (`services.threshold`). In Auto the student's first tokens are held back briefly
(DRAFT_TOKENS) so the router can judge the draft (its words and, from llama.cpp, its token probabilities):
a draft the router doubts goes to the teacher before the customer sees it. That is a cascade: the draft's
time is inside the exchange's latency and its compute cost is added to the teacher's (`draft_ms`,
`draft_cost`). Every exchange records the router and its version, the tier that answered and the signals
read. With an online experiment configured, the session's arm picks the mode (`assistant.experiments`).

Bounded waits: the teacher has `settings.chat_teacher_deadline` seconds (all its retries included) to
start answering, and as long again between two pieces of its reply (`bounded_stream`); past it the
student answers and the customer sees a notice. Past the daily teacher budget (`assistant.spend`) or the
teacher's calls per minute (`assistant.limits.TeacherCallLimit`) the student answers too, with its own
notice and the reason in `route_reason`; past the budget no shadow answer is asked for.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from assistant import limits, spend
from assistant.errors import TeacherUnavailable
from assistant.experiments import experiment_mode, shadow, should_shadow
from assistant.models import ChatModel, Completion, Queued
from assistant.pricing import call_cost, reply_cost
from assistant.router import DRAFT_TOKENS, Draft, RouteDecision, route_draft

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
    router: str = "user"  # who decided: a router's name in Auto, "user" when a mode was forced
    router_version: str = ""
    threshold: float | None = None
    start: float = field(default_factory=time.perf_counter)
    draft_ms: float | None = None  # a cascade: the student's held-back draft, spent before the teacher answered
    draft_cost: float | None = None
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


def respond(services, messages: Sequence[dict], mode: str = "Auto", session_id: str = "", turn_index: int = 0,
            router: str | None = None, teacher_share: float | None = None) -> Iterator[ChatEvent]:
    """Answer the last message of `messages`: route it, stream the reply as events, log the exchange.

    `router` and `teacher_share` are Auto's options (default: the settings' router at its threshold)."""
    mode, experiment_arm = experiment_mode(services.settings, session_id, mode)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    turn = _Turn([{"role": m["role"], "content": m["content"]} for m in messages], mode, session_id, turn_index,
                 experiment_arm)
    student = services.current_student()
    if mode == "Auto":
        yield from _auto(services, student, turn, services.router_for(router), teacher_share)
    else:
        turn.target = mode.lower()
        turn.decision = RouteDecision(1.0 if mode == "Teacher" else 0.0, f"{mode} picked by the user")
        _within_limits(services, turn)
    if turn.completion is None and turn.target == "teacher":
        yield from _teacher_or_fallback(services, turn)
    model: ChatModel = services.teacher if turn.target == "teacher" else student
    if turn.completion is None:
        turn.completion = yield from turn.relay(model.stream(turn.messages, services.settings.max_new_tokens, waits=True))
    exchange = _log_exchange(services, turn, model)
    yield ChatEvent("done", exchange=exchange)


def _within_limits(services, turn: _Turn) -> None:
    """Past today's teacher budget, or the teacher's calls per minute, the student answers, with a notice and
    the reason recorded, wherever the route said to go."""
    if turn.target != "teacher":
        return
    if spend.budget_reached(services.store, services.settings):
        reached, turn.notice = spend.REACHED, spend.NOTICE
    elif not services.teacher_calls.allow():
        reached, turn.notice = limits.TEACHER_LIMIT_REACHED, limits.TEACHER_LIMIT_NOTICE
    else:
        return
    d = turn.decision
    turn.target = "student"
    turn.decision = RouteDecision(d.score, f"{d.reason}; {reached}, so the student answers", d.stage, d.features)


def _auto(services, student: ChatModel, turn: _Turn, router, teacher_share: float | None) -> Iterator[ChatEvent]:
    """Auto mode: the router decides; when the question alone does not send it to the teacher, the opening of
    the student's reply (DRAFT_TOKENS) is held back, judged too, and shown only if the student keeps the turn."""
    settings = services.settings
    turn.router, turn.router_version = router.name, getattr(router, "version", "")
    threshold = turn.threshold = services.threshold(router, teacher_share)
    before = router.score(turn.messages)
    if before.to_teacher(threshold):
        turn.target, turn.decision = "teacher", before
        _within_limits(services, turn)
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
    turn.target, turn.decision = route_draft(router, turn.messages, threshold, before, Draft.join(held))
    _within_limits(services, turn)
    if turn.target == "teacher":
        stream.close()  # frees the student's slot for the next chat
        _count_draft(services, student, turn, len(held))
        turn.completion = None
        return
    yield from turn.relay(held)
    if turn.completion is None:
        turn.completion = yield from turn.relay(stream)


def _count_draft(services, student: ChatModel, turn: _Turn, pieces: int) -> None:
    """The cascade's spent draft: its time (already inside the exchange's latency, kept apart to show it) and its
    cost, which the exchange adds to the teacher's."""
    turn.draft_ms = round((time.perf_counter() - turn.start) * 1000, 1)
    turn.draft_cost = call_cost(local=student.local, model=student.name, settings=services.settings,
                                seconds=turn.draft_ms / 1000, input_tokens=None, output_tokens=pieces)


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
        "cost": _plus(reply_cost(model, completion, settings), turn.draft_cost),
        "error": turn.error,
        "notice": turn.notice,
        "experiment_arm": turn.experiment_arm,
        "router": turn.router,
        "router_version": turn.router_version,
        "tier": turn.target,
        "draft_ms": turn.draft_ms,
        "draft_cost": turn.draft_cost,
        "route_features": json.dumps(turn.decision.features) if turn.decision.features else None,
    }
    exchange["id"] = services.store.log_exchange(exchange)
    if turn.target == "student" and settings.shadow_rate and not spend.budget_reached(services.store, settings):
        if should_shadow(exchange["id"], settings.shadow_rate):
            shadow(services.store, services.teacher, exchange["id"], turn.messages, settings)
    exchange["model_description"] = model.description
    exchange["threshold"] = turn.threshold
    exchange["tokens_per_s"] = completion.tokens_per_s if model.generates else None
    exchange["source"] = completion.extra
    return exchange


def _plus(cost: float | None, draft_cost: float | None) -> float | None:
    return cost if not draft_cost or cost is None else round(cost + draft_cost, 8)


def converse(services, session_id: str, message: str, mode: str = "Auto", router: str | None = None,
             teacher_share: float | None = None) -> Iterator[ChatEvent]:
    """One customer message in a chat session kept on the server: what the chat UI calls.

    The model sees the session's history rebuilt from the exchanges this server logged
    (`store.session_history`) plus the new message, never a history sent by the client: a client
    could otherwise forge system or assistant turns. The turn index is counted here for the same reason.
    """
    if not session_id:
        raise ValueError("a conversation needs a session id")
    history = services.store.session_history(session_id)
    messages = history + [{"role": "user", "content": message}]
    yield from respond(services, messages, mode, session_id, turn_index=len(history) // 2, router=router,
                       teacher_share=teacher_share)


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
