"""What a call costs (assistant.pricing): one test per rule."""

from dataclasses import replace

import pytest

from assistant.models import Completion, FakeModel
from assistant.pricing import BATCH_DISCOUNT, call_cost, compute_cost, reply_cost, token_cost


def test_an_api_model_is_priced_per_token_at_its_price_per_million():
    assert token_cost((2.0, 8.0), 1_000, 500) == pytest.approx(0.006)  # 1000 x $2/M + 500 x $8/M


def test_an_unknown_price_or_input_count_is_unknown_and_missing_output_counts_as_none():
    assert token_cost(None, 1_000, 500) is None
    assert token_cost((2.0, 8.0), None, 500) is None
    assert token_cost((2.0, 8.0), 1_000, None) == pytest.approx(0.002)


def test_cached_input_tokens_are_priced_at_the_cached_rate_or_else_the_input_rate():
    # 1,000 input tokens of which 800 came from the provider's cache: 200 x $2/M + 800 x $0.5/M + 500 x $8/M
    assert token_cost((2.0, 8.0, 0.5), 1_000, 500, cached_tokens=800) == pytest.approx(0.0048)
    assert token_cost((2.0, 8.0), 1_000, 500, cached_tokens=800) == pytest.approx(0.006)  # no cached price known
    assert token_cost((2.0, 8.0, 0.5), 1_000, 500, cached_tokens=5_000) == pytest.approx(0.0045)  # never more than the input
    assert token_cost((2.0, 8.0, 0.5), 1_000, 500, discount=BATCH_DISCOUNT, cached_tokens=800) == pytest.approx(0.0024)


def test_a_local_model_is_priced_by_compute_time():
    assert compute_cost(7200, 0.05) == pytest.approx(0.1)  # two hours at $0.05 an hour


def test_the_batch_api_bills_at_its_discount():
    assert BATCH_DISCOUNT == 0.5
    assert token_cost((2.0, 8.0), 1_000, 500, discount=BATCH_DISCOUNT) == pytest.approx(0.003)


def test_costs_are_rounded_to_a_hundred_millionth_of_a_dollar():
    assert compute_cost(1, 0.05) == 1.389e-05  # 1 s at $0.05 an hour: $0.0000138888...
    assert token_cost((0.001, 0.0), 1, 0) == 0.0  # $1e-9


def test_a_call_is_priced_by_where_it_runs(settings):
    priced = replace(settings, prices={"api-model": (1.0, 3.0)}, compute_per_hour=3.6)
    assert call_cost(local=True, model="api-model", settings=priced, seconds=2.0, input_tokens=10**6,
                     output_tokens=10**6) == pytest.approx(0.002)  # local: time only, whatever its tokens
    assert call_cost(local=False, model="api-model", settings=priced, seconds=2.0, input_tokens=10**6,
                     output_tokens=10**6) == pytest.approx(4.0)  # API: tokens only, whatever its time
    assert call_cost(local=False, model="unpriced-model", settings=priced, seconds=2.0, input_tokens=1,
                     output_tokens=1) is None


def test_a_chat_reply_is_priced_from_its_completion(settings):
    priced = replace(settings, prices={"teacher-x": (1e6, 2e6)}, compute_per_hour=3.6)
    completion = Completion("two words", "teacher-x", "v", input_tokens=2, output_tokens=3, ttft_ms=5.0, latency_ms=500.0)
    teacher = FakeModel("teacher-x", "teacher")
    teacher.local = False
    assert reply_cost(teacher, completion, priced) == pytest.approx(8.0)  # 2 x $1 + 3 x $2
    assert reply_cost(FakeModel("student-x"), completion, priced) == pytest.approx(0.0005)  # 0.5 s at $3.60 an hour
    cached = Completion("two words", "teacher-x", "v", input_tokens=2, output_tokens=3, ttft_ms=5.0, latency_ms=500.0,
                        cached_tokens=2)
    assert reply_cost(teacher, cached, replace(priced, prices={"teacher-x": (1e6, 2e6, 0.0)})) == pytest.approx(6.0)
