"""The student's serving engine (assistant.models.engine): several chats decoded together in one llama.cpp
context, a line for the rest, each chat's cache kept; on the packaged model."""

import threading

import pytest

from assistant.errors import ModelError
from assistant.models.engine import BatchEngine, Finished, Queued, SavedStates, _StreamText
from assistant.models.student import load_llama
from assistant.settings import packaged_student_gguf

PROMPT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def llm():
    return load_llama(str(packaged_student_gguf()), 512, 0).llm


def tokens(llm, text: str) -> list[int]:
    return llm.tokenize(PROMPT.format(text).encode(), add_bos=False, special=True)


def run(engine, toks, max_tokens=12):
    """(text, places in line seen, Finished) of one request."""
    text, places, done = "", [], None
    for item in engine.generate(toks, max_tokens=max_tokens, stop=["<|im_end|>"]):
        if isinstance(item, Queued):
            places.append(item.ahead)
        elif isinstance(item, Finished):
            done = item
        else:
            text += item
    return text, places, done


def together(engine, prompts, max_tokens=12):
    results = [None] * len(prompts)

    def go(i):
        results[i] = run(engine, prompts[i], max_tokens)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_stop_strings_and_split_characters_never_reach_the_customer():
    text = _StreamText(["<|im_end|>"])
    shown = [text.feed(b"Hello <|im")[0], text.feed(b"_en")[0]]
    last, stopped = text.feed(b"d|> tail")
    assert "".join(shown) + last == "Hello " and stopped
    euro = "€".encode()
    text = _StreamText([])
    assert text.feed(euro[:1]) == ("", False) and text.feed(euro[1:]) == ("€", False)
    held = _StreamText(["STOP"])
    assert held.feed(b"ok ST") == ("ok ", False) and held.flush() == "ST"  # a stop string's start, then the end


def test_saved_states_stay_within_their_bytes_and_give_the_longest_prefix():
    saved = SavedStates(capacity=100)
    saved.put([1, 2, 3], b"a" * 40)
    saved.put([1, 2, 9, 9], b"b" * 40)
    assert saved.longest([1, 2, 9, 9, 5]) == 4 and saved.longest([7]) == 0
    saved.put([4, 5], b"c" * 40)  # over capacity: the oldest goes
    assert saved.size <= 100 and saved.longest([1, 2, 3]) == 2
    assert saved.take([1, 2, 9, 9, 5]) == ([1, 2, 9, 9], b"b" * 40) and saved.longest([1, 2, 9]) == 0  # taken: gone


def test_one_chat_gets_the_reply_llama_cpp_gives_and_a_batch_decodes_together(llm):
    """Same sampler, same context settings: token for token what create_completion gives. (In a batch the
    float sums run in another order, so a near-tie may tip another way: batches are not compared by text.)"""
    prompt = tokens(llm, "How do I reset my password?")
    alone = llm.create_completion(prompt, max_tokens=12, temperature=0.0, repeat_penalty=1.1, stop=["<|im_end|>"])
    engine = BatchEngine(llm, slots=3, n_ctx=512, n_threads=0)
    try:
        assert run(engine, prompt)[0] == alone["choices"][0]["text"]
        before = engine.steps
        results = together(engine, [tokens(llm, f"How do I reset my password on device {i}?") for i in range(3)])
    finally:
        engine.close()
    assert all(r[2].output_tokens == 12 for r in results)
    assert engine.steps - before < 3 * 12  # one step moved several chats on


def test_requests_beyond_the_slots_wait_in_line_and_all_complete(llm):
    engine = BatchEngine(llm, slots=2, n_ctx=512, n_threads=0)
    assigned, busy_at_assignment = [], []
    original = engine._assign

    def watched(request, idle):
        busy_at_assignment.extend(s for s in idle if s.request is not None)
        original(request, idle)
        assigned.append(sum(s.request is not None for s in engine.slots))

    engine._assign = watched
    try:
        results = together(engine, [tokens(llm, f"Question number {i} about my order") for i in range(6)])
    finally:
        engine.close()
    assert all(r[2] is not None and r[2].output_tokens > 0 for r in results)  # every queued request completed
    assert not busy_at_assignment and max(assigned) == 2  # a slot never serves two requests at once
    lines = [r[1] for r in results if r[1]]
    assert max(max(line) for line in lines) >= 2  # six chats, two slots: someone had two ahead of them
    assert all(line == sorted(set(line), reverse=True) for line in lines)  # each told only when it moves up


