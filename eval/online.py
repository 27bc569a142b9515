"""Online A/B from the chat logs: per-arm statistics, per-router statistics of Auto mode, and the judging of the
teacher's shadow answers.

Sessions are assigned to arms, and shadow answers asked for, on the chat's hot path by the core
(`assistant.experiments`); this module only reads what the chat logged: exchanges with their experiment
arm and feedback, and the shadow answers.
"""

from __future__ import annotations

import json

from assistant.experiments import arm_of
from assistant.store import Store
from eval.stats import percentile, two_proportions


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
        "SELECT e.id, e.experiment_arm, e.route, e.latency_ms, e.cost, e.routed_to, f.thumbs FROM exchanges e "
        "LEFT JOIN (SELECT exchange_id, max(id) AS id FROM feedback GROUP BY exchange_id) lf ON lf.exchange_id = e.id "
        "LEFT JOIN feedback f ON f.id = lf.id"))
    arms: dict[str, dict] = {}
    for r in rows:
        a = arms.setdefault(arm_of(r["experiment_arm"], r["route"], r["routed_to"]), {"exchanges": 0, "rated": 0, "up": 0, "latency": [], "cost": [], "to_teacher": 0})
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


def router_stats(store: Store) -> list[dict]:
    """Auto exchanges per router and version: volume, share sent to the teacher, thumbs-up rate, p50 latency,
    cost per 1,000, and how many the student answered because a teacher limit (budget, calls per minute) was hit."""
    groups: dict[tuple, dict] = {}
    for r in store.db.query(
            "SELECT e.router, e.router_version, e.routed_to, e.latency_ms, e.cost, e.notice, e.route_reason, f.thumbs "
            "FROM exchanges e LEFT JOIN feedback f ON f.id = (SELECT max(id) FROM feedback WHERE exchange_id = e.id) "
            "WHERE e.route = 'Auto' AND e.router IS NOT NULL"):
        g = groups.setdefault((r["router"], r["router_version"] or ""), {"n": 0, "teacher": 0, "rated": 0, "up": 0,
                                                                          "latency": [], "cost": [], "limited": 0})
        g["n"] += 1
        g["teacher"] += r["routed_to"] == "teacher"
        g["latency"].append(r["latency_ms"])
        if r["cost"] is not None:
            g["cost"].append(r["cost"])
        if r["thumbs"] is not None:
            g["rated"] += 1
            g["up"] += r["thumbs"] > 0
        g["limited"] += "so the student answers" in (r["route_reason"] or "")
    return [{"router": name, "version": version, "exchanges": g["n"], "teacher_share": g["teacher"] / g["n"],
             "thumbs_up_rate": g["up"] / g["rated"] if g["rated"] else None, "rated": g["rated"],
             "p50_latency_ms": percentile(g["latency"], 0.5),
             "cost_per_1000": 1000 * sum(g["cost"]) / len(g["cost"]) if g["cost"] else None, "limited": g["limited"]}
            for (name, version), g in sorted(groups.items())]

