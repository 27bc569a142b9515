"""Training throughput: our LoRA loop vs a bare peft loop on the same batches, in one run.

Both train the packaged student base with the same LoRA config on the same length-grouped batches of the
newest dataset's training split, for the same number of optimizer steps; throughput is real (non-padding)
tokens per second. Target: ours at least 0.9x the bare loop (ours adds checkpoints, progress, masking).

    python -m eval.bench_train [--steps 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from assistant.settings import Settings
from assistant.store import open_store
from distill.base_model import load_base
from distill.dataset import load_dataset
from distill.train import TrainConfig, collate, enable_checkpointing, length_grouped_batches, pad_id, prepare_rows, real_tokens, train_lora


def bare_loop(model, batches, config: TrainConfig) -> float:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)
    if config.gradient_checkpointing:  # like for like: both loops recompute activations to bound memory
        enable_checkpointing(model)
    model = get_peft_model(model, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                             target_modules=config.target_modules.split(","), task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    tokens, t0 = 0, time.perf_counter()
    for step_batches in batches:
        for batch in step_batches:
            out = model(**batch)  # transformers' own loss over the labels (-100 ignored)
            (out.loss / len(step_batches)).backward()
            tokens += real_tokens(batch)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return tokens / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    settings = Settings.from_env()
    store = open_store(settings)
    dd, manifest = load_dataset(store)
    config = TrainConfig(epochs=1, max_steps=args.steps, checkpoint_steps=0, early_stopping_patience=100)
    model, tokenizer = load_base(settings.student_path, settings.cache_dir)
    rows = list(dd["train"])
    examples = prepare_rows(tokenizer, rows, config)
    pad = pad_id(tokenizer)
    order = length_grouped_batches(examples, config.batch_tokens, config.seed)
    micro = [collate([examples[i] for i in b], pad) for b in order]
    steps = [micro[i:i + config.grad_accum] for i in range(0, len(micro), config.grad_accum)][: args.steps]
    used_rows = sorted({i for b in order[: args.steps * config.grad_accum] for i in b})

    with tempfile.TemporaryDirectory() as tmp:
        # the same examples, so the same length-grouped batches in the same order
        result = train_lora(model, tokenizer, rows, [], config, Path(tmp))
        ours = result.metrics["tokens_per_s"]
    model, _ = load_base(settings.student_path, settings.cache_dir)
    bare = bare_loop(model, steps, config)
    print(f"dataset {manifest['version']}, {args.steps} optimizer steps of {config.grad_accum} micro-batches of "
          f"{config.batch_tokens} tokens "
          f"({len(used_rows)} used)")
    print(f"our loop : {ours:,.0f} real tokens/s")
    print(f"bare peft: {bare:,.0f} real tokens/s")
    print(f"ratio ours / bare = {ours / bare:.2f} (target at least 0.9)")


if __name__ == "__main__":
    main()
