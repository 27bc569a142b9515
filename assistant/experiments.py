"""Online experiments on the chat's hot path: which arm a session is in, and the teacher's shadow answers.

Experiment: ASSISTANT_EXPERIMENT="teacher=0.2,student=0.5,routed=0.3" assigns each new chat session to an
arm at random (by a hash of the session id, so it is sticky: every turn of a session stays in its arm).
Shadow mode: ASSISTANT_SHADOW_RATE=0.1 has the teacher also answer that share of student-served turns in
the background; its answer is stored (never shown) and judged later against the student's.

The per-arm statistics read from the logs, and the judging of shadow answers, are the evaluation's
(`eval.online`). A new arm is a name here (ARM_MODES: the chat mode it runs) and a row in those statistics.
"""

from __future__ import annotations

import hashlib
import logging
import threading

from assistant.errors import ConfigError
from assistant.pricing import reply_cost
from assistant.store import Store, now

log = logging.getLogger(__name__)
ARM_MODES = {"teacher": "Teacher", "student": "Student", "routed": "Auto"}
_ARM_OF_MODE = {mode: arm for arm, mode in ARM_MODES.items()}


def arm_of(experiment_arm: str | None, route: str | None, routed_to: str | None) -> str:
    """The arm a logged exchange counts under: its experiment arm, else the arm its chat mode runs (an Auto
    reply is the routed arm whichever model answered), else the model that answered."""
    if experiment_arm:
        return experiment_arm
    return _ARM_OF_MODE["Auto"] if route == "Auto" else routed_to


def parse_experiment(spec: str) -> dict[str, float]:
    """ASSISTANT_EXPERIMENT as {arm: share}, the shares summing to 1; {} when it is empty."""
    shares = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        arm, _, share = part.partition("=")
        arm = arm.strip().lower()
        if arm not in ARM_MODES:
            raise ConfigError(f"ASSISTANT_EXPERIMENT: unknown arm {arm!r}; use teacher, student and routed")
        try:
            shares[arm] = float(share)
        except ValueError:
            raise ConfigError(f"ASSISTANT_EXPERIMENT: {part!r} needs a share, e.g. student=0.5") from None
    total = sum(shares.values())
    if shares and (total <= 0 or any(v < 0 for v in shares.values())):
        raise ConfigError("ASSISTANT_EXPERIMENT: shares must be positive")
    return {k: v / total for k, v in shares.items()}


def _unit(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / float(1 << 48)


def assign(session_id: str, shares: dict[str, float]) -> str | None:
    """The arm of a session: random across sessions, always the same for one session."""
    if not shares:
        return None
    u, acc = _unit("experiment:" + session_id), 0.0
    for arm in sorted(shares):
        acc += shares[arm]
        if u < acc:
            return arm
    return sorted(shares)[-1]


def experiment_mode(settings, session_id: str, chosen: str) -> tuple[str, str | None]:
    """(mode, experiment arm): with an online experiment configured, the session's assigned arm decides."""
    arm = assign(session_id, parse_experiment(settings.experiment)) if settings.experiment and session_id else None
    return (ARM_MODES[arm], arm) if arm else (chosen, None)


def should_shadow(exchange_id: int, rate: float) -> bool:
    return rate > 0 and _unit(f"shadow:{exchange_id}") < rate


def shadow(store: Store, teacher, exchange_id: int, messages: list[dict], settings) -> threading.Thread:
    """Have the teacher answer in the background and store it; the customer never sees it."""

    def work():
        try:
            c = teacher.complete(messages, settings.max_new_tokens)
        except Exception as exc:  # a failed shadow call costs nothing but a log line
            log.warning("shadow answer for exchange %s failed: %s", exchange_id, exc)
            return
        store.insert("shadow_answers", {
            "exchange_id": exchange_id, "teacher": teacher.name, "reply": c.text, "latency_ms": c.latency_ms,
            "input_tokens": c.input_tokens, "output_tokens": c.output_tokens, "cost": reply_cost(teacher, c, settings),
            "created_at": now()})

    thread = threading.Thread(target=work, daemon=True, name=f"shadow-{exchange_id}")
    thread.start()
    return thread
