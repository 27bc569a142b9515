"""The serving bench's arithmetic (eval.bench_serve.summary): what its table says is what the replies measured."""

from eval.bench_serve import Reply, customer_turns, summary


def test_summary_reads_turns_three_on_counts_errors_and_rates():
    replies = [Reply(1, 500.0, 900.0, 11), Reply(3, 100.0, 300.0, 21), Reply(4, 60.0, 260.0, 21),
               Reply(5, None, 5000.0, 0, error="ReadTimeout")]
    s = summary(replies, wall_s=36.0)
    assert s["replies"] == 3 and s["errors"] == 1
    assert s["ttft_p50"] == 80.0 and s["reply_p50"] == 280.0  # turns 3+ only: the opening turn is left out
    assert s["ttft_p50_all"] == 100.0
    assert abs(s["tokens_per_s"] - 50 / 0.8) < 1e-9  # tokens after the first, over the time after the first
    assert s["per_hour"] == 300.0


def test_only_customer_turns_are_replayed():
    conversation = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "c"}]
    assert customer_turns(conversation) == ["a", "c"]
