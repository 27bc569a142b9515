"""The chat loop called directly: routing, streaming, fallback, logging, and server-side conversations."""

import json
import sqlite3

import pytest

from assistant.chat import converse, respond, reply
from assistant.errors import ModelError, TeacherUnavailable
from assistant.models import FakeModel
from assistant.retrieval import CaseBase, KnowledgeBase, Retriever
from assistant.router import RouteDecision, RuleRouter
from assistant.services import Services
from assistant.store import open_store


@pytest.fixture
def services(settings, fake_embedder):
    retriever = Retriever(KnowledgeBase([], fake_embedder), CaseBase([], fake_embedder))
    return Services(settings=settings, store=open_store(settings), retriever=retriever,
                    student=FakeModel("student-fake", "student"), teacher=FakeModel("teacher-fake", "teacher"),
                    router=RuleRouter())


def rows(settings):
    conn = sqlite3.connect(settings.db_path)
    conn.row_factory = sqlite3.Row
    return [dict(r) for r in conn.execute("select * from exchanges order by id")]


def test_student_mode_streams_and_logs_the_exchange(services, settings):
    services.student.enqueue("Orders ship within one business day.")
    events = list(respond(services, [{"role": "user", "content": "where is my order"}], "Student", "s1", 0))
    deltas = "".join(e.text for e in events if e.kind == "delta")
    assert deltas == "Orders ship within one business day."
    assert [e.kind for e in events][-1] == "done"
    [row] = rows(settings)
    assert row["session_id"] == "s1" and row["routed_to"] == "student" and row["route"] == "Student"
    assert row["reply"] == deltas and row["output_tokens"] == 6 and row["latency_ms"] >= 0
    assert json.loads(row["request_messages"]) == [{"role": "user", "content": "where is my order"}]
    assert row["cost"] is not None  # local model: priced by compute time


def test_auto_routes_sensitive_questions_to_the_teacher(services, settings):
    ex = reply(services, [{"role": "user", "content": "I want to speak to a supervisor about a refund"}], "Auto")
    assert ex["routed_to"] == "teacher" and "asks for a human" in ex["route_reason"]
    assert services.student.calls == []  # the student never ran


def test_auto_escalates_a_low_information_draft_before_showing_it(services):
    services.student.enqueue("I'm sorry, I cannot help with that.")
    services.teacher.enqueue("Your order ships within one business day.")
    events = list(respond(services, [{"role": "user", "content": "where is my order"}], "Auto"))
    shown = "".join(e.text for e in events if e.kind == "delta")
    assert shown == "Your order ships within one business day."
    ex = events[-1].exchange
    assert ex["routed_to"] == "teacher" and "low-information" in ex["route_reason"]


def test_auto_keeps_a_good_student_draft(services):
    services.student.enqueue("Orders ship within one business day and tracking is emailed.")
    ex = reply(services, [{"role": "user", "content": "where is my order"}], "Auto")
    assert ex["routed_to"] == "student" and services.teacher.calls == []


@pytest.mark.parametrize("mode", ["Student", "Auto"])
def test_a_customer_waiting_for_the_student_is_told_their_place_in_line(services, mode):
    services.student.enqueue("Orders ship within one business day and tracking is emailed.")
    services.student.line = [2, 1, 0]
    events = list(respond(services, [{"role": "user", "content": "where is my order"}], mode))
    waits = [e.text for e in events if e.kind == "wait"]
    assert [w.split(":")[1].split(".")[0].strip() for w in waits] == ["2 chats ahead of you", "1 chat ahead of you",
                                                                      "you are next"]
    kinds = [e.kind for e in events]
    assert kinds.index("delta") > kinds.index("wait") and kinds[-1] == "done"
    assert events[-1].exchange["reply"] == "Orders ship within one business day and tracking is emailed."


def test_teacher_failure_falls_back_to_the_student_with_a_notice(services, settings):
    services.teacher.fail_with = TeacherUnavailable("teacher gpt-x timed out")
    services.student.enqueue("Here is what I know.")
    ex = reply(services, [{"role": "user", "content": "hi"}], "Teacher")
    assert ex["routed_to"] == "student" and ex["reply"] == "Here is what I know."
    assert "unavailable" in ex["notice"]
    assert rows(settings)[0]["error"] == "teacher gpt-x timed out"


def test_teacher_failing_mid_reply_resets_what_was_shown(services):
    class Flaky(FakeModel):
        def _generate(self, messages, max_tokens):
            yield "partial "
            raise TeacherUnavailable("connection dropped")

    services.teacher = Flaky("teacher-flaky", "teacher")
    services.student.enqueue("Student answer.")
    kinds = [(e.kind, e.text) for e in respond(services, [{"role": "user", "content": "hi"}], "Teacher")]
    assert ("reset", "") in kinds
    after_reset = "".join(t for k, t in kinds[kinds.index(("reset", "")):] if k == "delta")
    assert after_reset == "Student answer."


