"""The students (assistant.models.student): the packaged GGUF through llama.cpp, and the retrieval-augmented
student served the layout it was trained on."""

import pytest

from assistant.models import Completion, FakeModel, GroundedStudent, LlamaStudent
from assistant.settings import packaged_student_gguf
from tests.assistant.models.test_cases import small_retriever


@pytest.fixture(scope="module")
def student():
    return LlamaStudent(packaged_student_gguf(), max_tokens=16)


def test_packaged_student_streams_with_usage_and_timing(student):
    items = list(student.stream([{"role": "user", "content": "Say hello."}]))
    done = items[-1]
    assert isinstance(done, Completion)
    assert done.text.strip() and done.text == "".join(i for i in items[:-1])
    assert done.input_tokens > 5 and 0 < done.output_tokens <= 16
    assert done.ttft_ms is not None and done.latency_ms >= done.ttft_ms
    assert student.version and student.name.startswith("SmolLM2")


def test_student_drops_oldest_turns_to_fit_its_context(student):
    long = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 300} for i in range(15)]
    tokens, _ = student.prompt_tokens(long)
    assert len(tokens) <= student.n_ctx - student.max_tokens
    assert student._llm.detokenize(tokens).decode().count("word") < 15 * 300 / 2  # old turns were dropped


def test_a_follow_up_turn_prefills_only_its_new_tokens(student):
    """llama.cpp keeps the last prompt's KV cache: the next turn of the same conversation extends it."""
    turn1 = [{"role": "user", "content": "Hello, my order NH-4506499 has not arrived. Can you check it?"}]
    first = student.complete(turn1, 16)
    turn2 = turn1 + [{"role": "assistant", "content": first.text},
                     {"role": "user", "content": "It was a doorbell. When will it ship?"}]
    tokens, _ = student.prompt_tokens(turn2)
    evaluated = []
    original = student._llm.eval
    student._llm.eval = lambda toks: (evaluated.append(len(toks)), original(toks))[1]
    try:
        student.complete(turn2, 4)
    finally:
        student._llm.eval = original
    prefilled = sum(evaluated) - (len(evaluated) - 1)  # every eval after the prompt's is one generated token
    assert 0 < prefilled < len(tokens) / 2, (prefilled, len(tokens))


def test_loaded_once_per_process(student):
    again = LlamaStudent(packaged_student_gguf(), max_tokens=16)
    assert again._llm is student._llm


def test_grounded_student_is_served_the_layout_it_was_trained_on(fake_embedder):
    from assistant.grounding import student_layout

    r = small_retriever(fake_embedder)
    history = [{"role": "user", "content": "I forgot my password"}]
    inner = FakeModel(replies=["Tap Forgot password."])
    student = GroundedStudent(inner, r)
    assert student.complete(history).text == "Tap Forgot password."
    assert inner.calls == [student_layout(history, r)]
    assert "24 hours" in inner.calls[0][-1]["content"]  # the grounding sits in the customer's turn
    assert student.name == inner.name and student.version == inner.version
