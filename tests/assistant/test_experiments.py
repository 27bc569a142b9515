"""Online experiments on the chat's path: sticky arm assignment, the experiment setting, shadow answers
(assistant.experiments)."""

from dataclasses import replace

import pytest

from assistant.errors import ConfigError
from assistant.experiments import assign, experiment_mode, parse_experiment, should_shadow


def test_online_assignment_is_sticky_and_close_to_the_shares():
    shares = parse_experiment("teacher=0.2,student=0.5,routed=0.3")
    counts = {"teacher": 0, "student": 0, "routed": 0}
    for i in range(20000):
        counts[assign(f"session-{i}", shares)] += 1
    assert abs(counts["teacher"] / 20000 - 0.2) < 0.015 and abs(counts["student"] / 20000 - 0.5) < 0.015
    assert len({assign("same-session", shares) for _ in range(5)}) == 1
    assert sum(should_shadow(i, 0.1) for i in range(10000)) == pytest.approx(1000, abs=100)
    assert not any(should_shadow(i, 0.0) for i in range(1000))


def test_the_experiment_setting_is_checked():
    assert parse_experiment("Teacher=1, student=3") == {"teacher": 0.25, "student": 0.75}
    assert parse_experiment("") == {} and assign("s", {}) is None
    with pytest.raises(ConfigError, match="unknown arm"):
        parse_experiment("robots=1")
    with pytest.raises(ConfigError, match="needs a share"):
        parse_experiment("student=half")


def test_experiment_setting_decides_the_mode(settings):
    s = replace(settings, experiment="teacher=1")
    assert experiment_mode(s, "abc", "Student") == ("Teacher", "teacher")
    assert experiment_mode(s, "", "Student") == ("Student", None)  # no session, no arm
    assert experiment_mode(settings, "abc", "Student") == ("Student", None)


def test_a_logged_exchange_counts_under_its_arm():
    from assistant.experiments import arm_of

    assert arm_of("student", "Auto", "teacher") == "student"  # the experiment decides
    assert arm_of(None, "Auto", "teacher") == "routed" == arm_of(None, "Auto", "student")
    assert arm_of(None, "Teacher", "teacher") == "teacher" and arm_of(None, "Student", "student") == "student"
