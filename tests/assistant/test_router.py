"""Routing (assistant.router): the rule router's signals and score, the calibrated threshold, and Auto mode's
decision shared by the chat and the offline A/B."""

import pytest

from assistant.router import DRAFT_TOKENS, RuleRouter, auto_route, calibrate_threshold


def u(text):
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("text, signal", [
    ("I want to talk to a human", "asks for a human"),
    ("I was charged twice, I want a refund", "sensitive topic"),
    ("How do I reset my password? Also, where is my order?", "several issues in one message"),
    ("THIS IS UNACCEPTABLE, FIX IT NOW", "customer is upset"),
    (" ".join(["word"] * 80), "long message"),
])
def test_signals(text, signal):
    assert signal in RuleRouter().signals(u(text))


def test_routine_question_stays_with_the_student():
    d = RuleRouter().score(u("how long does the battery last"))
    assert d.score == 0 and d.reason == "routine question" and not d.to_teacher(0.5)


def test_escalation_goes_to_the_teacher_and_signals_combine():
    r = RuleRouter()
    one = r.score(u("can I speak to a supervisor"))
    two = r.score(u("can I speak to a supervisor about this refund"))
    assert one.to_teacher(0.5) and two.score > one.score


def test_low_information_draft_is_escalated():
    r = RuleRouter()
    assert r.score(u("where is my order"), draft="I'm sorry, I cannot help with that").to_teacher(0.5)
    assert r.score(u("where is my order"), draft="").to_teacher(0.5)
    loop = "you can you can you can you can you can you can you can you can"
    assert r.score(u("where is my order"), draft=loop).to_teacher(0.5)
    assert not r.score(u("where is my order"), draft="Orders ship within one business day.").to_teacher(0.5)


def test_calibrated_threshold_hits_the_target_share():
    scores = [i / 100 for i in range(100)]
    t = calibrate_threshold(scores, 0.2)
    assert sum(s >= t for s in scores) == 20
    assert sum(s >= calibrate_threshold(scores, 0.0) for s in scores) == 0


def test_auto_route_reads_the_draft_only_when_the_question_alone_stays_with_the_student():
    router, drafts = RuleRouter(), []

    def draft():
        drafts.append(DRAFT_TOKENS)
        return "Orders ship within one business day."

    target, decision = auto_route(router, u("I want to speak to a supervisor"), 0.5, draft)
    assert target == "teacher" and "asks for a human" in decision.reason and drafts == []
    target, decision = auto_route(router, u("where is my order"), 0.5, draft)
    assert target == "student" and decision.reason == "routine question" and len(drafts) == 1


def test_auto_route_escalates_a_weak_draft_and_otherwise_shows_the_higher_score():
    router = RuleRouter()
    target, decision = auto_route(router, u("where is my order"), 0.5, lambda: "I'm sorry, I cannot help with that")
    assert target == "teacher" and decision.reason == "student draft is low-information"
    # a sensitive question (0.5) under a high threshold, and a weak draft (0.8) still under it: the student answers,
    # and the logged decision is the draft's, which says more
    target, decision = auto_route(router, u("I want a refund"), 0.9, lambda: "")
    assert target == "student" and decision.score == pytest.approx(0.8)
    assert decision.reason == "sensitive topic, student draft is low-information"


# ---- #14: calibration, the draft's confidence, the signal routers and the registry -------------------

import random

from assistant.errors import ConfigError
from assistant.models.engine import TokenText
from assistant.retrieval import CaseBase, KnowledgeBase, Retriever
from assistant.router import (FEATURES, AgreementRouter, ConfidenceRouter, Draft, LearnedRouter, NoveltyRouter,
                              ROUTERS, RouteDecision, build_router, route_draft)


