"""The optimisation loop: fine-tune the student with LoRA on prepared sequences (stage 2 of distillation).

`train_lora` wraps the model in a LoRA adapter, then takes optimizer steps of `grad_accum` micro-batches
(`data.length_grouped_batches`) with the loss `TrainConfig.loss` names (`losses`); the learning rate warms
up then decays linearly. Validation loss is measured before the first step and after every epoch,
training stops early when it stops improving, and the best adapter is kept. A checkpoint (adapter,
optimizer, scheduler, RNG, position) is written every `checkpoint_steps` optimizer steps and at each
epoch end; running the same config on the same data again resumes from it and ends where an
uninterrupted run would.

Memory is bounded by construction: micro-batches hold at most `batch_tokens` tokens padding included,
activations are recomputed in the backward pass (gradient checkpointing), the output head's logits exist
one chunk at a time (`losses.token_loss`), and a preflight (`distill.memory.plan_memory`) checks the
estimated peak against the machine before the first step, lowering the micro-batch or refusing with the
numbers.

The loop is plain PyTorch + peft so it runs unchanged on CPU, one GPU, or several under
`accelerate launch` / `torchrun`: every process takes its share of each optimizer step's micro-batches,
the LoRA gradients are summed once per step, and only the main process writes (see `Distributed`).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from assistant.errors import Cancelled, InputError
from distill.memory import MemoryPlan, plan_memory, release_freed_memory
from distill.train.config import TrainConfig
from distill.train.data import IGNORE, collate, length_grouped_batches, pad_id, prepare_rows, real_tokens
from distill.train.losses import HEAD_CHUNK, LossFn, loss_function, token_loss


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


# ---- processes and devices -----------------------------------------------------------------------

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


# ---- the model -----------------------------------------------------------------------------------

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


def with_lora(model, config: TrainConfig, device):
    """`model` wrapped in a fresh LoRA adapter (a PeftModel) on `device`, in training mode."""
    from peft import LoraConfig, get_peft_model

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
    return model


def validation_loss(model, examples: list[dict], batch_tokens: int, pad: int, device,
                    dist: Distributed = Distributed()) -> float | None:
    """Token-weighted mean cross-entropy over the assistant tokens of the validation split (shared out between processes).

    Always cross-entropy, whatever the training loss: it is what early stopping, the best adapter and
    the recorded base / best validation losses are compared on, across runs.
    """
    import torch

    if not examples:
        return None
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch_idx in length_grouped_batches(examples, batch_tokens, seed=0)[dist.rank::dist.world]:
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in batch_idx], pad).items()}
            loss, n = token_loss(model, batch)
            total += float(loss)
            count += n
    model.train()
    total, count = dist.sum(total, count)
    return total / count if count else None


# ---- one run -------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    adapter_dir: Path
    metrics: dict
    steps: int
    resumed_from: int | None
    model: object = None  # the PeftModel, holding the best adapter (by validation loss)
    main_process: bool = True  # False in the helper processes of a multi-GPU run: they register nothing


@dataclass
class _Run:
    """What one training run holds from setup to its result."""

    config: TrainConfig
    run_dir: Path
    model: object
    optimizer: object
    scheduler: object
    loss: LossFn
    dist: Distributed
    device: object
    amp_dtype: object
    pad: int
    train: list[dict]
    val: list[dict]
    batch_tokens: int
    total_steps: int
    plan: MemoryPlan

    @property
    def params(self) -> list:
        return [p for p in self.model.parameters() if p.requires_grad]

    @property
    def per_step(self) -> int:
        """Micro-batches per optimizer step, over all processes: grad_accum in each."""
        return self.config.grad_accum * self.dist.world

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoint"


@dataclass
class _Meter:
    """The progress shown after each step: throughput and ETA count only what this process has trained."""

    prog: TrainProgress
    resumed_from: int | None
    started: float = field(default_factory=time.perf_counter)
    tokens_seen: int = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def step_done(self, step: int, loss: float, tokens: int) -> None:
        self.tokens_seen += tokens
        elapsed, p, before = self.elapsed(), self.prog, self.resumed_from or 0
        p.step, p.loss = step, loss
        if step > 1 + before:
            p.message = ""  # the preflight line is shown with the first step only
        p.tokens_per_s = self.tokens_seen / elapsed if elapsed > 0 else None
        done = step - before
        p.eta_s = elapsed / done * (p.total_steps - step) if done else None


def _schedule(optimizer, total_steps: int, warmup_ratio: float):
    """Linear warm-up over the first steps, then linear decay to zero at the last one."""
    import torch

    warmup = max(1, int(total_steps * warmup_ratio))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup))))


def _start(model, tokenizer, train_rows, val_rows, config: TrainConfig, run_dir: Path,
           ground) -> tuple[_Run, dict, int | None]:
    """Everything set up for the first (or the resumed) step: data, LoRA model, optimizer, schedule, and the
    loop's state with the step it resumes from (None for a fresh start)."""
    import torch

    loss = loss_function(config.loss)  # an unknown name fails before anything is tokenised
    release_freed_memory()  # before anything large is allocated: see distill.memory
    dist = distributed()
    # the same seed everywhere: every process starts from the same LoRA weights and sees the same batch order
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    device, amp_dtype = device_and_dtype(dist.local_rank)
    train = prepare_rows(tokenizer, train_rows, config, ground)
    val = prepare_rows(tokenizer, val_rows, config, ground)
    if not train:
        raise InputError("the training split has no assistant tokens to learn")
    model = with_lora(model, config, device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    state_file = run_dir / "checkpoint" / "state.json"
    saved = json.loads(state_file.read_text()) if state_file.exists() else None
    plan = plan_memory(model, train + val, config.batch_tokens, config.gradient_checkpointing, HEAD_CHUNK,
                       config.memory_limit_mb)
    # a resumed run keeps the micro-batches it started with, so it ends where an uninterrupted run would
    batch_tokens = saved.get("batch_tokens", plan.batch_tokens) if saved else plan.batch_tokens
    steps_per_epoch = math.ceil(len(length_grouped_batches(train, batch_tokens, 0)) / (config.grad_accum * dist.world))
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    run = _Run(config, run_dir, model, optimizer, _schedule(optimizer, total_steps, config.warmup_ratio), loss, dist,
               device, amp_dtype, pad_id(tokenizer), train, val, batch_tokens, total_steps, plan)
    if saved:
        _restore(run)
        return run, saved, saved["step"]
    return run, {"epoch": 0, "batch": 0, "step": 0, "best_val": None, "bad_epochs": 0, "history": [],
                 "batch_tokens": batch_tokens}, None


# ---- checkpoints ---------------------------------------------------------------------------------

def _restore(run: _Run) -> None:
    """The adapter, optimizer, schedule and random state of the last checkpoint, into the fresh run."""
    import torch
    from peft import set_peft_model_state_dict

    ckpt = run.checkpoint_dir
    set_peft_model_state_dict(run.model, torch.load(ckpt / "adapter.pt", map_location=run.device))
    run.optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=run.device))
    run.scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt"))
    rng = torch.load(ckpt / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])


