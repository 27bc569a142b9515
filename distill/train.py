"""Fine-tune the student on a labelled dataset with LoRA (stage 2 of distillation).

Each dataset row is a whole conversation, laid out the way the student is served
(`assistant.grounding.student_layout`: plain, or retrieval-augmented with each customer turn's KB passage
and similar replies inline) and trained as one sequence, with the loss only on the tokens of the
assistant turns named in `train_turns` (every labelled turn, or the final one with `turns="final"`),
everything else masked with -100. A conversation longer than `max_length` is cut into the context
windows the served student reads (`training_windows`), so every reply is learned once with the context
it will be served with and the cost stays linear in the conversation's length.

Memory is bounded by construction: micro-batches hold at most `batch_tokens` tokens padding included,
activations are recomputed in the backward pass (gradient checkpointing), the output head's logits exist
one chunk at a time, and a preflight (`distill.memory.plan_memory`) checks the estimated peak against
the machine before the first step, lowering the micro-batch or refusing with the numbers.
Micro-batches group sequences of similar length; gradients accumulate; the learning rate warms up then
decays linearly. Validation loss is measured after every epoch, training stops early when it stops
improving, and the best adapter is kept. A checkpoint (adapter, optimizer, scheduler, RNG, position) is
written every `checkpoint_steps` optimizer steps and at each epoch end; running the same config on the
same data again resumes from it and ends where an uninterrupted run would.

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
from assistant.grounding import REPLY_RESERVE, message_tokens, prompt_budget, student_layout, window_starts
from distill.memory import plan_memory, release_freed_memory

IGNORE = -100


@dataclass
class TrainConfig:
    epochs: int = field(default=3, metadata={"help": "Passes over the training split (the reference method uses 3)."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate. 1e-3 suits LoRA on a ~100M-parameter student; use ~2e-4 for multi-billion bases."})
    batch_tokens: int = field(default=2048, metadata={"help": "Tokens per micro-batch, padding included (rows x longest row): what bounds training memory. Lowered automatically when the memory preflight says it would not fit."})
    grad_accum: int = field(default=2, metadata={"help": "Micro-batches per optimizer step."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling (alpha / r multiplies the update)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    target_modules: str = field(default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", metadata={"help": "Comma-separated module names LoRA adapts."})
    max_length: int = field(default=2048, metadata={"help": "Context in tokens (the served student's, ASSISTANT_STUDENT_CONTEXT): a conversation whose prompt outgrows it, less room for a 256-token reply, is trained in the windows the served student reads."})
    memory_limit_mb: int = field(default=0, metadata={"help": "Peak memory the run may use, in MB (0: 85% of what the machine has available when training starts). The preflight lowers the micro-batch to fit, or refuses."})
    gradient_checkpointing: bool = field(default=True, metadata={"help": "Recompute activations in the backward pass instead of keeping them: much less memory for about a third more compute."})
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


HEAD_CHUNK = 1024  # labelled positions whose logits exist at once (x vocabulary x 4 bytes: ~200 MB for 49k tokens)


def _head_loss(head, hidden, labels):
    import torch

    return torch.nn.functional.cross_entropy(head(hidden).float(), labels, reduction="sum")


def assistant_token_loss(model, batch) -> tuple["torch.Tensor", int]:
    """Summed cross-entropy over the assistant tokens only, and how many there were.

    The output head (vocabulary x hidden: a fifth of a 135M model's weights) is applied only at the
    positions that carry a label, and in chunks whose logits are recomputed in the backward pass instead
    of kept: the same loss, with the logits' memory bounded by HEAD_CHUNK, not by the batch.
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
        loss = hidden.new_zeros((), dtype=torch.float32)
        for i in range(0, len(targets), HEAD_CHUNK):
            h, t = hidden[i:i + HEAD_CHUNK], targets[i:i + HEAD_CHUNK]
            loss = loss + (checkpoint(_head_loss, base.lm_head, h, t, use_reentrant=False)
                           if torch.is_grad_enabled() else _head_loss(base.lm_head, h, t))
    else:  # architectures without the usual body / head split
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][selected].float()
        loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    return loss, int(selected.sum())