def test_unknown_mode_is_rejected(services):
    with pytest.raises(ValueError, match="mode"):
        list(respond(services, [{"role": "user", "content": "x"}], "Bogus"))


def test_teacher_cost_uses_the_price_table(services, settings):
    from dataclasses import replace
    services.settings = replace(settings, prices={"teacher-fake": (1000000.0, 2000000.0)})
    services.teacher.local = False
    services.teacher.enqueue("one two three")
    ex = reply(services, [{"role": "user", "content": "a b"}], "Teacher")
    # FakeModel usage: 2 input words, 3 output words -> 2 * $1 + 3 * $2
    assert ex["cost"] == pytest.approx(8.0)


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def test_converse_sends_the_server_side_history_and_counts_turns(services, settings):
    services.student.enqueue("Orders ship in one day.", "Tracking is e-mailed.", "Yes, until it ships.")
    for text in ("where is my order", "how do I track it", "can I change the address"):
        list(converse(services, "s1", text, "Student"))
    list(converse(services, "other", "hello", "Student"))  # another session shares nothing
    assert services.student.calls[2] == [user("where is my order"), assistant("Orders ship in one day."),
                                         user("how do I track it"), assistant("Tracking is e-mailed."),
                                         user("can I change the address")]
    assert services.student.calls[3] == [user("hello")]
    logged = [(r["session_id"], r["turn_index"]) for r in rows(settings)]
    assert logged == [("s1", 0), ("s1", 1), ("s1", 2), ("other", 0)]


def test_a_turn_that_failed_before_logging_is_not_remembered(services, settings):
    services.student.enqueue("First answer.")
    list(converse(services, "s1", "first", "Student"))
    services.student.fail_with = ModelError("the student crashed")
    with pytest.raises(ModelError):
        list(converse(services, "s1", "second", "Student"))
    services.student.enqueue("Third answer.")
    list(converse(services, "s1", "third", "Student"))
    assert services.student.calls[-1] == [user("first"), assistant("First answer."), user("third")]
    assert [r["turn_index"] for r in rows(settings)] == [0, 1]


def test_converse_needs_a_session(services):
    with pytest.raises(ValueError, match="session"):
        list(converse(services, "", "hi", "Student"))


# ---- bounded waits: the chat's teacher deadline --------------------------------------------------

class Hanging(FakeModel):
    """A teacher that hangs (before its first word, or after `say`) until the test releases it."""

    def __init__(self, say: str = ""):
        super().__init__("teacher-hanging", "teacher")
        self.say, self.release = say, __import__("threading").Event()

    def _generate(self, messages, max_tokens):
        self.calls.append(messages)
        if self.say:
            yield self.say
        self.release.wait(30)
        yield "too late"


@pytest.fixture
def hanging(services, settings):
    from dataclasses import replace

    services.settings = replace(settings, chat_teacher_deadline=0.3)
    teacher = services.teacher = Hanging()
    yield teacher
    teacher.release.set()


def test_a_hanging_teacher_gives_way_to_the_student_at_the_deadline(services, hanging):
    from assistant.chat import SLOW_NOTICE

    services.student.enqueue("Student answer.")
    ex = reply(services, [user("hi")], "Teacher")
    assert not hanging.release.is_set()  # the reply came while the teacher was still hanging
    assert ex["routed_to"] == "student" and ex["reply"] == "Student answer." and ex["notice"] == SLOW_NOTICE
    assert "no answer within 0.3 s" in ex["error"]
    assert ex["latency_ms"] < (0.3 + 5) * 1000  # the deadline plus the (fake) student's time, with room for a busy CPU


def test_a_teacher_that_stalls_mid_reply_is_replaced_and_what_was_shown_reset(services, hanging):
    hanging.say = "Let me check "
    services.student.enqueue("Student answer.")
    events = [(e.kind, e.text) for e in respond(services, [user("hi")], "Teacher")]
    assert events[0] == ("delta", "Let me check ") and ("reset", "") in events
    assert "".join(t for k, t in events[events.index(("reset", "")):] if k == "delta") == "Student answer."
    assert not hanging.release.is_set()