@pytest.mark.parametrize("share", [0.05, 0.1, 0.2, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("shape", ["uniform", "skewed", "coarse"])
def test_calibration_hits_the_target_share_on_synthetic_scores(share, shape):
    rng = random.Random(7)
    draw = {"uniform": rng.random, "skewed": lambda: rng.random() ** 6,
            "coarse": lambda: round(rng.random(), 2)}[shape]
    calibration, fresh = [draw() for _ in range(2000)], [draw() for _ in range(2000)]
    t = calibrate_threshold(calibration, share)
    on_calibration = sum(s >= t for s in calibration) / len(calibration)
    assert abs(on_calibration - share) <= 0.01  # ties at the threshold can add a few
    assert abs(sum(s >= t for s in fresh) / len(fresh) - share) <= 0.04  # and it holds on new scores of the same kind


def test_calibration_of_no_share_sends_nothing_and_without_scores_keeps_a_default():
    assert calibrate_threshold([], 0.0) > 1 and calibrate_threshold([], 0.2) == 0.5


def pieces(*specs):
    """TokenText pieces as llama.cpp yields them: (text, log-probability, entropy)."""
    return [TokenText.of(text, [(lp, ent)]) for text, lp, ent in specs]


def test_a_draft_carries_how_sure_the_student_was():
    d = Draft.join(pieces(("Orders", -0.1, 0.2), (" ship", -0.3, 0.6)))
    assert d == "Orders ship" and d.tokens == 2 and d.logprob == pytest.approx(-0.4)
    assert d.entropy == pytest.approx(0.4) and d.mean_prob == pytest.approx(2.718281828 ** -0.2)
    plain = Draft.join(["Orders", " ship"])  # a student that is not llama.cpp (FakeModel): text only
    assert plain == "Orders ship" and plain.tokens == 0 and plain.mean_prob is None


def test_the_confidence_router_sends_an_unsure_draft_to_the_teacher():
    router, q = ConfidenceRouter(), u("where is my order")
    assert router.score(q).score == 0 and "waits" in router.score(q).reason  # judges the draft, not the question
    sure = router.score(q, Draft.join(pieces(("Orders ship", -0.05, 0.1), (" today.", -0.05, 0.1))))
    unsure = router.score(q, Draft.join(pieces(("Maybe", -2.0, 3.0), (" the thing", -2.5, 3.1))))
    assert sure.score < 0.1 < 0.8 < unsure.score and "mean token probability" in unsure.reason
    assert unsure.stage == "draft" and unsure.features["draft_prob"] == pytest.approx(2.718281828 ** -2.25)
    assert router.score(q, "I'm sorry, I cannot help with that").to_teacher(0.5)  # no token scores: the words


def retriever(fake_embedder, kb=()):
    cases = [{"id": 1, "resolution": "resolved", "csat": None, "messages": [
        {"role": "user", "content": "how do I reset my thermostat"},
        {"role": "assistant", "content": "Hold the dial for ten seconds until the screen flashes."}]}]
    return Retriever(KnowledgeBase(list(kb), fake_embedder), CaseBase(cases, fake_embedder))


def test_the_novelty_router_scores_distance_to_the_nearest_training_example(fake_embedder):
    router = NoveltyRouter(retriever(fake_embedder))
    known = router.score(u("how do I reset my thermostat"))
    new = router.score(u("my invoice shows a wrong VAT number for the company"))
    assert known.score < 0.05 and new.score > 0.5 and "similarity" in new.reason
    assert known.stage == "question"  # needs no draft: can send the turn before the student starts


def test_novelty_reads_the_turns_before_the_last_message(fake_embedder):
    router = NoveltyRouter(retriever(fake_embedder))
    follow_up = [{"role": "user", "content": "how do I reset my thermostat"},
                 {"role": "assistant", "content": "Hold the dial for ten seconds until the screen flashes."},
                 {"role": "user", "content": "it did not work"}]
    assert router.score(follow_up).score < router.score(u("it did not work")).score


def test_the_agreement_router_checks_the_draft_against_the_nearest_case(fake_embedder):
    router = AgreementRouter(retriever(fake_embedder))
    q = u("how do I reset my thermostat")
    agrees = router.score(q, Draft("Hold the dial for ten seconds until the screen flashes."))
    disagrees = router.score(q, Draft("Please send us your invoice number and we will refund you."))
    assert agrees.score < 0.1 < 0.5 < disagrees.score and "nearest case" in disagrees.reason


def test_the_learned_router_applies_its_weights_and_names_what_mattered():
    model = {"features": list(FEATURES), "mean": [0.0] * len(FEATURES), "scale": [1.0] * len(FEATURES),
             "coef": [3.0 if f == "rules" else -4.0 if f == "draft_prob" else 0.0 for f in FEATURES], "intercept": 0.0}
    router = LearnedRouter(model, "router-001-abc")
    assert router.name == "learned" and router.version == "router-001-abc"
    risky = router.score(u("I want a refund"), Draft.join(pieces(("Maybe", -3.0, 2.0))))
    safe = router.score(u("where is my order"), Draft.join(pieces(("Orders ship today", -0.01, 0.1))))
    assert risky.score > 0.5 > safe.score and "P(student worse)" in risky.reason and "rule signals" in risky.reason


def test_the_registry_builds_every_router_and_names_what_is_missing(fake_embedder):
    r = retriever(fake_embedder)
    for name in ROUTERS:
        if name != "learned":
            built = build_router(name, r)
            assert built.name == name and built.version
    with pytest.raises(ConfigError, match="assistant router train"):
        build_router("learned", r)
    with pytest.raises(ConfigError, match="unknown router"):
        build_router("magic", r)
    learned = build_router("learned", r, {"version": "router-002-x", "model": {
        "features": ["rules"], "mean": [0.0], "scale": [1.0], "coef": [1.0], "intercept": 0.0}})
    assert (learned.name, learned.version) == ("learned", "router-002-x")


def test_the_draft_decision_says_it_was_made_on_the_draft():
    router = RuleRouter()
    before = router.score(u("where is my order"))
    target, decision = route_draft(router, u("where is my order"), 0.5, before, Draft("Orders ship today."))
    assert target == "student" and decision.stage == "draft" and isinstance(decision, RouteDecision)
