"""The training loop on a tiny randomly initialised Llama: LoRA mechanics, falling loss, resume, several processes."""

import pytest
import torch

from assistant.errors import Cancelled
from distill.train.config import TrainConfig
from distill.train.loop import train_lora
from tests.conftest import tiny_llama

CONV = [{"role": "user", "content": "Where is my order?"},
        {"role": "assistant", "content": "Orders ship within 1 business day."},
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "You're welcome!"}]


def rows(n=8):
    return [{"messages": CONV, "train_turns": [1, 3], "system": ""} for _ in range(n)]


def lora_state(model):
    return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}


def test_lora_moves_base_stays_and_loss_falls(smol_tokenizer, tmp_path):
    model = tiny_llama(len(smol_tokenizer))
    base_before = {k: v.detach().clone() for k, v in model.named_parameters()}
    config = TrainConfig(epochs=15, learning_rate=1e-2, batch_tokens=200, grad_accum=1, lora_r=8, lora_alpha=16,
                         lora_dropout=0.0, warmup_ratio=0.0, early_stopping_patience=100, checkpoint_steps=0)
    losses = []
    result = train_lora(model, smol_tokenizer, rows(), rows(2), config, tmp_path / "run",
                        progress=lambda p: losses.append(p.loss))
    peft_model = result.model
    assert losses[-1] < 0.5 * losses[0]  # memorises the set
    after = dict(peft_model.named_parameters())
    lora_b = [v for k, v in after.items() if "lora_B" in k]
    assert lora_b and all(float(v.detach().abs().sum()) > 0 for v in lora_b)  # LoRA weights moved from their zero init
    for name, before in base_before.items():
        peft_name = "base_model.model." + name.replace(".weight", ".base_layer.weight") if any(
            m in name for m in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")) else "base_model.model." + name
        assert torch.equal(after[peft_name].detach(), before), name  # base weights untouched
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()
    assert result.metrics["best_val_loss"] is not None
    assert result.metrics["best_val_loss"] < result.metrics["base_val_loss"]  # measured before the first step


def test_resume_from_checkpoint_equals_an_uninterrupted_run(smol_tokenizer, tmp_path):
    config = TrainConfig(epochs=2, learning_rate=1e-3, batch_tokens=100, grad_accum=2, lora_r=4, lora_alpha=8,
                         lora_dropout=0.1, warmup_ratio=0.2, early_stopping_patience=100, checkpoint_steps=1, seed=7)
    full = train_lora(tiny_llama(len(smol_tokenizer)), smol_tokenizer, rows(12), rows(2), config, tmp_path / "a")

    steps = []

    def crash_after_three():
        return len(steps) >= 3

    with pytest.raises(Cancelled):
        train_lora(tiny_llama(len(smol_tokenizer)), smol_tokenizer, rows(12), rows(2), config, tmp_path / "b",
                   progress=lambda p: steps.append(p.step), should_stop=crash_after_three)
    resumed = train_lora(tiny_llama(len(smol_tokenizer)), smol_tokenizer, rows(12), rows(2), config, tmp_path / "b")
    assert resumed.resumed_from == 3 and resumed.steps == full.steps
    a, b = lora_state(full.model), lora_state(resumed.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


DISTRIBUTED_CONFIG = TrainConfig(epochs=2, learning_rate=1e-2, batch_tokens=100, grad_accum=1, lora_r=4, lora_alpha=8,
                                 lora_dropout=0.0, early_stopping_patience=100, checkpoint_steps=2, seed=3)


def varied_rows(n, offset=0):
    """Conversations of different lengths, so batches differ from one another."""
    out = []
    for i in range(offset, offset + n):
        conv = [{"role": "user", "content": f"Where is order NH-{1000 + i}?" + " please" * (i % 5)},
                {"role": "assistant", "content": f"Order NH-{1000 + i} ships in {i % 7 + 1} days."},
                {"role": "user", "content": "thanks"},
                {"role": "assistant", "content": "You're welcome!" + " Bye." * (i % 3)}]
        out.append({"messages": conv, "train_turns": [1, 3], "system": "", "conversation_id": i})
    return out


@pytest.mark.slow
def test_two_processes_train_the_adapter_one_process_trains_with_twice_the_accumulation(smol_tokenizer, tmp_path):
    """What torchrun / accelerate launch run on several GPUs, here as two CPU processes talking gloo."""
    import json
    import os
    import subprocess
    import sys
    from dataclasses import replace

    from assistant.settings import REPO_ROOT

    one = train_lora(tiny_llama(len(smol_tokenizer)), smol_tokenizer, varied_rows(12), varied_rows(4, offset=50),
                     replace(DISTRIBUTED_CONFIG, grad_accum=2), tmp_path / "one")
    smol_tokenizer.save_pretrained(tmp_path / "tokenizer")
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "tests.distill.train.distributed_worker", str(tmp_path / "tokenizer"), str(tmp_path / "two"), "1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    two = torch.load(tmp_path / "two" / "lora.pt")
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == one.steps
    assert metrics["best_val_loss"] == pytest.approx(one.metrics["best_val_loss"], rel=1e-5)
    expected = lora_state(one.model)
    assert expected.keys() == two.keys()
    for k in expected:
        assert torch.allclose(expected[k], two[k], atol=1e-5), k
    assert (tmp_path / "two" / "checkpoint" / "state.json").exists()  # written once, by the main process
