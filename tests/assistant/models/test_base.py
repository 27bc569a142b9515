"""The model interface (assistant.models.base): a stream of text chunks that ends with one Completion."""

from assistant.models import Completion, FakeModel


def test_fake_model_streams_then_completes():
    m = FakeModel(replies=["hello there friend"])
    items = list(m.stream([{"role": "user", "content": "hi"}]))
    assert "".join(i for i in items if isinstance(i, str)) == "hello there friend"
    done = items[-1]
    assert isinstance(done, Completion) and done.output_tokens == 3 and done.latency_ms >= 0
    assert m.complete([{"role": "user", "content": "x"}]).text == "echo: x"
    assert done.text == "hello there friend" and done.model_name == "fake" and done.ttft_ms <= done.latency_ms