def test_a_closed_stream_frees_its_slot_and_a_failed_decode_fails_only_its_request(llm):
    engine = BatchEngine(llm, slots=1, n_ctx=512, n_threads=0)
    try:
        stream = engine.generate(tokens(llm, "Tell me a long story about shipping."), max_tokens=200)
        next(item for item in stream if isinstance(item, str))
        stream.close()  # the chat gave the turn to the teacher
        assert run(engine, tokens(llm, "Hi"))[2] is not None
        original = engine.ctx.decode
        engine.ctx.decode = lambda batch: (_ for _ in ()).throw(RuntimeError("llama_decode returned 1"))
        with pytest.raises(ModelError, match="failed to generate"):
            run(engine, tokens(llm, "Hi again"))
        engine.ctx.decode = original
        assert run(engine, tokens(llm, "Hi again"))[2].output_tokens > 0
    finally:
        engine.close()


def test_each_piece_of_text_says_how_sure_the_model_was(llm):
    from assistant.models.engine import TokenText

    engine = BatchEngine(llm, slots=1, n_ctx=512, n_threads=0)
    try:
        pieces = [p for p in engine.generate(tokens(llm, "What is 2 + 2?"), max_tokens=8) if isinstance(p, str)]
    finally:
        engine.close()
    assert pieces and all(isinstance(p, TokenText) for p in pieces)
    assert all(p.logprob <= 0 and p.entropy >= 0 and p.tokens >= 1 for p in pieces)
    assert sum(p.tokens for p in pieces) <= 8 and "".join(pieces)  # still plain text to every caller
    assert len({round(p.logprob, 3) for p in pieces}) > 1  # measured per token, not a constant


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread is ended on purpose
def test_a_request_that_cannot_start_fails_alone_and_a_dead_scheduler_is_an_error_not_a_hang(llm):
    engine = BatchEngine(llm, slots=2, n_ctx=512, n_threads=0)
    original = engine._sampler
    engine._sampler = lambda penalty: (_ for _ in ()).throw(RuntimeError("no sampler"))
    try:
        with pytest.raises(ModelError, match="could not start"):
            run(engine, tokens(llm, "Hi"))
        engine._sampler = original
        assert run(engine, tokens(llm, "Hi"))[2].output_tokens > 0  # the next chat is served
        engine._drop_cancelled = lambda: (_ for _ in ()).throw(SystemExit())  # the scheduler thread ends
        with pytest.raises(ModelError, match="engine stopped"):
            run(engine, tokens(llm, "Hello again"))
    finally:
        engine._closed = True


def test_a_chat_gets_its_saved_cache_back_even_when_the_store_has_room_for_one(llm):
    """Saving the slot's cache (the other chat's) must not push out the cache the returning chat came for."""
    import llama_cpp

    a = tokens(llm, "Where is my parcel? It has been two weeks and nobody answers my emails about it at all. " * 2)
    b = tokens(llm, "Something else entirely: I want a refund for the broken blender I bought last month. " * 2)
    probe = BatchEngine(llm, slots=1, n_ctx=512, n_threads=0)
    run(probe, a, 30)
    size = llama_cpp.llama_state_seq_get_size(probe.ctx.ctx, 0)
    probe.close()
    engine = BatchEngine(llm, slots=1, n_ctx=512, n_threads=0, saved_bytes=int(size * 1.6))
    try:
        first = run(engine, a, 30)
        run(engine, b, 30)
        again = run(engine, a, 30)
    finally:
        engine.close()
    assert first[2].prefilled == len(a) and again[2].prefilled <= 2  # restored: only the last prompt token re-read


def test_a_prompt_longer_than_the_context_is_refused_before_it_can_fail_other_chats(llm):
    engine = BatchEngine(llm, slots=2, n_ctx=512, n_threads=0)
    try:
        with pytest.raises(ModelError, match="does not fit"):
            run(engine, tokens(llm, "word " * 600))
        assert run(engine, tokens(llm, "Hi"))[2].output_tokens > 0
    finally:
        engine.close()
