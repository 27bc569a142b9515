"""Building routers in one place (assistant.services): the registry by setting, and the threshold a router uses."""

import json

import pytest

from assistant.router import NoveltyRouter, RuleRouter
from assistant.services import available_routers, current_share, make_router, router_threshold
from assistant.store import now, open_store


@pytest.fixture
def store(settings):
    return open_store(settings)


def calibrate(store, router, version, share, threshold, scores):
    store.insert("router_calibrations", {"router": router, "router_version": version, "teacher_share": share,
                                         "threshold": threshold, "scores": json.dumps(scores), "source": "test",
                                         "created_at": now()})


def test_the_setting_picks_the_router(settings, store):
    from dataclasses import replace

    assert isinstance(make_router(settings, store, None), RuleRouter)
    assert isinstance(make_router(replace(settings, router="novelty"), store, None), NoveltyRouter)
    assert make_router(settings, store, None, "confidence").name == "confidence"


def test_learned_is_offered_only_once_a_version_is_trained(settings, store):
    assert "learned" not in available_routers(store) and "confidence" in available_routers(store)
    store.insert("router_versions", {"version": "router-001-abc", "kind": "learned", "status": "serving",
                                     "model": json.dumps({"features": ["rules"], "mean": [0], "scale": [1], "coef": [1],
                                                          "intercept": 0}),
                                     "trained_on": "{}", "metrics": "{}", "created_at": now()})
    assert "learned" in available_routers(store)
    from dataclasses import replace

    learned = make_router(replace(settings, router="learned"), store, None)
    assert learned.version == "router-001-abc"


def test_the_threshold_is_the_calibrated_one_else_the_setting(settings, store):
    router = RuleRouter()
    assert router_threshold(store, settings, router) == settings.router_threshold
    calibrate(store, "rules", "1", 0.2, 0.35, [0.1 * i for i in range(10)])
    assert router_threshold(store, settings, router) == 0.35
    calibrate(store, "rules", "2", 0.5, 0.9, [])  # another version's calibration is not this one's
    assert router_threshold(store, settings, router) == 0.35


def test_a_teacher_share_becomes_a_threshold_through_the_calibration_scores(settings, store):
    router = RuleRouter()
    scores = [i / 100 for i in range(100)]
    calibrate(store, "rules", "1", 0.2, 0.8, scores)
    for share in (0.1, 0.3, 0.5):
        t = router_threshold(store, settings, router, share)
        assert sum(s >= t for s in scores) == round(share * 100)
    assert router_threshold(store, settings, router, 0.0) > 1  # none to the teacher
    assert current_share(store, settings, router) == pytest.approx(0.2)


def test_without_a_calibration_the_share_reads_the_routers_logged_scores(settings, store):
    router = RuleRouter()
    assert current_share(store, settings, router) is None
    for i in range(10):
        store.log_exchange({"route": "Auto", "router": "rules", "router_version": "1", "route_score": i / 10})
    t = router_threshold(store, settings, router, 0.3)
    assert t == pytest.approx(0.7)
