"""Fine-tune the student on a labelled dataset with LoRA (stage 2 of distillation).

Each dataset row is a whole conversation; the chat template is applied and the loss is taken only on
the tokens of the assistant turns named in `train_turns` (every labelled turn, or the final one with
`turns="final"`), everything else masked with -100. Conversations longer than `max_length` lose their
oldest turns first (the recent context is what a reply depends on). Batches are grouped by length so
padding does not dominate; gradients accumulate; the learning rate warms up then decays linearly.
Validation loss is measured after every epoch, training stops early when it stops improving, and the
best adapter is kept. A checkpoint (adapter, optimizer, scheduler, RNG, position) is written every
`checkpoint_steps` optimizer steps and at each epoch end; running the same config on the same data
again resumes from it and ends where an uninterrupted run would.

With `retrieval_augmented`, each trained turn is its own example whose prompt carries the KB passage
and similar cases the student will be served with (see `prepare_rows`).

The loop is plain PyTorch + peft so it runs unchanged on CPU, one GPU, or several under
`accelerate launch` / `torchrun`: every process takes its share of each optimizer step's micro-batches,
the LoRA gradients are summed once per step, and only the main process writes (see `Distributed`).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

from assistant.errors import Cancelled, InputError

IGNORE = -100


@dataclass
class TrainConfig:
    epochs: int = field(default=3, metadata={"help": "Passes over the training split (the reference method uses 3)."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate. 1e-3 suits LoRA on a ~100M-parameter student; use ~2e-4 for multi-billion bases."})
    batch_size: int = field(default=8, metadata={"help": "Conversations per micro-batch."})
    grad_accum: int = field(default=2, metadata={"help": "Micro-batches per optimizer step."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling (alpha / r multiplies the update)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    target_modules: str = field(default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", metadata={"help": "Comma-separated module names LoRA adapts."})
    max_length: int = field(default=1024, metadata={"help": "Longest training sequence in tokens; older turns are dropped to fit."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Share of steps spent warming the learning rate up."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    turns: str = field(default="all", metadata={"help": "all: learn every labelled assistant turn; final: only the last one."})
    early_stopping_patience: int = field(default=1, metadata={"help": "Epochs without a better validation loss before stopping."})
    checkpoint_steps: int = field(default=50, metadata={"help": "Write a resumable checkpoint every N optimizer steps."})
    max_steps: int = field(default=0, metadata={"help": "Stop after this many optimizer steps (0: no limit)."})
    seed: int = field(default=42, metadata={"help": "Seed for batch order, dropout and LoRA initialisation."})
    retrieval_augmented: bool = field(default=True, metadata={"help": "Train (and then serve) with the KB passage and similar cases in the student's prompt; --plain trains on the conversations alone."})
    load_in_4bit: bool = field(default=False, metadata={"help": "QLoRA: hold the frozen base in 4-bit NF4 while training (CUDA GPU with bitsandbytes only)."})

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def config_help() -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in fields(TrainConfig)}


# ---- tokenisation --------------------------------------------------------------------------------

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


def prepare_rows(tokenizer, rows, config: TrainConfig,
                 ground: Callable[[list[dict], object], list[dict]] | None = None) -> list[dict]:
    """Encoded training examples: one per conversation, or with `ground`, one per trained turn.

    `ground(history, conversation_id)` returns the prompt the student is served with for that history
    (retrieval-augmented training). Grounding depends on the conversation state, so each trained turn
    becomes its own example, with the passages and cases retrieved for the state before it.
    """
    out = []
    for row in rows:
        turns = list(row["train_turns"])
        if config.turns == "final":
            turns = turns[-1:]
        messages = list(row["messages"])
        if row.get("system"):
            messages = [{"role": "system", "content": row["system"]}] + messages
            turns = [t + 1 for t in turns]
        if ground is None:
            examples = [(messages, turns)]
        else:
            examples = []
            for t in turns:
                prompt = ground(messages[:t], row.get("conversation_id"))
                examples.append((prompt + [messages[t]], [len(prompt)]))
        for msgs, trained in examples:
            enc = encode(tokenizer, msgs, trained, config.max_length)
            if enc:
                out.append(enc)
    return out


def length_grouped_batches(examples: list[dict], batch_size: int, seed: int) -> list[list[int]]:
    """Indices in batches of similar length (little padding), in a random but seeded order."""
    rng = random.Random(seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    mega = batch_size * 32
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start:start + mega], key=lambda i: len(examples[i]["input_ids"]))
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
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


# ---- the loop ------------------------------------------------------------------------------------

@dataclass
class TrainProgress:
    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    val_loss: float | None = None
    message: str = ""

    def line(self) -> str:
        parts = [f"epoch {self.epoch}", f"step {self.step}/{self.total_steps}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.val_loss is not None:
            parts.append(f"val loss {self.val_loss:.4f}")
        if self.tokens_per_s:
            parts.append(f"{self.tokens_per_s:,.0f} tokens/s")
        if self.eta_s is not None:
            parts.append(f"ETA {self.eta_s:,.0f} s")
        return ", ".join(parts) + (f" — {self.message}" if self.message else "")


@dataclass
class Distributed:
    """Which process this is when `torchrun` or `accelerate launch` starts several (one per GPU)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, *values: float) -> list[float]:
        """The values summed over all processes."""
        if self.world == 1:
            return list(values)
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        dist.all_reduce(t)
        return t.tolist()

    def sum_gradients(self, params) -> None:
        """Add up the gradients of all processes in one collective (LoRA's trainable weights are few)."""
        if self.world == 1:
            return
        import torch
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for p, g in zip(params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(g)
            offset += g.numel()

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def _collective_device():
    import torch

    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def distributed() -> Distributed:
    """torchrun and accelerate launch set WORLD_SIZE / RANK / LOCAL_RANK; a plain run is one process."""
    import os

    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank)


