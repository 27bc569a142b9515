"""The students (assistant.models.student): the packaged GGUF through llama.cpp, and the retrieval-augmented
student served the layout it was trained on."""

import pytest

from assistant.models import Completion, FakeModel, GroundedStudent, LlamaStudent
from assistant.models.engine import MIN_REUSE
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


def _follow_up(student, opening: str, follow_up: str):
    turn1 = [{"role": "user", "content": opening}]
    first = student.complete(turn1, 16)
    return first, turn1 + [{"role": "assistant", "content": first.text}, {"role": "user", "content": follow_up}]


def test_a_follow_up_turn_prefills_only_its_new_tokens(student):
    """The session's KV cache is kept: the next turn of the same conversation extends it."""
    first, turn2 = _follow_up(student, "Hello, my order NH-4506499 has not arrived. Can you check it?",
                              "It was a doorbell. When will it ship?")
    assert first.cached_tokens < first.input_tokens / 2  # a new conversation: its prompt is read, not reused
    second = student.complete(turn2, 4)
    prefilled = second.input_tokens - second.cached_tokens
    assert 0 < prefilled < second.input_tokens / 2, (prefilled, second.input_tokens)


def test_interleaved_chats_each_keep_their_prefix():
    """Two chats taking turns, on one slot: each follow-up still prefills only its new tokens, because the
    other chat's turn saved this one's cache and it is restored (and with two slots, never evicted)."""
    for slots, saved_mb in ((1, 64), (2, 0)):
        student = LlamaStudent(packaged_student_gguf(), max_tokens=8, slots=slots, saved_mb=saved_mb)
        _, a2 = _follow_up(student, "My doorbell camera keeps going offline every night.", "It is on 2.4 GHz wifi.")
        _, b2 = _follow_up(student, "I was charged twice for order NH-1234567.", "The second charge was on Monday.")
        for turn2 in (a2, b2):
            reply = student.complete(turn2, 4)
            assert reply.input_tokens - reply.cached_tokens < reply.input_tokens / 2, (slots, reply)


def test_without_saved_states_one_slot_reads_the_whole_prompt_again():
    """The counterpart of the test above, so it can tell: one slot and no saved states re-reads everything."""
    student = LlamaStudent(packaged_student_gguf(), max_tokens=8, slots=1, saved_mb=0)
    _, a2 = _follow_up(student, "My doorbell camera keeps going offline every night.", "It is on 2.4 GHz wifi.")
    _follow_up(student, "I was charged twice for order NH-1234567.", "The second charge was on Monday.")
    reply = student.complete(a2, 4)
    assert reply.cached_tokens < MIN_REUSE  # only the template's opening is shared with the other chat


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


class CountingModel:
    """Stands in for MiniLM inside the real caching Embedder: hashing vectors, and a record of every forward pass."""

    def __init__(self):
        from assistant.hashing_embedder import HashingEmbedder

        self.hashing, self.passes = HashingEmbedder(), []

    def encode(self, texts, **_):
        self.passes.append(list(texts))
        return self.hashing.embed(texts)


def test_after_a_reply_the_next_turn_only_embeds_its_new_message():
    """Retrieval on the customer's wait: the recent context is embedded once the reply is out, so the next
    message costs one forward pass of the embedder, for itself alone."""
    import threading

    from assistant.retrieval import Embedder

    model = CountingModel()
    r = small_retriever(Embedder(None, model=model))
    student = GroundedStudent(FakeModel(replies=["Tap Forgot password on the sign-in screen."]), r)
    history = [{"role": "user", "content": "I forgot my password"}]
    reply = student.complete(history).text
    for thread in threading.enumerate():
        if thread.name == "prefetch-context":
            thread.join(5)
    model.passes.clear()
    student.complete(history + [{"role": "assistant", "content": reply}, {"role": "user", "content": "It still fails"}])
    assert model.passes[0] == ["It still fails"], model.passes


def test_training_and_serving_read_byte_identical_prompts(student, smol_tokenizer, fake_embedder):
    """The same conversation state, rendered by training (the HF tokenizer's chat template) and by serving (the
    GGUF's template in llama.cpp): the same text and the same token ids, messy text and grounding included."""
    from assistant.grounding import fit_window, prompt_budget, student_layout
    from distill.train.data import _render

    r = small_retriever(fake_embedder)
    conversation = [
        {"role": "user", "content": "Hi!! I forgot my password 😩 — order NH-4821937, <b>urgent</b>\n\nthx"},
        {"role": "assistant", "content": "Tap *Forgot password* on the sign-in screen."},
        {"role": "user", "content": "still nothing…   Settings > Devices shows “offline”"},
    ]
    layout = student_layout(conversation, r)
    assert any("<reference>" in m["content"] for m in layout if m["role"] == "user")
    served, _ = student.prompt_tokens(layout)
    window = fit_window(layout, student.count_tokens, prompt_budget(student.n_ctx, student.max_tokens))
    trained = _render(smol_tokenizer, window, add_generation_prompt=True)
    assert served == trained
    text = smol_tokenizer.apply_chat_template(window, tokenize=False, add_generation_prompt=True)
    assert student._llm.detokenize(served, special=True).decode("utf-8") == text
