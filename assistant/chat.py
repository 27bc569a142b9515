"""The chat loop: route one customer message, stream the reply, fall back when the teacher fails, log it.

`respond()` answers a given message list (the CLI and the benchmarks call it). It yields `ChatEvent`s:
text deltas while the reply streams, a `reset` if text already shown must be replaced (the teacher
failed mid-reply and the student answers instead), and a final `done` carrying the logged exchange row.
`converse()` is the chat UI's entry: one new message in a session whose history lives on the server
(rebuilt from the logged exchanges), so nothing a client sends back reaches the model as context.

Modes: "Student" and "Teacher" force a model; "Auto" asks the router. In Auto the student's first
tokens are held back briefly (DRAFT_TOKENS) so the router can look at the draft: an empty,
evasive or looping opening goes to the teacher before the customer sees it.

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
from assistant.models import ChatModel, Completion
from assistant.router import RouteDecision

log = logging.getLogger(__name__)

MODES = ("Student", "Teacher", "Auto")
DRAFT_TOKENS = 24


@dataclass
class ChatEvent:
    kind: str  # "delta" | "reset" | "done"
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


def reply_cost(model: ChatModel, completion: Completion, settings) -> float | None:
    """US$ for one reply: API models by token price, local models by compute time."""
    if model.local:
        return round(completion.latency_ms / 1000 / 3600 * settings.compute_per_hour, 8)
    price = settings.price(model.name)
    if price is None or completion.input_tokens is None or completion.output_tokens is None:
        return None
    return round((completion.input_tokens * price[0] + completion.output_tokens * price[1]) / 1e6, 8)


def experiment_mode(settings, session_id: str, chosen: str) -> tuple[str, str | None]:
    """(mode, experiment arm): with an online experiment configured, the session's assigned arm decides."""
    from eval.online import ARM_MODES, assign, parse_experiment

    arm = assign(session_id, parse_experiment(settings.experiment)) if settings.experiment and session_id else None
    return (ARM_MODES[arm], arm) if arm else (chosen, None)


def respond(services, messages: Sequence[dict], mode: str = "Auto", session_id: str = "", turn_index: int = 0) -> Iterator[ChatEvent]:
    mode, experiment_arm = experiment_mode(services.settings, session_id, mode)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    settings = services.settings
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    start = time.perf_counter()
    notice, error = "", ""

    if mode == "Student":
        decision, target = RouteDecision(0.0, "Student picked by the user"), "student"
    elif mode == "Teacher":
        decision, target = RouteDecision(1.0, "Teacher picked by the user"), "teacher"
    else:
        decision = services.router.score(messages)
        target = "teacher" if decision.to_teacher(settings.router_threshold) else "student"

    student = services.current_student()
    completion: Completion | None = None
    if target == "teacher" and spend.budget_reached(services.store, settings):
        target, notice = "student", spend.NOTICE
        decision = RouteDecision(decision.score, f"{decision.reason}; {spend.REACHED}, so the student answers")
    model: ChatModel = student if target == "student" else services.teacher
    shown_at: list[float] = []  # when text first reached the customer (empty until it does)

    def relay(items):
        """Pass text on to the customer as events; return the Completion that ends the stream."""
        for item in items:
            if isinstance(item, Completion):
                return item
            if not shown_at:
                shown_at.append(time.perf_counter())
            yield ChatEvent("delta", item)
        return None

    if target == "student" and mode == "Auto":
        # Hold back the opening of the student's reply so the router can judge the draft.
        stream = student.stream(messages, settings.max_new_tokens)
        held: list[str] = []
        for item in stream:
            if isinstance(item, Completion):
                completion = item
                break
            held.append(item)
            if len(held) >= DRAFT_TOKENS:
                break
        draft_decision = services.router.score(messages, draft="".join(held))
        escalate = draft_decision.to_teacher(settings.router_threshold)
        if escalate and spend.budget_reached(services.store, settings):
            # the draft would go to the teacher, but today's budget is spent: the student's reply stands
            escalate, notice = False, spend.NOTICE
            draft_decision = RouteDecision(draft_decision.score, f"{draft_decision.reason}; {spend.REACHED}, so the student answers")
        if escalate:
            stream.close()
            decision, target, model, completion = draft_decision, "teacher", services.teacher, None
        else:
            decision = draft_decision if draft_decision.score > decision.score else decision
            yield from relay(held)
            if completion is None:
                completion = yield from relay(stream)

    if completion is None and target == "teacher":
        try:
            completion = yield from relay(bounded_stream(services.teacher, messages, settings.max_new_tokens,
                                                         settings.chat_teacher_deadline))
        except TeacherUnavailable as exc:
            log.warning("teacher failed, the student answers: %s", exc)
            error = str(exc)
            notice = SLOW_NOTICE if isinstance(exc, TeacherTooSlow) else UNAVAILABLE_NOTICE
            if shown_at:
                yield ChatEvent("reset")
                shown_at.clear()
            target, model, completion = "student", student, None

    if completion is None:
        completion = yield from relay(model.stream(messages, settings.max_new_tokens))

    end = time.perf_counter()
    exchange = {
        "session_id": session_id,
        "turn_index": turn_index,
        "route": mode,
        "routed_to": target,
        "route_score": decision.score,
        "route_reason": decision.reason,
        "model_name": model.name,
        "model_version": model.version,
        "request_messages": messages,
        "reply": completion.text,
        # What the customer experienced, from the message arriving to the first / last text shown.
        "ttft_ms": round((shown_at[0] - start) * 1000, 1) if shown_at else None,
        "latency_ms": round((end - start) * 1000, 1),
        "input_tokens": completion.input_tokens,
        "output_tokens": completion.output_tokens,
        "cost": reply_cost(model, completion, settings),
        "error": error,
        "notice": notice,
        "experiment_arm": experiment_arm,
    }
    exchange["id"] = services.store.log_exchange(exchange)
    if target == "student" and settings.shadow_rate and not spend.budget_reached(services.store, settings):
        from eval.online import shadow, should_shadow

        if should_shadow(exchange["id"], settings.shadow_rate):
            shadow(services.store, services.teacher, exchange["id"], messages, settings)
    exchange["model_description"] = model.description
    exchange["tokens_per_s"] = completion.tokens_per_s if model.generates else None
    exchange["source"] = completion.extra
    yield ChatEvent("done", exchange=exchange)


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
