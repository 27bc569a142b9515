"""The loopback teacher servers (eval.fake_teacher), driven through the openai client as the product drives a teacher."""

import json
import socket
import time

import openai
import pytest

from assistant.errors import TeacherUnavailable
from assistant.models import OpenAITeacher
from eval.fake_teacher import TEACHER_TEXT, FakeTeacher, FaultyTeacher

HELLO = [{"role": "user", "content": "hi"}]


def client(url: str, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="sk-test", timeout=5, max_retries=retries)


def teacher(url: str) -> OpenAITeacher:
    return OpenAITeacher(base_url=url, api_key="sk-test", model="gpt-4o-mini", timeout=5, max_retries=0)


def test_the_fake_teacher_answers_counts_and_fails_the_first_calls_with_429():
    with FakeTeacher(fail_first=1, retry_after=0, reply=lambda msgs: f"re: {msgs[-1]['content']}") as fake:
        with pytest.raises(openai.RateLimitError):
            client(fake.url).chat.completions.create(model="m", messages=HELLO)
        out = client(fake.url).chat.completions.create(model="m", messages=HELLO)
    assert out.choices[0].message.content == "re: hi" and out.usage.completion_tokens == 2
    assert fake.calls == 2 and fake.per_request[json.dumps(HELLO, sort_keys=True)] == 2
    assert [b["messages"] for b in fake.bodies] == [HELLO, HELLO]


def test_the_fake_teacher_runs_a_batch_one_step_per_poll():
    line = {"custom_id": "t1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "messages": HELLO}}
    with FakeTeacher() as fake:
        api = client(fake.url)
        uploaded = api.files.create(file=("batch.jsonl", json.dumps(line).encode() + b"\n"), purpose="batch")
        batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
        statuses = [api.batches.retrieve(batch.id).status for _ in range(2)]
        output = api.files.content(api.batches.retrieve(batch.id).output_file_id).text
    assert batch.status == "validating" and statuses == ["in_progress", "completed"]
    answer = json.loads(output)
    assert answer["custom_id"] == "t1"
    assert answer["response"]["body"]["choices"][0]["message"]["content"] == TEACHER_TEXT and fake.calls == 1


def test_the_faulty_teacher_streams_a_reply_or_echoes_the_message():
    with FaultyTeacher("ok") as faulty:
        assert teacher(faulty.url).complete(HELLO).text == TEACHER_TEXT
        faulty.mode = "echo"  # a mode change applies to the next request
        assert teacher(faulty.url).complete([{"role": "user", "content": "where is NH-1?"}]).text == "echo: where is NH-1?"
    assert faulty.calls == 2


@pytest.mark.parametrize("mode", ["500", "429", "garbage", "garbage-sse", "empty"])
def test_each_fault_reaches_the_product_as_teacher_unavailable(mode):
    with FaultyTeacher(mode, retry_after_s=0) as faulty:
        with pytest.raises(TeacherUnavailable):
            teacher(faulty.url).complete(HELLO)
    assert faulty.calls == 1


def test_a_stalled_or_silent_teacher_holds_the_request_until_the_client_times_out():
    for mode in ("stall", "hang"):
        with FaultyTeacher(mode) as faulty:
            slow = OpenAITeacher(base_url=faulty.url, api_key="k", model="m", timeout=0.5, max_retries=0)
            t0 = time.monotonic()
            with pytest.raises(TeacherUnavailable):
                slow.complete(HELLO)
            assert 0.4 < time.monotonic() - t0 < 5, mode


def test_a_closed_faulty_teacher_refuses_connections():
    with FaultyTeacher("ok") as faulty:
        port = faulty.server.server_address[1]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