def validation_loss(model, examples: list[dict], batch_tokens: int, pad: int, device,
                    dist: Distributed = Distributed()) -> float | None:
    """Token-weighted mean loss over the assistant tokens of the validation split (shared out between processes)."""
    import torch

    if not examples:
        return None
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch_idx in length_grouped_batches(examples, batch_tokens, seed=0)[dist.rank::dist.world]:
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in batch_idx], pad).items()}
            loss, n = assistant_token_loss(model, batch)
            total += float(loss)
            count += n
    model.train()
    total, count = dist.sum(total, count)
    return total / count if count else None


def enable_checkpointing(model) -> None:
    """Recompute each layer's activations in the backward pass (non-reentrant: a frozen base's inputs need no grad)."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        return
    kwargs = {"use_reentrant": False}
    if getattr(model, "config", None) is not None:
        model.config.use_cache = False  # a KV cache is useless in training and incompatible with recomputation
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5 renamed it
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def train_lora(model, tokenizer, train_rows, val_rows, config: TrainConfig, run_dir: Path,
               progress: Callable[[TrainProgress], None] | None = None, should_stop: Callable[[], bool] | None = None,
               ground=None) -> TrainResult:
    """Train a LoRA adapter on `model` (modified in place into a PeftModel) and save the best one to run_dir/adapter."""
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict, get_peft_model_state_dict

    release_freed_memory()  # before anything large is allocated: see distill.memory
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
    if config.gradient_checkpointing:
        enable_checkpointing(model)
    model = get_peft_model(model, lora)
    if not getattr(model, "is_loaded_in_4bit", False):  # a 4-bit base is placed on its GPU when loaded
        model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    # an optimizer step takes grad_accum micro-batches in every process
    per_step = config.grad_accum * dist.world

    ckpt = run_dir / "checkpoint"
    saved = json.loads((ckpt / "state.json").read_text()) if (ckpt / "state.json").exists() else None
    plan = plan_memory(model, train + val, config.batch_tokens, config.gradient_checkpointing, HEAD_CHUNK,
                       config.memory_limit_mb)
    # a resumed run keeps the micro-batches it started with, so it ends where an uninterrupted run would
    batch_tokens = saved.get("batch_tokens", plan.batch_tokens) if saved else plan.batch_tokens
    steps_per_epoch = math.ceil(len(length_grouped_batches(train, batch_tokens, 0)) / per_step)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    warmup = max(1, int(total_steps * config.warmup_ratio))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup))))

    state = {"epoch": 0, "batch": 0, "step": 0, "best_val": None, "bad_epochs": 0, "history": [],
             "batch_tokens": batch_tokens}
    resumed_from = None
    if saved:
        state = saved
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
        state["base_val_loss"] = validation_loss(model, val, batch_tokens, pad, device, dist)
    prog = TrainProgress(total_steps=total_steps, step=state["step"], message=plan.line())
    started, tokens_seen = time.perf_counter(), 0
    stopped_early = False
    for epoch in range(state["epoch"], config.epochs):
        prog.epoch = epoch + 1
        batches = length_grouped_batches(train, batch_tokens, config.seed + epoch)
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
            if state["step"] > 1 + (resumed_from or 0):
                prog.message = ""  # the preflight line is shown with the first step only
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
        val_loss = validation_loss(model, val, batch_tokens, pad, device, dist)
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
               "seconds": elapsed, "processes": dist.world, "batch_tokens": batch_tokens,
               "memory_estimate_mb": round(plan.estimate_mb), "memory_limit_mb": round(plan.limit_mb),
               "train_tokens_per_epoch": sum(len(e["input_ids"]) for e in train)}
    return TrainResult(run_dir / "adapter", metrics, state["step"], resumed_from, model, dist.main)
