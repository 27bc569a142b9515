"""Training on a tiny randomly initialised Llama: masks, LoRA mechanics, loss, resume."""

import pytest
import torch

from distill.train import IGNORE, Cancelled, TrainConfig, encode, length_grouped_batches, train_lora
from tests.conftest import tiny_llama

CONV = [{"role": "user", "content": "Where is my order?"},
        {"role": "assistant", "content": "Orders ship within 1 business day."},
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "You're welcome!"}]


def test_label_mask_covers_exactly_the_trained_assistant_turns(smol_tokenizer):
    tok = smol_tokenizer
    enc = encode(tok, CONV, [1, 3], max_length=512)
    learned = tok.decode([t for t, l in zip(enc["input_ids"], enc["labels"]) if l != IGNORE])
    assert learned == "Orders ship within 1 business day.<|im_end|>You're welcome!<|im_end|>"
    only_last = encode(tok, CONV, [3], max_length=512)
    assert tok.decode([t for t, l in zip(only_last["input_ids"], only_last["labels"]) if l != IGNORE]) == "You're welcome!<|im_end|>"
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


def test_retrieval_augmented_rows_are_one_grounded_sequence_per_conversation(smol_tokenizer):
    from distill.train import prepare_rows

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
    learned = tok.decode([t for t, l in zip(examples[0]["input_ids"], examples[0]["labels"]) if l != IGNORE])
    assert learned == "Orders ship within 1 business day.<|im_end|>You're welcome!<|im_end|>"  # every reply, once


def test_long_conversations_cost_linear_tokens_and_fit_the_window(smol_tokenizer):
    from distill.train import prepare_rows

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


def test_memory_preflight_lowers_the_micro_batch_or_refuses_with_the_numbers():
    from assistant.errors import InputError
    from distill.memory import estimate_training_mb, plan_memory

    model = tiny_llama(1000)
    examples = [{"input_ids": [0] * 300}]
    need = lambda tokens: estimate_training_mb(model, tokens, 300, True, 1000, 1024)  # noqa: E731
    assert need(4096) > need(1024) > 0
    assert estimate_training_mb(model, 4096, 300, False, 1000, 1024) > need(4096)  # checkpointing saves memory
    fits = plan_memory(model, examples, 4096, True, 1024, limit_mb=100 + need(1024) + 0.01, current_mb=100)
    assert fits.batch_tokens <= 1024 and fits.estimate_mb <= fits.limit_mb and "lowered" in fits.line()
    with pytest.raises(InputError) as err:
        plan_memory(model, examples, 4096, True, 1024, limit_mb=100, current_mb=100)
    assert "MB" in str(err.value) and "--max-length" in str(err.value)


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
         "-m", "tests.distributed_worker", str(tmp_path / "tokenizer"), str(tmp_path / "two"), "1"],
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


@pytest.mark.slow
def test_the_defaults_fit_the_packaged_student_in_4_gb_whatever_the_length(base_cache):
    """README's bound, by the preflight's own arithmetic: with the defaults a micro-batch holds at most
    batch_tokens tokens and no sequence is longer than max_length, so the longest conversation costs what one
    full micro-batch costs. The measured peak is eval/bench_train_long's (1.7 GB on this machine)."""
    from assistant.settings import packaged_student_gguf
    from distill.base_model import load_base
    from distill.memory import estimate_training_mb
    from distill.train import HEAD_CHUNK

    model, _ = load_base(str(packaged_student_gguf()), base_cache)
    c = TrainConfig()
    lora = 5_000_000  # r 16 on the 7 projections of 30 layers: 4.9M trainable parameters
    step = estimate_training_mb(model, c.batch_tokens, c.max_length, c.gradient_checkpointing, lora, HEAD_CHUNK)
    process = 1024  # libraries and the base's weights: 570 MB measured before the first step
    assert c.gradient_checkpointing and step + process < 4096, step
    # without the bound the estimate is over it: the test can fail
    assert estimate_training_mb(model, 8 * c.batch_tokens, c.max_length, False, lora, HEAD_CHUNK) + process > 4096
