"""Online A/B: experiment assignment, the experiment setting, shadow answers (eval.online)."""

import pytest

from assistant.models import FakeModel
from eval.judge import Judge
from eval.online import assign, parse_experiment, should_shadow
from tests.eval.judges import AlwaysA


def test_online_assignment_is_sticky_and_close_to_the_shares():
    shares = parse_experiment("teacher=0.2,student=0.5,routed=0.3")
    counts = {"teacher": 0, "student": 0, "routed": 0}
    for i in range(20000):
        counts[assign(f"session-{i}", shares)] += 1
    assert abs(counts["teacher"] / 20000 - 0.2) < 0.015 and abs(counts["student"] / 20000 - 0.5) < 0.015
    assert all(assign("same-session", shares) == assign("same-session", shares) for _ in range(5))
    assert sum(should_shadow(i, 0.1) for i in range(10000)) == pytest.approx(1000, abs=100)


def test_experiment_setting_decides_the_mode(settings):
    from dataclasses import replace

    from assistant.chat import experiment_mode

    s = replace(settings, experiment="teacher=1")
    assert experiment_mode(s, "abc", "Student") == ("Teacher", "teacher")
    assert experiment_mode(settings, "abc", "Student") == ("Student", None)


def test_shadow_answers_are_stored_never_shown_and_judged_later(settings, fake_embedder):
    from dataclasses import replace

    from assistant.chat import reply
    from assistant.retrieval import CaseBase, KnowledgeBase, Retriever
    from assistant.router import RuleRouter
    from assistant.services import Services
    from assistant.store import open_store
    from eval.online import judge_shadows, online_stats

    services = Services(settings=replace(settings, shadow_rate=1.0), store=open_store(settings),
                        retriever=Retriever(KnowledgeBase([], fake_embedder), CaseBase([], fake_embedder)),
                        student=FakeModel("student", "student", replies=["Student reply."]),
                        teacher=FakeModel("teacher", "teacher", replies=["Teacher shadow reply."]), router=RuleRouter())
    ex = reply(services, [{"role": "user", "content": "where is my order"}], "Student", "s1")
    assert ex["reply"] == "Student reply."  # the customer only ever sees the student
    import time

    for _ in range(50):
        if services.store.count("shadow_answers"):
            break
        time.sleep(0.05)
    row = services.store.db["shadow_answers"].get(1)
    assert row["exchange_id"] == ex["id"] and row["reply"] == "Teacher shadow reply." and row["judge"] is None
    assert judge_shadows(services.store, Judge(AlwaysA())) == 1
    assert online_stats(services.store)["shadow"] == {"answers": 1, "judged": 1, "student_accuracy": 1.0}
