"""Online A/B from the chat logs: shadow answers judged later, per-arm statistics (eval.online)."""

import time
from dataclasses import replace

from assistant.models import FakeModel
from eval.judge import Judge
from tests.eval.judges import AlwaysA


def test_shadow_answers_are_stored_never_shown_and_judged_later(settings, fake_embedder):
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
    for _ in range(50):
        if services.store.count("shadow_answers"):
            break
        time.sleep(0.05)
    row = services.store.db["shadow_answers"].get(1)
    assert row["exchange_id"] == ex["id"] and row["reply"] == "Teacher shadow reply." and row["judge"] is None
    assert judge_shadows(services.store, Judge(AlwaysA())) == 1
    assert online_stats(services.store)["shadow"] == {"answers": 1, "judged": 1, "student_accuracy": 1.0}
    assert judge_shadows(services.store, Judge(AlwaysA())) == 0  # each shadow answer is judged once


def test_auto_exchanges_are_counted_per_router_and_version(settings):
    from assistant.store import open_store
    from eval.online import router_stats

    store = open_store(settings)
    rows = [("rules", "1", "teacher", "asks for a human"), ("rules", "1", "student", "routine question"),
            ("learned", "router-001-x", "student", "learned: P 0.8; daily teacher budget reached, so the student answers")]
    for router, version, to, reason in rows:
        store.log_exchange({"route": "Auto", "router": router, "router_version": version, "routed_to": to,
                            "route_reason": reason, "latency_ms": 100.0, "cost": 0.001})
    store.log_exchange({"route": "Student", "router": "user", "routed_to": "student", "latency_ms": 1.0})
    stats = {(s["router"], s["version"]): s for s in router_stats(store)}
    assert set(stats) == {("rules", "1"), ("learned", "router-001-x")}
    assert stats[("rules", "1")]["teacher_share"] == 0.5 and stats[("learned", "router-001-x")]["limited"] == 1
