"""Cost-quality curves of routers (eval.routing): shares, ties, random routing, APGR, the cascade's costs."""

import random

import pytest

from eval.routing import TurnOutcome, at_threshold, curve, point, router_curves, weights


def test_tied_scores_share_the_capacity_left_at_their_rank():
    assert weights([1, 1, 0, 0], 0.25) == [0.5, 0.5, 0.0, 0.0]
    assert weights([3, 2, 2, 1], 0.5) == [1.0, 0.5, 0.5, 0.0]
    assert weights([3, 2, 1], 0.0) == [0.0, 0.0, 0.0] and weights([3, 2, 1], 1.0) == [1.0, 1.0, 1.0]


def rows(n=200, hard=0.3, seed=1, score=None):
    """Turns where the student fails the hard ones and the teacher gets everything right; the scores of a
    perfect router ("oracle"), one that knows nothing ("flat") and one told by `score(hard, rng)`."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        is_hard = rng.random() < hard
        scores = {"oracle": (0.0, float(is_hard)), "flat": (0.0, 0.5)}
        if score:
            scores["given"] = (0.0, score(is_hard, rng))
        out.append(TurnOutcome(student=0.0 if is_hard else 1.0, teacher=1.0, scores=scores, student_cost=0.001,
                               teacher_cost=0.01, cascade_cost=0.0105, student_ms=300, teacher_ms=3000,
                               cascade_ms=3300))
    return out


def test_a_perfect_router_recovers_the_gap_and_a_blind_one_is_random():
    data = rows()
    oracle, flat = curve(data, "oracle"), curve(data, "flat")
    assert oracle["apgr"] > 0.8 and flat["apgr"] == pytest.approx(0.5, abs=0.01)
    hard_share = sum(r.student == 0 for r in data) / len(data)
    assert oracle["keeps_98_at"] <= hard_share + 0.01
    assert all(abs(p["vs_random"]) < 1e-9 for p in flat["points"])  # tied scores are exactly random
    at = point(data, "oracle", 0.2)
    assert at["vs_random_ci"][1] > 0  # beats random beyond its interval


def test_cost_and_latency_at_a_share_count_the_cascade():
    data = rows()
    some = point(data, "oracle", 0.2)  # hard turns only, each found on its draft
    assert some["cost_per_1000"] == pytest.approx(1000 * (0.2 * 0.0105 + 0.8 * 0.001))  # draft's cost on top
    distinct = rows(score=lambda hard, rng: 0.5 + 0.4 * hard + 0.01 * rng.random())
    assert point(distinct, "given", 0.9)["p50_ms"] == 3300  # the teacher's latency after the draft's
    nothing = point(data, "oracle", 0.0)
    assert nothing["cost_per_1000"] == pytest.approx(1000 * 0.001) and nothing["p50_ms"] == 300
    before_draft = [TurnOutcome(r.student, r.teacher, {"q": (1.0, 1.0)}, r.student_cost, r.teacher_cost, r.cascade_cost,
                                r.student_ms, r.teacher_ms, r.cascade_ms) for r in data]
    assert point(before_draft, "q", 1.0)["cost_per_1000"] == pytest.approx(1000 * 0.01)  # sent before any draft


def test_router_curves_from_evaluation_items_with_the_operating_point():
    items = []
    for i, r in enumerate(rows(60)):
        base = {"conversation_id": i, "turn": 1}
        items += [{**base, "arm": "student", "ok": r.student, "cost": 0.001, "latency_ms": 300},
                  {**base, "arm": "teacher", "ok": r.teacher, "cost": 0.01, "latency_ms": 3000},
                  {**base, "arm": "routed", "router_scores": r.scores}]
    curves = router_curves(items, lambda it: it["ok"], {"flat": 0.5, "never": 0.1})
    assert curves["n"] == 60 and set(curves["routers"]) == {"oracle", "flat"}
    flat = curves["routers"]["flat"]["operating"]
    assert flat["threshold"] == 0.5 and flat["share"] == 1.0  # the calibrated threshold, as Auto applies it
    oracle = curves["routers"]["oracle"]
    assert oracle["operating"]["share"] == oracle["keeps_98_at"]  # else the smallest share keeping 98%


def test_a_threshold_sends_what_its_scores_reach_and_is_compared_with_random_at_that_share():
    data = rows()
    at = at_threshold(data, "oracle", 0.5)  # exactly the hard turns
    hard = sum(r.student == 0 for r in data) / len(data)
    assert at["share"] == pytest.approx(hard) and at["accuracy"] == 1.0
    assert at["vs_random"] == pytest.approx((1 - hard) * hard) and at["vs_random_ci"][1] > 0
