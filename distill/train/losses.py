"""Training objectives, by name: the registry `TrainConfig.loss` chooses from, and the machinery that applies one.

A loss is a function `(logits, labels) -> summed loss`: `logits` are the student's scores over the
vocabulary at the positions that carry a label (n x vocabulary, one chunk of them at a time), `labels` the
n target tokens. It returns the sum over those positions, not the mean: the loop divides by the assistant
tokens of the whole accumulated optimizer step, so every token weighs the same whatever micro-batch it
fell in. `token_loss` does the rest for every loss alike: it runs the model body once, keeps only the
labelled positions (IGNORE, -100, marks the others: the prompt, the customer's turns, padding), and
applies the output head and the loss HEAD_CHUNK positions at a time, recomputing each chunk's logits in
the backward pass instead of keeping them. The head is a fifth of a 135M model's weights and its logits
are vocabulary-wide, so this bounds their memory by the chunk, not by the batch.

Today there is one entry, `cross_entropy`: the student learns the labelled replies token by token (the
teacher's replies, or the agents' when there is no teacher), on the assistant tokens only.

Where token-level distillation would plug in: one more entry, e.g. `LOSSES["token_kl"] = token_kl`,
chosen with `TrainConfig(loss="token_kl")` or `assistant train --loss token_kl`. It learns the teacher's whole next-token distribution instead of only the token it wrote, so it
needs that distribution at every labelled position: the teacher's top-k token ids and log-probabilities
(an OpenAI-compatible teacher returns them with `logprobs` / `top_logprobs`; it must share the student's
tokenizer, or they must be mapped onto it), stored with each dataset row by the labeller, padded into the
batch beside `labels` by `data.collate`, and selected and chunked here exactly as the labels are, then
passed to the function with them. `token_kl` would return the summed KL(teacher || student) over those
k tokens, usually mixed with `cross_entropy` on the reply, and the loop would need no change.
Validation stays cross-entropy, so runs trained with different losses remain comparable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from assistant.errors import InputError
from distill.train.data import IGNORE

if TYPE_CHECKING:
    import torch

HEAD_CHUNK = 1024  # labelled positions whose logits exist at once (x vocabulary x 4 bytes: ~200 MB for 49k tokens)

LossFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


def cross_entropy(logits: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
    """Summed cross-entropy of the labelled tokens, in fp32 whatever precision the model computes in."""
    import torch

    return torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum")


LOSSES: dict[str, LossFn] = {"cross_entropy": cross_entropy}


def loss_function(name: str) -> LossFn:
    """The registered loss called `name`; InputError naming the known ones otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise InputError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}") from None


def _head_loss(head, hidden, labels, loss: LossFn):
    return loss(head(hidden), labels)


def token_loss(model, batch, loss: LossFn = cross_entropy) -> tuple["torch.Tensor", int]:
    """`loss` summed over the labelled (assistant) tokens of a batch, and how many there were.

    The model predicts token t+1 at position t, so the labels are shifted by one against the positions.
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    labels = batch["labels"][:, 1:]
    selected = labels != IGNORE
    targets = labels[selected]
    if hasattr(base, "model") and hasattr(base, "lm_head"):
        hidden = base.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        hidden = hidden[:, :-1][selected]
        total = hidden.new_zeros((), dtype=torch.float32)
        for i in range(0, len(targets), HEAD_CHUNK):
            h, t = hidden[i:i + HEAD_CHUNK], targets[i:i + HEAD_CHUNK]
            total = total + (checkpoint(_head_loss, base.lm_head, h, t, loss, use_reentrant=False)
                             if torch.is_grad_enabled() else _head_loss(base.lm_head, h, t, loss))
    else:  # architectures without the usual body / head split
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][selected]
        total = loss(logits, targets)
    return total, int(selected.sum())
