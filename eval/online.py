"""Online A/B from the chat logs: experiment assignment, shadow answers, and per-arm statistics.

Experiment: ASSISTANT_EXPERIMENT="teacher=0.2,student=0.5,routed=0.3" assigns each new chat session to an
arm at random (by a hash of the session id, so it is sticky: every turn of a session stays in its arm).
Shadow mode: ASSISTANT_SHADOW_RATE=0.1 has the teacher also answer that share of student-served turns in
the background; its answer is stored (never shown) and judged later against the student's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading

from assistant.errors import ConfigError
from assistant.store import Store, now
from eval.stats import percentile, two_proportions

log = logging.getLogger(__name__)
ARM_MODES = {"teacher": "Teacher", "student": "Student", "routed": "Auto"}


def parse_experiment(spec: str) -> dict[str, float]:
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


def should_shadow(exchange_id: int, rate: float) -> bool:
    return rate > 0 and _unit(f"shadow:{exchange_id}") < rate


def shadow(store: Store, teacher, exchange_id: int, messages: list[dict], settings) -> threading.Thread:
    """Have the teacher answer in the background and store it; the customer never sees it."""
    from assistant.chat import reply_cost

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


def judge_shadows(store: Store, judge) -> int:
    """Grade student replies against the teacher's shadow answers (the reference) where not done yet."""
    n = 0
    for row in list(store.db.query(
            "SELECT s.id, s.reply AS teacher_reply, e.reply AS student_reply, e.request_messages FROM shadow_answers s "
            "JOIN exchanges e ON e.id = s.exchange_id WHERE s.judge IS NULL")):
        grade = judge.grade(json.loads(row["request_messages"]), row["teacher_reply"], row["student_reply"])
        if grade is not None:
            store.update("shadow_answers", row["id"], {"judge": json.dumps(grade)})
            n += 1
    return n


def online_stats(store: Store) -> dict:
    """Per arm, from the exchanges table: volume, thumbs-up rate, latency, cost; and the significance of the difference."""
    rows = list(store.db.query(
        "SELECT e.id, coalesce(e.experiment_arm, CASE e.route WHEN 'Auto' THEN 'routed' ELSE e.routed_to END) AS arm, "
        "e.latency_ms, e.cost, e.routed_to, f.thumbs FROM exchanges e "
        "LEFT JOIN (SELECT exchange_id, max(id) AS id FROM feedback GROUP BY exchange_id) lf ON lf.exchange_id = e.id "
        "LEFT JOIN feedback f ON f.id = lf.id"))
    arms: dict[str, dict] = {}
    for r in rows:
        a = arms.setdefault(r["arm"], {"exchanges": 0, "rated": 0, "up": 0, "latency": [], "cost": [], "to_teacher": 0})
        a["exchanges"] += 1
        a["latency"].append(r["latency_ms"])
        if r["cost"] is not None:
            a["cost"].append(r["cost"])
        a["to_teacher"] += r["routed_to"] == "teacher"
        if r["thumbs"] is not None:
            a["rated"] += 1
            a["up"] += r["thumbs"] > 0
    out = {}
    for arm, a in arms.items():
        out[arm] = {"exchanges": a["exchanges"], "rated": a["rated"],
                    "thumbs_up_rate": a["up"] / a["rated"] if a["rated"] else None,
                    "p50_latency_ms": percentile(a["latency"], 0.5), "p95_latency_ms": percentile(a["latency"], 0.95),
                    "cost_per_1000": 1000 * sum(a["cost"]) / len(a["cost"]) if a["cost"] else None,
                    "teacher_share": a["to_teacher"] / a["exchanges"]}
    comparison = None
    if "student" in arms and "teacher" in arms:
        comparison = two_proportions(arms["student"]["up"], arms["student"]["rated"], arms["teacher"]["up"], arms["teacher"]["rated"])
    shadows = [json.loads(r["judge"]) for r in store.db.query("SELECT judge FROM shadow_answers WHERE judge IS NOT NULL")]
    return {"arms": out, "student_vs_teacher_thumbs": comparison,
            "shadow": {"answers": store.db["shadow_answers"].count, "judged": len(shadows),
                       "student_accuracy": sum(s["accurate"] for s in shadows) / len(shadows) if shadows else None}}
