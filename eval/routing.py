"""Cost-quality curves of routers on an evaluation run: what accuracy each router buys per share of teacher calls.

For every router whose scores the routed arm stored (`eval.abtest.route_turns` keeps each router's score of
every turn, before and after the student's draft), the turns are ranked by score and the top share goes to the
teacher, from 0% to 100%. At each share:
- accuracy = the teacher's per-turn accuracy on the turns sent to it, the student's on the rest;
- random routing at the same share, in expectation: student accuracy + share x (teacher - student);
- the difference from random, with a 95% paired bootstrap interval over turns (a router beats random at a
  share when the interval's low end is above 0);
- PGR (performance gap recovered) = (accuracy - student) / (teacher - student); APGR is its mean over the
  shares (RouteLLM's measure): random routing scores 0.5, a perfect router close to 1;
- cost per 1,000 turns and p50 latency: a turn sent to the teacher after the draft was judged (a cascade)
  pays the draft's time and cost as well (`eval.abtest.cascade_cost`).
Turns with equal scores share the capacity left at their rank (each gets the same fraction), so a router
that cannot tell turns apart is exactly as good as random among them, not luckier or unluckier.

The operating point is the router's calibrated threshold (`assistant router calibrate`, set on the validation
split) applied to this run's scores, so it shows the share that threshold really sends here; uncalibrated, the
smallest share that keeps 98% of the teacher's accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eval.abtest import cascade_cost
from eval.stats import bootstrap_ci, percentile

SHARES = tuple(i / 100 for i in range(101))
KEEP = 0.98  # the target: keep this much of the teacher's accuracy


@dataclass
class TurnOutcome:
    student: float  # per-turn accuracy of the student's reply (0/1, or a score in [0, 1])
    teacher: float
    scores: dict  # router name -> (score before the draft, score after it)
    student_cost: float
    teacher_cost: float
    cascade_cost: float  # teacher's cost plus the spent draft's
    student_ms: float
    teacher_ms: float
    cascade_ms: float
    features: dict = field(default_factory=dict)
    key: tuple = ()  # (conversation, turn)


def outcomes(items: list[dict], value) -> list[TurnOutcome]:
    """Per routed turn, the student's and the teacher's accuracy (`value(item)`, None: not counted), costs,
    latencies and every router's scores."""
    by_key = {(it["arm"], it["conversation_id"], it["turn"]): it for it in items}
    out = []
    for r in items:
        if r["arm"] != "routed" or not r.get("router_scores"):
            continue
        s = by_key.get(("student", r["conversation_id"], r["turn"]))
        t = by_key.get(("teacher", r["conversation_id"], r["turn"]))
        if s is None or t is None or value(s) is None or value(t) is None:
            continue
        c_ms, c_cost = cascade_cost(s, t)
        out.append(TurnOutcome(float(value(s)), float(value(t)), r["router_scores"], s.get("cost") or 0.0,
                               t.get("cost") or 0.0, c_cost or 0.0, s.get("latency_ms") or 0.0,
                               t.get("latency_ms") or 0.0, c_ms or 0.0, r.get("route_features") or {},
                               (r["conversation_id"], r["turn"])))
    return out


def weights(scores: list[float], share: float) -> list[float]:
    """The fraction of each turn sent to the teacher when the top `share` of turns by score go there; tied
    scores share what is left at their rank equally."""
    n = len(scores)
    capacity = share * n
    w = [0.0] * n
    order = sorted(range(n), key=lambda i: -scores[i])
    i = 0
    while i < n and capacity > 1e-12:
        j = i
        while j < n and scores[order[j]] == scores[order[i]]:
            j += 1
        fraction = min(1.0, capacity / (j - i))
        for k in order[i:j]:
            w[k] = fraction
        capacity -= fraction * (j - i)
        i = j
    return w


def point(rows: list[TurnOutcome], name: str, share: float, ci: bool = True) -> dict:
    """The router's accuracy, cost and latency when `share` of the turns go to the teacher, against random."""
    final = [max(r.scores[name]) for r in rows]
    return _at(rows, name, weights(final, share), share, ci)


def at_threshold(rows: list[TurnOutcome], name: str, threshold: float) -> dict:
    """The same at a fixed threshold (a calibrated one, as Auto applies it): the share is whatever it sends."""
    w = [float(max(r.scores[name]) >= threshold) for r in rows]
    return {**_at(rows, name, w, sum(w) / len(w), True), "threshold": threshold}