def _save_checkpoint(run: _Run, state: dict) -> None:
    import torch
    from peft import get_peft_model_state_dict

    if not run.dist.main:
        return
    tmp = run.run_dir / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(get_peft_model_state_dict(run.model), tmp / "adapter.pt")
    torch.save(run.optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(run.scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save({"torch": torch.get_rng_state(), "python": random.getstate()}, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    shutil.rmtree(run.checkpoint_dir, ignore_errors=True)
    tmp.rename(run.checkpoint_dir)  # a checkpoint is complete or absent


def _save_best(run: _Run) -> None:
    if not run.dist.main:
        return
    run.model.save_pretrained(run.run_dir / "adapter.tmp")
    shutil.rmtree(run.run_dir / "adapter", ignore_errors=True)
    (run.run_dir / "adapter.tmp").rename(run.run_dir / "adapter")


def _keep_best(run: _Run) -> None:
    """Leave the best epoch's adapter in the model and on disk (the loop ends on its last step, not its best)."""
    from peft import set_peft_model_state_dict

    if not (run.run_dir / "adapter").exists():
        _save_best(run)
        run.dist.barrier()
    else:
        from safetensors.torch import load_file

        set_peft_model_state_dict(run.model, load_file(str(run.run_dir / "adapter" / "adapter_model.safetensors")))


# ---- steps and epochs ----------------------------------------------------------------------------

def _optimizer_step(run: _Run, group: list[list[int]]) -> tuple[float, int]:
    """One optimizer step over a group of micro-batches (this process's share of them); (loss, real tokens) over all."""
    import torch

    dist, device, amp_dtype = run.dist, run.device, run.amp_dtype
    group_tokens = sum(int((collate([run.train[i] for i in b], run.pad)["labels"] != IGNORE).sum()) for b in group)
    loss_sum, step_tokens = 0.0, 0
    for batch_idx in group[dist.rank::dist.world]:
        batch = {k: v.to(device) for k, v in collate([run.train[i] for i in batch_idx], run.pad).items()}
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            summed, _ = token_loss(run.model, batch, run.loss)
        # divided by the assistant tokens of the whole accumulated step: every token weighs the same
        loss = summed / max(1, group_tokens)
        loss.backward()
        loss_sum += float(loss.detach())
        step_tokens += real_tokens(batch)
    params = run.params
    dist.sum_gradients(params)
    loss_sum, step_tokens = dist.sum(loss_sum, step_tokens)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_sum, int(step_tokens)


def _train_epoch(run: _Run, state: dict, epoch: int, meter: _Meter, progress, should_stop) -> None:
    """The optimizer steps of one epoch, from where `state` left off; stops at max_steps."""
    config, dist = run.config, run.dist
    batches = length_grouped_batches(run.train, run.batch_tokens, config.seed + epoch)
    micro = state["batch"] if epoch == state["epoch"] else 0
    run.optimizer.zero_grad(set_to_none=True)
    while micro < len(batches):
        if should_stop and should_stop():
            raise Cancelled("training cancelled")
        group = batches[micro:micro + run.per_step]
        loss_sum, step_tokens = _optimizer_step(run, group)
        micro += len(group)
        state["step"] += 1
        state["batch"], state["epoch"] = micro, epoch
        meter.step_done(state["step"], loss_sum, step_tokens)
        state["history"].append({"step": state["step"], "loss": loss_sum})
        if progress and dist.main:
            progress(meter.prog)
        if config.checkpoint_steps and state["step"] % config.checkpoint_steps == 0:
            _save_checkpoint(run, state)
            dist.barrier()
        if config.max_steps and state["step"] >= config.max_steps:
            break


def _end_epoch(run: _Run, state: dict, epoch: int, prog: TrainProgress, progress) -> None:
    """Validate, keep the adapter if it is the best so far, count epochs without improvement, checkpoint."""
    val_loss = validation_loss(run.model, run.val, run.batch_tokens, run.pad, run.device, run.dist)
    prog.val_loss = val_loss
    state["history"].append({"epoch": epoch + 1, "val_loss": val_loss})
    improved = val_loss is None or state["best_val"] is None or val_loss < state["best_val"]
    if improved:
        state["best_val"] = val_loss
        state["bad_epochs"] = 0
        _save_best(run)
    else:
        state["bad_epochs"] += 1
    state["epoch"], state["batch"] = epoch + 1, 0
    _save_checkpoint(run, state)
    run.dist.barrier()
    if progress and run.dist.main:
        prog.message = f"epoch {epoch + 1} done, validation loss {val_loss:.4f}" if val_loss is not None else f"epoch {epoch + 1} done"
        progress(prog)


def _metrics(run: _Run, state: dict, meter: _Meter, stopped_early: bool) -> dict:
    elapsed = meter.elapsed()
    return {"steps": state["step"], "base_val_loss": state["base_val_loss"], "best_val_loss": state["best_val"],
            "final_train_loss": meter.prog.loss,
            "tokens_per_s": meter.tokens_seen / elapsed if elapsed > 0 else None, "train_examples": len(run.train),
            "val_examples": len(run.val), "stopped_early": stopped_early, "history": state["history"],
            "seconds": elapsed, "processes": run.dist.world, "batch_tokens": run.batch_tokens,
            "memory_estimate_mb": round(run.plan.estimate_mb), "memory_limit_mb": round(run.plan.limit_mb),
            "train_tokens_per_epoch": sum(len(e["input_ids"]) for e in run.train)}


def train_lora(model, tokenizer, train_rows, val_rows, config: TrainConfig, run_dir: Path,
               progress: Callable[[TrainProgress], None] | None = None, should_stop: Callable[[], bool] | None = None,
               ground=None) -> TrainResult:
    """Train a LoRA adapter on `model` (modified in place into a PeftModel) and save the best one to run_dir/adapter.

    `ground(messages, conversation_id)` lays each conversation out as the student is served (see
    `data.prepare_rows`); `progress` is called after every step and epoch in the main process;
    `should_stop` returning true raises Cancelled before the next step (the last checkpoint stays).
    """
    run, state, resumed_from = _start(model, tokenizer, train_rows, val_rows, config, run_dir, ground)
    if "base_val_loss" not in state:
        # the untrained starting point (LoRA starts as a no-op): what the validation losses below improve on
        state["base_val_loss"] = validation_loss(run.model, run.val, run.batch_tokens, run.pad, run.device, run.dist)
    meter = _Meter(TrainProgress(total_steps=run.total_steps, step=state["step"], message=run.plan.line()), resumed_from)
    stopped_early = False
    for epoch in range(state["epoch"], config.epochs):
        meter.prog.epoch = epoch + 1
        _train_epoch(run, state, epoch, meter, progress, should_stop)
        _end_epoch(run, state, epoch, meter.prog, progress)
        if config.max_steps and state["step"] >= config.max_steps:
            break
        if state["bad_epochs"] >= config.early_stopping_patience:
            stopped_early = True
            break
    run.dist.barrier()
    _keep_best(run)
    return TrainResult(run.run_dir / "adapter", _metrics(run, state, meter, stopped_early), state["step"], resumed_from,
                       run.model, run.dist.main)