def test_a_teacher_dripping_pieces_is_cut_off_at_the_total_deadline(services, settings):
    """Each piece within the deadline, but the reply as a whole may take only TOTAL_DEADLINES of them."""
    import time
    from dataclasses import replace

    from assistant.chat import TOTAL_DEADLINES

    class Dripping(FakeModel):
        def _generate(self, messages, max_tokens):
            for _ in range(100):
                time.sleep(0.1)
                yield "word "

    services.settings = replace(settings, chat_teacher_deadline=0.3)
    services.teacher = Dripping("teacher-dripping", "teacher")
    services.student.enqueue("Student answer.")
    started = time.monotonic()
    ex = reply(services, [user("hi")], "Teacher")
    assert ex["routed_to"] == "student" and f"had not finished after {TOTAL_DEADLINES * 0.3:g} s" in ex["error"]
    assert time.monotonic() - started < 5  # not the 10 s the teacher would have taken


def test_the_deadline_includes_the_teachers_own_retries(services, settings):
    """The real OpenAI client retrying 500s with backoff: the chat still answers at the deadline."""
    from dataclasses import replace

    import httpx

    from assistant.models import OpenAITeacher

    calls = []

    def always_500(request):
        calls.append(request)
        return httpx.Response(500, json={"error": {"message": "down"}}, headers={"retry-after-ms": "200"})

    services.settings = replace(settings, chat_teacher_deadline=0.5)
    services.teacher = OpenAITeacher(base_url="http://teacher.test/v1", api_key="k", model="m", timeout=30,
                                     max_retries=20, http_client=httpx.Client(transport=httpx.MockTransport(always_500)))
    services.student.enqueue("Student answer.")
    ex = reply(services, [user("hi")], "Teacher")
    assert ex["routed_to"] == "student" and "no answer within 0.5 s" in ex["error"]
    assert 1 <= len(calls) < 21  # it was retrying when the chat stopped waiting
    assert ex["latency_ms"] < (0.5 + 5) * 1000


def test_a_chat_teacher_client_times_out_no_later_than_the_deadline(settings, fake_embedder):
    from dataclasses import replace

    from assistant.services import make_teacher

    retriever = Retriever(KnowledgeBase([], fake_embedder), CaseBase([], fake_embedder))
    configured = replace(settings, teacher_api_key="k", teacher_timeout=60.0, chat_teacher_deadline=8.0)
    assert make_teacher(configured, retriever, for_chat=True).client.timeout == 8.0
    assert make_teacher(configured, retriever).client.timeout == 60.0  # evaluation and shadows keep their own


# ---- the daily teacher budget --------------------------------------------------------------------

@pytest.fixture
def budget_spent(services, settings):
    from dataclasses import replace

    from assistant import spend
    from assistant.store import now

    services.settings = replace(settings, teacher_daily_budget=1.0)
    services.store.db["teacher_calls"].insert({"cache_key": "k", "teacher": "t", "reply": "x", "cost": 1.0,
                                               "created_at": now()})
    spend._recent.clear()
    yield
    spend._recent.clear()


def test_past_the_daily_budget_the_student_answers_with_a_notice(services, budget_spent):
    from assistant import spend

    services.student.enqueue("Student answer.")
    ex = reply(services, [user("hi")], "Teacher")
    assert ex["routed_to"] == "student" and ex["notice"] == spend.NOTICE and services.teacher.calls == []
    assert spend.REACHED in ex["route_reason"]


def test_past_the_daily_budget_auto_keeps_the_student_even_for_a_weak_draft(services, budget_spent):
    from assistant import spend

    services.student.enqueue("I'm sorry, I cannot help with that.", "Student answer.")
    escalating = reply(services, [user("where is my order")], "Auto")
    assert escalating["routed_to"] == "student" and escalating["reply"] == "I'm sorry, I cannot help with that."
    assert escalating["notice"] == spend.NOTICE
    sensitive = reply(services, [user("I want to speak to a supervisor about a refund")], "Auto")
    assert sensitive["routed_to"] == "student" and services.teacher.calls == []


def test_the_budget_counts_the_chats_own_teacher_replies(services, settings):
    from dataclasses import replace

    from assistant import spend

    spend._recent.clear()
    services.settings = replace(settings, teacher_daily_budget=3.0, prices={"teacher-fake": (1e6, 1e6)})
    services.teacher.local = False
    services.teacher.enqueue("one two", "three four", "five six")
    services.student.enqueue("Student answer.")
    first = reply(services, [user("a")], "Teacher")  # 1 + 2 words in and out: $3
    assert first["routed_to"] == "teacher" and first["cost"] == pytest.approx(3.0)
    spend._recent.clear()
    second = reply(services, [user("b")], "Teacher")
    assert second["routed_to"] == "student" and second["notice"] == spend.NOTICE
    spend._recent.clear()


# ---- #14: routers recorded, the cascade's two costs, Auto's options, the per-minute teacher limit -----------

