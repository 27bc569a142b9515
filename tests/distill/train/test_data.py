"""Dataset rows -> training sequences and micro-batches: label masks, truncation, grounding layout, windows, grouping."""

from distill.train.config import TrainConfig
from distill.train.data import IGNORE, encode, length_grouped_batches, prepare_rows

CONV = [{"role": "user", "content": "Where is my order?"},
        {"role": "assistant", "content": "Orders ship within 1 business day."},
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "You're welcome!"}]


def learned_text(tok, example) -> str:
    return tok.decode([t for t, l in zip(example["input_ids"], example["labels"]) if l != IGNORE])


def test_label_mask_covers_exactly_the_trained_assistant_turns(smol_tokenizer):
    tok = smol_tokenizer
    enc = encode(tok, CONV, [1, 3], max_length=512)
    assert learned_text(tok, enc) == "Orders ship within 1 business day.<|im_end|>You're welcome!<|im_end|>"
    only_last = encode(tok, CONV, [3], max_length=512)
    assert learned_text(tok, only_last) == "You're welcome!<|im_end|>"
    # every unmasked label is the token itself (shifted inside the loss, not here)
    assert all(l in (IGNORE, t) for t, l in zip(enc["input_ids"], enc["labels"]))


def test_truncation_keeps_the_most_recent_context(smol_tokenizer):
    long = []
    for i in range(12):
        long += [{"role": "user", "content": f"question {i} " + "blah " * 20},
                 {"role": "assistant", "content": f"answer {i} " + "ok " * 20}]
    enc = encode(smol_tokenizer, long, [23], max_length=200)
    text = smol_tokenizer.decode(enc["input_ids"])
    assert len(enc["input_ids"]) <= 200 and "answer 11" in text and "question 0 " not in text


def test_length_grouping_keeps_padding_small_and_micro_batches_under_the_token_budget():
    examples = [{"input_ids": [0] * n} for n in [5, 100, 6, 98, 7, 99, 5, 101, 700] * 8]
    batches = length_grouped_batches(examples, 404, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(72))
    for b in batches:  # rows x longest row within the budget; a sequence longer than it goes alone
        longest = max(len(examples[i]["input_ids"]) for i in b)
        assert len(b) * longest <= 404 or len(b) == 1
    padded = sum(max(len(examples[i]["input_ids"]) for i in b) * len(b) for b in batches)
    real = sum(len(e["input_ids"]) for e in examples)
    assert padded / real < 1.1


def test_retrieval_augmented_rows_are_one_grounded_sequence_per_conversation(smol_tokenizer):
    tok = smol_tokenizer
    seen = []

    def ground(messages, conversation_id):
        seen.append((len(messages), conversation_id))
        return [{"role": "system", "content": "policy"}] + [
            {"role": m["role"], "content": m["content"] + (f" <reference>facts {i}</reference>" if m["role"] == "user" else "")}
            for i, m in enumerate(messages)]

    rows = [{"conversation_id": 7, "messages": CONV, "train_turns": [1, 3]}]
    examples = prepare_rows(tok, rows, TrainConfig(), ground)
    assert seen == [(4, 7)] and len(examples) == 1  # laid out once, trained as one sequence
    text = tok.decode(examples[0]["input_ids"])
    assert "facts 0" in text and "facts 2" in text and text.index("facts 0") < text.index("Orders ship")
    # every reply, once
    assert learned_text(tok, examples[0]) == "Orders ship within 1 business day.<|im_end|>You're welcome!<|im_end|>"


def test_long_conversations_cost_linear_tokens_and_fit_the_window(smol_tokenizer):
    def conversation(n_pairs):
        msgs = []
        for i in range(n_pairs):
            msgs += [{"role": "user", "content": f"question {i} " + "about my order " * 5},
                     {"role": "assistant", "content": f"answer {i} " + "it ships soon " * 6}]
        return {"messages": msgs, "train_turns": list(range(1, 2 * n_pairs, 2)), "conversation_id": n_pairs}

    config = TrainConfig(max_length=512)
    per_pair = {}
    for n in (10, 40):
        examples = prepare_rows(smol_tokenizer, [conversation(n)], config)
        assert all(len(e["input_ids"]) <= 512 for e in examples)
        assert sum(sum(1 for l in e["labels"] if l != IGNORE) > 0 for e in examples) == len(examples)
        per_pair[n] = sum(len(e["input_ids"]) for e in examples) / n
    assert per_pair[40] < 2.2 * per_pair[10]  # 4x the turns, about 4x the tokens (windows overlap by half at most)
