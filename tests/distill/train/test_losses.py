"""The loss registry: TrainConfig.loss picks the objective, unknown names are refused, and the default is
cross-entropy on the assistant tokens only, computed as before the registry existed."""

from dataclasses import replace

import pytest
import torch

from assistant.errors import InputError
from distill.train import losses
from distill.train.config import TrainConfig
from distill.train.data import IGNORE, collate, pad_id, prepare_rows
from distill.train.loop import train_lora
from distill.train.losses import LOSSES, cross_entropy, loss_function, token_loss
from tests.conftest import tiny_llama

CONV = [{"role": "user", "content": "Where is my order?"},
        {"role": "assistant", "content": "Orders ship within 1 business day."},
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "You're welcome! Bye."}]
# one and two assistant turns, so the batch holds rows of different lengths (padding) and several labelled spans
ROWS = [{"messages": CONV[:2 + 2 * (i % 2)], "train_turns": [1] + ([3] if i % 2 else []), "system": ""} for i in range(10)]


def small_batch(tok):
    return collate(prepare_rows(tok, ROWS, TrainConfig())[:3], pad_id(tok))


def reference_loss(model, batch):
    """Cross-entropy over the whole vocabulary at every position, -100 ignored: the textbook computation."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                             ignore_index=IGNORE, reduction="sum")


def test_an_unknown_loss_is_refused_naming_the_known_ones():
    with pytest.raises(InputError) as err:
        loss_function("token_kl")
    assert str(err.value) == "unknown loss 'token_kl'; known losses: cross_entropy"
    assert loss_function("cross_entropy") is cross_entropy


def test_training_refuses_an_unknown_loss_before_touching_data_or_model(tmp_path):
    untouched = object()  # neither a model nor a tokenizer: anything done with them would fail otherwise
    with pytest.raises(InputError, match="unknown loss 'kl'"):
        train_lora(untouched, untouched, ROWS, [], TrainConfig(loss="kl"), tmp_path / "run")


def test_the_default_loss_gives_the_value_it_gave_before_the_registry(smol_tokenizer, monkeypatch):
    model, batch = tiny_llama(len(smol_tokenizer)), small_batch(smol_tokenizer)
    default = loss_function(TrainConfig().loss)
    with torch.no_grad():
        summed, count = token_loss(model, batch, default)
        expected = reference_loss(model, batch)
    assert count == int((batch["labels"][:, 1:] != IGNORE).sum()) == 38
    # measured with distill/train.py's assistant_token_loss on this model and batch, before the split
    assert float(summed) == pytest.approx(1161.4862060546875, rel=1e-5)
    assert float(summed) == pytest.approx(float(expected), rel=1e-5)
    # with gradients: the head runs in recomputed chunks (made small here so there are several)
    monkeypatch.setattr(losses, "HEAD_CHUNK", 7)
    chunked, _ = token_loss(model, batch, default)
    chunked.backward()
    chunked_grad = model.lm_head.weight.grad.clone()
    model.zero_grad()
    reference = reference_loss(model, batch)
    reference.backward()
    assert chunked.item() == pytest.approx(reference.item(), rel=1e-5)
    assert torch.allclose(chunked_grad, model.lm_head.weight.grad, rtol=1e-4, atol=1e-6)


def test_a_model_without_a_separate_head_gets_the_same_loss(smol_tokenizer):
    class Whole(torch.nn.Module):  # exposes only forward(...).logits, like architectures without body / head
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kwargs):
            return self.inner(**kwargs)

    model, batch = tiny_llama(len(smol_tokenizer)), small_batch(smol_tokenizer)
    with torch.no_grad():
        split, n_split = token_loss(model, batch)
        whole, n_whole = token_loss(Whole(model), batch)
    assert n_split == n_whole and float(whole) == pytest.approx(float(split), rel=1e-5)


def test_the_loop_trains_with_the_loss_the_config_names(smol_tokenizer, tmp_path, monkeypatch):
    # a registered objective with no gradient: LoRA's B matrices must stay at their zero initialisation
    monkeypatch.setitem(LOSSES, "nothing", lambda logits, labels: 0.0 * logits.float().sum())
    config = TrainConfig(epochs=1, learning_rate=1e-2, batch_tokens=200, grad_accum=1, lora_r=4, lora_alpha=8,
                         lora_dropout=0.0, warmup_ratio=0.0, checkpoint_steps=0, loss="nothing")
    still = train_lora(tiny_llama(len(smol_tokenizer)), smol_tokenizer, ROWS, ROWS[:2], config, tmp_path / "a")
    moved = train_lora(tiny_llama(len(smol_tokenizer)), smol_tokenizer, ROWS, ROWS[:2],
                       replace(config, loss="cross_entropy"), tmp_path / "b")

    def lora_b_total(result):
        return sum(float(v.detach().abs().sum()) for k, v in result.model.named_parameters() if "lora_B" in k)

    assert still.steps == moved.steps > 0
    assert lora_b_total(still) == 0.0 and lora_b_total(moved) > 0.0
    # validation stays cross-entropy whatever the training loss, so the two runs report comparable losses
    assert still.metrics["base_val_loss"] == pytest.approx(moved.metrics["base_val_loss"], rel=1e-6)