def test_each_exchange_records_the_router_and_its_version(services, settings):
    services.student.enqueue("Orders ship within one business day.", "Student answer.")
    auto = reply(services, [user("where is my order")], "Auto")
    forced = reply(services, [user("hi")], "Student")
    logged = rows(settings)
    assert [(r["router"], r["router_version"]) for r in logged] == [("rules", "1"), ("user", "")]
    assert logged[0]["tier"] == "student" and auto["router"] == "rules" and forced["router"] == "user"


def test_auto_uses_the_router_picked_for_the_session(services, settings, fake_embedder):
    from assistant.router import NoveltyRouter

    novelty = NoveltyRouter(services.retriever)
    services._routers["novelty"] = novelty
    services.student.enqueue("Student answer.")
    ex = reply_with(services, "novelty", None, "where is my order")
    [row] = rows(settings)
    assert row["router"] == "novelty" and row["router_version"] == "1" and ex["routed_to"] == "student"


def reply_with(services, router, share, text):
    events = list(converse(services, "s-opt", text, "Auto", router=router, teacher_share=share))
    return events[-1].exchange


def test_a_teacher_share_of_zero_keeps_every_turn_with_the_student(services):
    services.student.enqueue("Student answer.")
    ex = reply_with(services, None, 0.0, "I want to speak to a supervisor about a refund")
    assert ex["routed_to"] == "student" and services.teacher.calls == []


class DraftDoubter:
    """A router that always sends the draft to the teacher (a cascade that never trusts the student)."""

    name, version = "doubter", "7"

    def score(self, messages, draft=None):
        return RouteDecision(0.0 if draft is None else 0.9, "waits" if draft is None else "unsure draft",
                             "question" if draft is None else "draft", {"draft_prob": 0.1})


def test_the_cascade_counts_the_students_draft_and_the_teachers_reply(services, settings):
    from dataclasses import replace

    from assistant.pricing import compute_cost

    services.settings = replace(settings, prices={"teacher-fake": (1e6, 1e6)})  # $1 a token: easy to tell apart
    services.teacher.local = False
    services.router = DraftDoubter()
    services.student.delay_s = 0.002  # the draft takes measurable time
    services.student.enqueue(" ".join(f"w{i}" for i in range(40)))
    services.teacher.enqueue("Teacher answer.")
    ex = reply(services, [user("where is my order")], "Auto")
    assert ex["routed_to"] == "teacher" and ex["tier"] == "teacher" and ex["reply"] == "Teacher answer."
    [row] = rows(settings)
    assert row["draft_ms"] > 0 and row["latency_ms"] >= row["draft_ms"]  # the draft's time is in the latency
    assert row["draft_cost"] == pytest.approx(compute_cost(row["draft_ms"] / 1000, settings.compute_per_hour), abs=2e-8)
    assert row["draft_cost"] > 0
    teacher_cost = row["input_tokens"] + row["output_tokens"]  # at $1 a token
    assert row["cost"] == pytest.approx(teacher_cost + row["draft_cost"])  # both costs are counted
    assert json.loads(row["route_features"]) == {"draft_prob": 0.1}


def test_a_student_kept_turn_spends_no_draft(services, settings):
    services.student.enqueue("Orders ship within one business day.")
    reply(services, [user("where is my order")], "Auto")
    [row] = rows(settings)
    assert row["draft_ms"] is None and row["draft_cost"] is None


def test_past_the_daily_budget_the_fallback_and_its_reason_are_recorded(services, settings, budget_spent):
    from assistant import spend

    services.student.enqueue("Student answer.")
    reply(services, [user("I want to speak to a supervisor about a refund")], "Auto")
    [row] = rows(settings)
    assert row["routed_to"] == "student" and row["tier"] == "student" and row["notice"] == spend.NOTICE
    assert row["route_reason"] == "asks for a human, sensitive topic; daily teacher budget reached, so the student answers"


def test_past_the_teachers_calls_per_minute_the_student_answers_with_a_notice(services, settings):
    from assistant import limits

    clock = [0.0]
    services.teacher_calls = limits.TeacherCallLimit(2, clock=lambda: clock[0])
    services.teacher.enqueue("one", "two", "three")
    services.student.enqueue("Student answer.")
    got = [reply(services, [user(f"q{i}")], "Teacher")["routed_to"] for i in range(3)]
    assert got == ["teacher", "teacher", "student"]
    third = rows(settings)[-1]
    assert third["notice"] == limits.TEACHER_LIMIT_NOTICE and limits.TEACHER_LIMIT_REACHED in third["route_reason"]
    clock[0] = 61.0  # a minute later the teacher answers again
    assert reply(services, [user("q4")], "Teacher")["routed_to"] == "teacher"
