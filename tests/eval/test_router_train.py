"""Training and calibrating routers (eval.router_train): a learned router that beats random where the hard
cases are separable, never trained on the test split, versioned and served; calibration to a teacher share."""

import json
import random

import numpy as np
import pytest

from assistant.errors import InputError
from assistant.models import ChatModel, FakeModel, Usage
from assistant.router import FEATURES, LearnedRouter
from eval.router_train import auc, fit, fit_logistic
from eval.routing import TurnOutcome, curve, point


def synthetic(n, seed):
    """Turns whose hard cases (the student fails, the teacher does not) show in two signals, among noise."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        hard = rng.random() < 0.25
        f = {name: rng.gauss(0, 1) for name in FEATURES}
        f["draft_prob"] = rng.uniform(0.05, 0.5) if hard else rng.uniform(0.4, 0.99)
        f["case_sim"] = rng.gauss(0.4 if hard else 0.7, 0.1)
        f["kb_agree"] = None  # a signal that is sometimes missing
        out.append({"features": f, "label": int(hard), "conversation_id": i, "source": "test"})
    return out


def test_the_learned_router_beats_random_where_the_hard_cases_are_separable():
    model, metrics = fit(synthetic(300, seed=1))
    assert metrics["cv_auc"][str(metrics["penalty"])] > 0.9 and len(metrics["oof_scores"]) == 300
    router = LearnedRouter(model, "router-test")
    held_out = synthetic(400, seed=2)  # scored on turns it never saw
    rows = [TurnOutcome(student=1.0 - e["label"], teacher=1.0, scores={"learned": (0.0, router.decide(e["features"])[0])},
                        student_cost=0, teacher_cost=0, cascade_cost=0, student_ms=0, teacher_ms=0, cascade_ms=0)
            for e in held_out]
    share = sum(e["label"] for e in held_out) / len(held_out)
    at = point(rows, "learned", share)
    assert at["vs_random"] > 0.15 and at["vs_random_ci"][1] > 0  # beyond its confidence interval
    assert curve(rows, "learned")["apgr"] > 0.85


def test_logistic_regression_matches_the_textbook_solution():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 2))
    y = (rng.random(500) < 1 / (1 + np.exp(-(2 * x[:, 0] - x[:, 1] + 0.5)))).astype(float)
    coef, intercept = fit_logistic(x, y, penalty=1e-6)
    assert coef == pytest.approx([2, -1], abs=0.35) and intercept == pytest.approx(0.5, abs=0.3)
    assert auc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0 and auc([0.5, 0.5], [1, 0]) == 0.5


def test_too_few_outcomes_are_refused_with_what_to_run():
    with pytest.raises(InputError, match="--split validation"):
        fit(synthetic(10, seed=3))


class WeakOnThanks(ChatModel):
    """A student that answers the first question well and the follow-up badly."""

    name, version = "student", "test"

    def _generate(self, messages, max_tokens):
        yield "good answer" if messages[-1]["content"] != "thanks" else "bad"
        yield Usage(5, 2)


@pytest.fixture
def evaluated(settings, monkeypatch):
    """A dataset with validation and test splits, and an evaluation of each (teacher, student, routed)."""
    from dataclasses import replace

    import eval.abtest as abtest
    from assistant.store import open_store
    from distill.dataset import build_dataset
    from distill.label import LabelOptions, label
    from tests.distill.labelling import conv

    monkeypatch.setattr(abtest, "score_items", lambda items: [it.update(
        gold_recall=1.0 if "good" in it["reply"] else 0.0, gold_complete=None, rouge_l=0, bleu=0,
        semantic_similarity=0) for it in items])
    settings = replace(settings, embedder="hashing")
    store = open_store(settings)
    store.db["conversations"].insert_all([conv(i, intent=f"i{i % 2}") for i in range(60)])
    build_dataset(store, settings, label(store, settings, LabelOptions(source="logged")).job_id, val_frac=0.3,
                  test_frac=0.3)

    def run(split, router=None):
        models = {"teacher": FakeModel("teacher", "teacher", replies=["good teacher"] * 500), "student": WeakOnThanks()}
        return abtest.run_eval(store, settings, abtest.EvalConfig(arms=("teacher", "student", "routed"), judge="none",
                                                                  split=split, router=router), models=models)

    return store, settings, run


def split_ids(store, split):
    from distill.dataset import load_dataset

    dd, _ = load_dataset(store, None)
    return {row["conversation_id"] for row in dd[split]}


def test_the_router_is_never_trained_on_the_test_split(evaluated):
    from eval.abtest import load_run
    from eval.router_train import train_router

    store, settings, run = evaluated
    validation_run, test_run = run("validation"), run("test")
    result = train_router(store)
    trained = set(result["trained_on"]["conversations"])
    assert result["trained_on"]["runs"] == [validation_run] and result["trained_on"]["split"] == "validation"
    assert trained and trained <= split_ids(store, "validation") and not trained & split_ids(store, "test")
    assert store.serving_router()["version"] == result["version"]
    # scored on the test split it never saw; refused on the conversations it learned from
    scored = run("test", router="learned")
    _, items = load_run(store, scored)
    routed = [it for it in items if it["arm"] == "routed"]
    assert {it["router"] for it in routed} == {"learned"} and "learned" in routed[0]["router_scores"]
    with pytest.raises(InputError, match="trained on"):
        run("validation", router="learned")


def test_training_refuses_runs_whose_conversations_are_in_a_test_split(evaluated):
    from eval.router_train import train_router

    store, settings, run = evaluated
    test_run = run("test")
    store.execute("UPDATE eval_runs SET config = json_set(config, '$.split', 'validation') WHERE id = ?", [test_run])
    with pytest.raises(InputError, match="test split"):
        train_router(store)


def test_routed_items_keep_every_routers_scores_and_the_signals(evaluated):
    from eval.abtest import load_run

    store, settings, run = evaluated
    _, items = load_run(store, run("validation"))
    routed = [it for it in items if it["arm"] == "routed"]
    assert routed and all(set(it["router_scores"]) >= {"rules", "confidence", "novelty", "agreement"} for it in routed)
    assert all(set(it["route_features"]) == set(FEATURES) for it in routed)
    assert {it["router"] for it in routed} == {"rules"} and all(it["router_version"] == "1" for it in routed)
    students = [it for it in items if it["arm"] == "student"]
    assert all(it["draft"]["text"] == it["reply"] and it["draft"]["tokens"] == 0 for it in students)


def test_calibration_stores_the_threshold_auto_then_uses(evaluated):
    from assistant.router import NoveltyRouter
    from assistant.services import router_threshold
    from eval.router_train import calibrate

    store, settings, run = evaluated
    run("validation")
    result = calibrate(store, "novelty", 0.2)
    stored = store.router_calibration("novelty", "1")
    # these templated conversations tie a lot: the achieved share is what the stored scores give at the threshold
    assert result["n"] == len(stored["scores"]) > 20 and stored["teacher_share"] == 0.2
    assert result["achieved"] == sum(s >= result["threshold"] for s in stored["scores"]) / result["n"] >= 0.2
    assert router_threshold(store, settings, NoveltyRouter()) == result["threshold"]
    with pytest.raises(InputError, match="between 0 and 1"):
        calibrate(store, "novelty", 20)


def test_calibrating_the_learned_router_uses_its_out_of_fold_scores(evaluated):
    from eval.router_train import calibrate, train_router

    store, settings, run = evaluated
    run("validation")
    version = train_router(store)["version"]
    result = calibrate(store, "learned", 0.25)
    assert result["version"] == version and "out-of-fold" in result["source"]
    stored = store.router_calibration("learned", version)
    assert stored["threshold"] == result["threshold"] and len(stored["scores"]) == result["n"]