def _at(rows: list[TurnOutcome], name: str, w: list[float], share: float, ci: bool) -> dict:
    pre = [r.scores[name][0] for r in rows]
    final = [max(r.scores[name]) for r in rows]
    sent = [final[i] for i in range(len(rows)) if w[i] > 0]
    cutoff = min(sent) if sent else float("inf")
    acc = [r.student + wi * (r.teacher - r.student) for r, wi in zip(rows, w)]
    diff = [(wi - share) * (r.teacher - r.student) for r, wi in zip(rows, w)]
    cost, latency = [], []
    for r, wi, p in zip(rows, w, pre):
        # a turn whose score before the draft already reached the cut-off went before the student started
        teacher_cost, teacher_ms = (r.teacher_cost, r.teacher_ms) if p >= cutoff else (r.cascade_cost, r.cascade_ms)
        cost.append(wi * teacher_cost + (1 - wi) * r.student_cost)
        latency.append(teacher_ms if wi >= 0.5 else r.student_ms)
    n = len(rows)
    return {"share": share, "accuracy": sum(acc) / n, "vs_random": sum(diff) / n,
            "vs_random_ci": bootstrap_ci(diff, resamples=1000) if ci else None,
            "cost_per_1000": 1000 * sum(cost) / n, "p50_ms": percentile(latency, 0.5)}


def curve(rows: list[TurnOutcome], name: str) -> dict:
    """A router's curve over SHARES, its APGR and the smallest share keeping KEEP of the teacher's accuracy."""
    student = sum(r.student for r in rows) / len(rows)
    teacher = sum(r.teacher for r in rows) / len(rows)
    points = [point(rows, name, s, ci=False) for s in SHARES]
    gap = teacher - student
    pgr = [(p["accuracy"] - student) / gap for p in points] if gap > 0 else None
    keeps = next((p["share"] for p in points if p["accuracy"] >= KEEP * teacher), None)
    return {"router": name, "points": points, "student": student, "teacher": teacher,
            "apgr": sum(pgr) / len(pgr) if pgr else None, "keeps_98_at": keeps}


def router_curves(items: list[dict], value, calibrations: dict | None = None) -> dict:
    """{"n", "student", "teacher", "routers": {name: curve + "operating" point}} for every router scored in the
    run; `calibrations`: router name -> its calibrated threshold, applied as Auto applies it (the operating point
    when given, so the report shows whether the share calibrated on validation holds here)."""
    rows = outcomes(items, value)
    if not rows:
        return {"n": 0, "routers": {}}
    names = sorted({name for r in rows for name in r.scores})
    out = {"n": len(rows), "student": sum(r.student for r in rows) / len(rows),
           "teacher": sum(r.teacher for r in rows) / len(rows), "routers": {}}
    for name in names:
        c = curve(rows, name)
        threshold = (calibrations or {}).get(name)
        if threshold is not None:
            c["operating"] = at_threshold(rows, name, threshold)
        else:
            c["operating"] = point(rows, name, c["keeps_98_at"] if c["keeps_98_at"] is not None else 0.25)
        c["at_25"] = point(rows, name, 0.25)
        out["routers"][name] = c
    return out


# ---- a third tier: a verbatim past answer when retrieval is near-certain -------------------------------
# Before any model, a turn whose conversation state is almost the same as a resolved past case's could be
# answered with that case's reply (the retrieval arm's answer: cheapest, fastest). `tiered` rebuilds the
# outcomes with that tier in front at a case-similarity cut-off: those turns take the retrieval arm's accuracy
# and cost and never go to the teacher; the rest are routed as before. It is kept only if it moves the curve.

def tiered(rows: list[TurnOutcome], items: list[dict], value, cutoff: float) -> tuple[list[TurnOutcome], float]:
    """(the outcomes with the verbatim tier at `cutoff`, the share of turns it answers)."""
    retrieval = {(it["conversation_id"], it["turn"]): it for it in items if it["arm"] == "retrieval"}
    out, answered = [], 0
    for r in rows:
        sim = r.features.get("case_sim")
        ret = retrieval.get(r.key)
        if sim is None or sim < cutoff or ret is None or value(ret) is None:
            out.append(r)
            continue
        answered += 1
        never = {name: (-1.0, -1.0) for name in r.scores}
        out.append(TurnOutcome(float(value(ret)), r.teacher, never, ret.get("cost") or 0.0, r.teacher_cost,
                               r.cascade_cost, ret.get("latency_ms") or 0.0, r.teacher_ms, r.cascade_ms, r.features, r.key))
    return out, answered / len(rows) if rows else 0.0


def tier_effect(items: list[dict], value, name: str, cutoffs=(0.97, 0.95, 0.92, 0.9, 0.85)) -> list[dict]:
    """Per cut-off: the share the verbatim tier answers, and the router's APGR and accuracy at 25% to the
    teacher with the tier and without it."""
    rows = outcomes(items, value)
    if not rows or not any(it["arm"] == "retrieval" for it in items):
        return []
    base = curve(rows, name)
    out = []
    for cutoff in cutoffs:
        with_tier, share = tiered(rows, items, value, cutoff)
        c = curve(with_tier, name)
        out.append({"cutoff": cutoff, "verbatim_share": share, "apgr": c["apgr"], "apgr_two_tiers": base["apgr"],
                    "at_25": point(with_tier, name, 0.25)["accuracy"], "at_25_two_tiers": point(rows, name, 0.25)["accuracy"],
                    "keeps_98_at": c["keeps_98_at"], "keeps_98_at_two_tiers": base["keeps_98_at"]})
    return out