def device_and_dtype(local_rank: int = 0):
    """The device to train on and the autocast dtype: bf16 on GPUs that have it, full precision otherwise."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", local_rank), (torch.bfloat16 if torch.cuda.is_bf16_supported() else None)
    return torch.device("cpu"), None


@dataclass
class TrainResult:
    adapter_dir: Path
    metrics: dict
    steps: int
    resumed_from: int | None
    model: object = None  # the PeftModel, holding the best adapter (by validation loss)
    main_process: bool = True  # False in the helper processes of a multi-GPU run: they register nothing


def assistant_token_loss(model, batch) -> tuple["torch.Tensor", int]:
    """Summed cross-entropy over the assistant tokens only, and how many there were.

    The output head (vocabulary x hidden: a fifth of a 135M model's weights) is applied only at the
    positions that carry a label, instead of building logits for every token of every sequence: the
    same loss, with much less time and memory.
    """
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    labels = batch["labels"][:, 1:]
    selected = labels != IGNORE
    if hasattr(base, "model") and hasattr(base, "lm_head"):
        hidden = base.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        logits = base.lm_head(hidden[:, :-1][selected]).float()
    else:  # architectures without the usual body / head split
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][selected].float()
    loss = torch.nn.functional.cross_entropy(logits, labels[selected], reduction="sum")
    return loss, int(selected.sum())


def validation_loss(model, examples: list[dict], batch_size: int, pad: int, device,
                    dist: Distributed = Distributed()) -> float | None:
    """Token-weighted mean loss over the assistant tokens of the validation split (shared out between processes)."""
    import torch

    if not examples:
        return None
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch_idx in length_grouped_batches(examples, batch_size, seed=0)[dist.rank::dist.world]:
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in batch_idx], pad).items()}
            loss, n = assistant_token_loss(model, batch)
            total += float(loss)
            count += n
    model.train()
    total, count = dist.sum(total, count)
    return total / count if count else None


def train_lora(model, tokenizer, train_rows, val_rows, config: TrainConfig, run_dir: Path,
               progress: Callable[[TrainProgress], None] | None = None, should_stop: Callable[[], bool] | None = None,
               ground=None) -> TrainResult:
    """Train a LoRA adapter on `model` (modified in place into a PeftModel) and save the best one to run_dir/adapter."""
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict, get_peft_model_state_dict

    dist = distributed()
    # the same seed everywhere: every process starts from the same LoRA weights and sees the same batch order
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    device, amp_dtype = device_and_dtype(dist.local_rank)
    pad = pad_id(tokenizer)
    train = prepare_rows(tokenizer, train_rows, config, ground)
    val = prepare_rows(tokenizer, val_rows, config, ground)
    if not train:
        raise InputError("the training split has no assistant tokens to learn")

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=[m.strip() for m in config.target_modules.split(",") if m.strip()], task_type="CAUSAL_LM")
    if getattr(model, "is_loaded_in_4bit", False):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(model, lora)
    if not getattr(model, "is_loaded_in_4bit", False):  # a 4-bit base is placed on its GPU when loaded
        model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    # an optimizer step takes grad_accum micro-batches in every process
    per_step = config.grad_accum * dist.world
    steps_per_epoch = math.ceil(len(length_grouped_batches(train, config.batch_size, 0)) / per_step)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    warmup = max(1, int(total_steps * config.warmup_ratio))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup))))

    ckpt = run_dir / "checkpoint"
    state = {"epoch": 0, "batch": 0, "step": 0, "best_val": None, "bad_epochs": 0, "history": []}
    resumed_from = None
    if (ckpt / "state.json").exists():
        state = json.loads((ckpt / "state.json").read_text())
        set_peft_model_state_dict(model, torch.load(ckpt / "adapter.pt", map_location=device))
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device))
        scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt"))
        rng = torch.load(ckpt / "rng.pt", weights_only=False)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        resumed_from = state["step"]

    def save_checkpoint():
        if not dist.main:
            return
        tmp = run_dir / "checkpoint.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(get_peft_model_state_dict(model), tmp / "adapter.pt")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({"torch": torch.get_rng_state(), "python": random.getstate()}, tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps(state))
        shutil.rmtree(ckpt, ignore_errors=True)
        tmp.rename(ckpt)  # a checkpoint is complete or absent

    def save_best():
        if not dist.main:
            return
        model.save_pretrained(run_dir / "adapter.tmp")
        shutil.rmtree(run_dir / "adapter", ignore_errors=True)
        (run_dir / "adapter.tmp").rename(run_dir / "adapter")

    if "base_val_loss" not in state:
        # the untrained starting point (LoRA starts as a no-op): what the validation losses below improve on
        state["base_val_loss"] = validation_loss(model, val, config.batch_size, pad, device, dist)
    prog = TrainProgress(total_steps=total_steps, step=state["step"])
    started, tokens_seen = time.perf_counter(), 0
    stopped_early = False
    for epoch in range(state["epoch"], config.epochs):
        prog.epoch = epoch + 1
        batches = length_grouped_batches(train, config.batch_size, config.seed + epoch)
        micro = state["batch"] if epoch == state["epoch"] else 0
        optimizer.zero_grad(set_to_none=True)
        while micro < len(batches):
            if should_stop and should_stop():
                raise Cancelled("training cancelled")
            group = batches[micro:micro + per_step]
            group_tokens = sum(int((collate([train[i] for i in b], pad)["labels"] != IGNORE).sum()) for b in group)
            loss_sum, step_tokens = 0.0, 0
            for batch_idx in group[dist.rank::dist.world]:
                batch = {k: v.to(device) for k, v in collate([train[i] for i in batch_idx], pad).items()}
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    summed, _ = assistant_token_loss(model, batch)
                # divided by the assistant tokens of the whole accumulated step: every token weighs the same
                loss = summed / max(1, group_tokens)
                loss.backward()
                loss_sum += float(loss.detach())
                step_tokens += real_tokens(batch)
            dist.sum_gradients(params)
            loss_sum, step_tokens = dist.sum(loss_sum, step_tokens)
            tokens_seen += int(step_tokens)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            micro += len(group)
            state["step"] += 1
            state["batch"], state["epoch"] = micro, epoch
            elapsed = time.perf_counter() - started
            prog.step, prog.loss = state["step"], loss_sum
            prog.tokens_per_s = tokens_seen / elapsed if elapsed > 0 else None
            done_steps = state["step"] - (resumed_from or 0)
            prog.eta_s = elapsed / done_steps * (total_steps - state["step"]) if done_steps else None
            state["history"].append({"step": state["step"], "loss": loss_sum})
            if progress and dist.main:
                progress(prog)
            if config.checkpoint_steps and state["step"] % config.checkpoint_steps == 0:
                save_checkpoint()
                dist.barrier()
            if config.max_steps and state["step"] >= config.max_steps:
                break
        val_loss = validation_loss(model, val, config.batch_size, pad, device, dist)
        prog.val_loss = val_loss
        state["history"].append({"epoch": epoch + 1, "val_loss": val_loss})
        improved = val_loss is None or state["best_val"] is None or val_loss < state["best_val"]
        if improved:
            state["best_val"] = val_loss
            state["bad_epochs"] = 0
            save_best()
        else:
            state["bad_epochs"] += 1
        state["epoch"], state["batch"] = epoch + 1, 0
        save_checkpoint()
        dist.barrier()
        if progress and dist.main:
            prog.message = f"epoch {epoch + 1} done, validation loss {val_loss:.4f}" if val_loss is not None else f"epoch {epoch + 1} done"
            progress(prog)
        if config.max_steps and state["step"] >= config.max_steps:
            break
        if state["bad_epochs"] >= config.early_stopping_patience:
            stopped_early = True
            break
    dist.barrier()
    if not (run_dir / "adapter").exists():
        save_best()
        dist.barrier()
    else:
        # the loop ends on its last step; what ships is the best epoch's adapter
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(run_dir / "adapter" / "adapter_model.safetensors")))
    elapsed = time.perf_counter() - started
    metrics = {"steps": state["step"], "base_val_loss": state["base_val_loss"], "best_val_loss": state["best_val"],
               "final_train_loss": prog.loss,
               "tokens_per_s": tokens_seen / elapsed if elapsed > 0 else None, "train_examples": len(train),
               "val_examples": len(val), "stopped_early": stopped_early, "history": state["history"],
               "seconds": elapsed, "processes": dist.world}
    return TrainResult(run_dir / "adapter", metrics, state["step"], resumed_from, model, dist.main)
