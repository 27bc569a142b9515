"""Dataset rows -> the sequences and micro-batches the loop trains on.

Each dataset row is a whole conversation, laid out the way the student is served (the grounding hook:
`ground(messages, conversation_id)`, by default `plain_layout`; retrieval-augmented training passes
`assistant.grounding.student_layout` with a retriever, which puts each customer turn's KB passage and
similar replies inline) and tokenised as one sequence, with labels only on the tokens of the assistant
turns named in `train_turns` (every labelled turn, or the final one with `turns="final"`), everything
else masked with IGNORE (-100). A conversation longer than `max_length` is cut into the context windows
the served student reads (`training_windows`), so every reply is learned once with the context it will
be served with and the cost stays linear in the conversation's length.

Micro-batches group sequences of similar length and hold at most `batch_tokens` tokens, padding
included (`length_grouped_batches`): that, not a count of rows, is what bounds a step's memory.
"""

from __future__ import annotations

import random
from typing import Callable

from assistant.grounding import REPLY_RESERVE, message_tokens, prompt_budget, student_layout, window_starts
from distill.train.config import TrainConfig

IGNORE = -100  # the label of a token the loss skips (PyTorch's cross-entropy ignore_index)


def _render(tokenizer, messages, add_generation_prompt=False) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode(tokenizer, messages: list[dict], train_turns: list[int], max_length: int) -> dict | None:
    """input_ids and labels with -100 everywhere but the trained assistant turns; None if nothing to learn."""
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    train_turns = sorted(train_turns)
    while True:
        ids = _render(tokenizer, messages)
        labels = [IGNORE] * len(ids)
        for i in train_turns:
            start = len(_render(tokenizer, messages[:i], add_generation_prompt=True))
            end = len(_render(tokenizer, messages[: i + 1]))
            # the reply and its end-of-turn token; the template's trailing newline stays masked
            end_of_turn = end
            while end_of_turn > start and tokenizer.decode(ids[end_of_turn - 1:end_of_turn]).strip() == "":
                end_of_turn -= 1
            labels[start:end_of_turn] = ids[start:end_of_turn]
        if len(ids) <= max_length:
            break
        # drop the oldest user/assistant pair that is not the last trained turn, keeping a system message
        first = 1 if messages and messages[0]["role"] == "system" else 0
        if len(messages) - first <= 2:
            ids, labels = ids[-max_length:], labels[-max_length:]
            break
        messages = messages[:first] + messages[first + 2:]
        train_turns = [t - 2 for t in train_turns if t - 2 >= first]
        if not train_turns:
            return None
    if all(l == IGNORE for l in labels):
        return None
    return {"input_ids": ids, "labels": labels}


def training_windows(layout: list[dict], trained: list[int], count: Callable[[str], int],
                     budget: int) -> list[tuple[list[dict], list[int]]]:
    """A laid-out conversation as the sequences to train on, each with the indices of its trained replies.

    Usually one sequence holding the whole conversation. When the prompts outgrow `budget` (the prompt
    budget, `assistant.grounding.prompt_budget`), the conversation is cut into the windows the served
    student reads (`window_starts`): every reply is learned once, after exactly the prompt it will be
    served with, and no token is read more than about twice.
    """
    head = layout[:1] if layout and layout[0]["role"] == "system" else []
    body = layout[len(head):]
    fixed = sum(message_tokens(count, m) for m in head)
    starts = window_starts([message_tokens(count, m) for m in body], [m["role"] for m in body], budget, fixed)
    by_start: dict[int, list[int]] = {}
    for t in sorted(trained):
        b = t - len(head)
        if 0 <= b < len(body) and body[b]["role"] == "assistant":
            # the reply is learned with the prompt the student reads before writing it
            by_start.setdefault(starts[b - 1] if b else 0, []).append(b)
    return [(head + body[start:max(bs) + 1], [len(head) + b - start for b in bs]) for start, bs in sorted(by_start.items())]


def plain_layout(messages: list[dict], conversation_id=None) -> list[dict]:
    return student_layout(messages)


def prepare_rows(tokenizer, rows, config: TrainConfig,
                 ground: Callable[[list[dict], object], list[dict]] | None = None) -> list[dict]:
    """Encoded training sequences: one per conversation (or per context window of a long one).

    `ground(messages, conversation_id)` lays a conversation out the way the student is served
    (retrieval-augmented training: `assistant.grounding.student_layout` with a retriever); by default it is
    the plain layout. The layout keeps every message's index except for a leading system message, which
    the trained turn indices are shifted by.
    """
    layout_of = ground or plain_layout
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    out = []
    for row in rows:
        turns = list(row["train_turns"])
        if config.turns == "final":
            turns = turns[-1:]
        messages = list(row["messages"])
        if row.get("system"):
            messages = [{"role": "system", "content": row["system"]}] + messages
            turns = [t + 1 for t in turns]
        n_system = sum(1 for m in messages if m["role"] == "system")
        layout = layout_of(messages, row.get("conversation_id"))
        shift = (1 if layout and layout[0]["role"] == "system" else 0) - n_system
        budget = prompt_budget(config.max_length, REPLY_RESERVE)
        for msgs, trained in training_windows(layout, [t + shift for t in turns], count, budget):
            enc = encode(tokenizer, msgs, trained, config.max_length)
            if enc:
                out.append(enc)
    return out


def length_grouped_batches(examples: list[dict], batch_tokens: int, seed: int) -> list[list[int]]:
    """Indices in micro-batches of similar length, each at most `batch_tokens` once padded, in a seeded random order.

    Bounding the padded size (rows x longest row), not the number of rows, is what bounds the memory of a
    step: eight short conversations and one long one cost the same.
    """
    rng = random.Random(seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order), 256):
        chunk = sorted(order[start:start + 256], key=lambda i: len(examples[i]["input_ids"]))
        batch: list[int] = []
        for i in chunk:  # ascending length: the newest row is the longest
            if batch and (len(batch) + 1) * len(examples[i]["input_ids"]) > batch_tokens:
                batches.append(batch)
                batch = []
            batch.append(i)
        if batch:
            batches.append(batch)
    rng.shuffle(batches)
    return batches


def pad_id(tokenizer) -> int:
    """Padding token (many chat models have none: their end-of-sequence token pads; the loss never sees it)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def collate(examples: list[dict], pad: int):
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def real_tokens(batch) -> int:
    return int(batch["attention_mask"].sum())
