"""Training memory preflight: estimate a run's peak resident memory before it starts, and fit it to the machine.

Long real conversations used to get a training run killed by the kernel hours in. Before the first
step, `plan_memory` estimates the peak from the model's shape, the prepared sequences (the longest one
sets the attention's share) and the micro-batch token budget, adds what the process already holds, and
compares it with the limit: the configured one, or 85% of what the machine has available. When the
estimate is over, the micro-batch budget is halved until it fits; when even one sequence per
micro-batch does not fit, the run is refused with the numbers and the settings that would change them.

The terms are a model's shape times what each token keeps, with 25% added for the allocator's slack,
calibrated against measured peaks on SmolLM2-135M (README's training section has the figures); the
point is never to be killed, not to use the last megabyte. `release_freed_memory` makes the process
give freed activations back, without which the resident size grows far past any such estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from assistant.errors import InputError

MB = 1024 * 1024
# Bytes per token per layer of what the backward pass keeps, in units of the hidden size (fp32): the
# attention projections, norms and residuals, plus the MLP's intermediate activations counted separately.
HIDDEN_FACTOR, INTERMEDIATE_FACTOR = 14, 5
LOGIT_COPIES = 3  # logits, their softmax and its gradient, for one head chunk
# Allocator slack and temporaries the terms above do not name. Calibrated on SmolLM2-135M with
# release_freed_memory() on: a 1,024-token step measured +1,010 MB against 930 MB from the terms.
SLACK = 1.25


@dataclass
class MemoryPlan:
    batch_tokens: int
    estimate_mb: float
    limit_mb: float
    current_mb: float
    note: str = ""

    def line(self) -> str:
        return (f"memory preflight: estimated peak {self.estimate_mb:,.0f} MB of a {self.limit_mb:,.0f} MB limit "
                f"(process now {self.current_mb:,.0f} MB), micro-batches of {self.batch_tokens:,} tokens"
                + (f"; {self.note}" if self.note else ""))


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def release_freed_memory() -> bool:
    """Make glibc hand large freed blocks back to the system at once (Linux; a no-op elsewhere).

    By default glibc raises its mmap threshold as large blocks are freed, after which PyTorch's
    activations (tens of MB, a new shape every micro-batch) come from the heap, fragment it, and stay
    resident: measured on SmolLM2-135M, one 1,024-token step peaked at 2.9 GB that way and at 1.5 GB with
    the threshold fixed at 128 KB, and the resident size no longer grew from step to step.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024))
    except (OSError, AttributeError):
        return False


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MB


def machine_limit_mb() -> float:
    """85% of what this process could grow to: what it holds now plus what the machine has free."""
    import psutil

    return 0.85 * (psutil.virtual_memory().available / MB + current_rss_mb())


def _shape(model) -> dict:
    cfg = getattr(model, "config", None)
    get = lambda name, default: getattr(cfg, name, default) or default  # noqa: E731
    hidden = get("hidden_size", 768)
    return {"hidden": hidden, "layers": get("num_hidden_layers", 12), "heads": get("num_attention_heads", 12),
            "intermediate": get("intermediate_size", 4 * hidden), "vocab": get("vocab_size", 32000)}


def estimate_training_mb(model, batch_tokens: int, longest: int, checkpointing: bool, trainable_params: int,
                         head_chunk: int, bytes_per_value: int = 4) -> float:
    """The memory a training step adds to a process that already holds the model (MB)."""
    s = _shape(model)
    tokens = max(batch_tokens, longest)
    rows = max(1, tokens // max(1, longest))
    per_layer_token = (HIDDEN_FACTOR * s["hidden"] + INTERMEDIATE_FACTOR * s["intermediate"]) * bytes_per_value
    # attention scores, their softmax and gradient: rows x heads x length^2 per layer
    per_layer_attention = 3 * rows * s["heads"] * longest * longest * bytes_per_value
    if checkpointing:
        # every layer's input is kept; one layer at a time is recomputed with its full working set
        kept = s["layers"] * tokens * s["hidden"] * bytes_per_value
        working = tokens * per_layer_token + per_layer_attention
    else:
        kept = s["layers"] * (tokens * per_layer_token + per_layer_attention)
        working = 0
    head = LOGIT_COPIES * min(head_chunk, tokens) * s["vocab"] * 4
    optimizer = 4 * trainable_params * 4  # weights, gradients and Adam's two moments, fp32
    return SLACK * (kept + working + head + optimizer) / MB


def plan_memory(model, examples: list[dict], batch_tokens: int, checkpointing: bool, head_chunk: int,
                limit_mb: float = 0, current_mb: float | None = None) -> MemoryPlan:
    """The micro-batch token budget to train with, fitted under the memory limit, or InputError if nothing fits."""
    longest = max((len(e["input_ids"]) for e in examples), default=1)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    limit = limit_mb or machine_limit_mb()
    current = current_rss_mb() if current_mb is None else current_mb
    budget = max(batch_tokens, 1)
    note = ""
    while True:
        estimate = current + estimate_training_mb(model, budget, longest, checkpointing, trainable, head_chunk)
        if estimate <= limit:
            return MemoryPlan(budget, estimate, limit, current, note)
        if budget <= longest:
            raise InputError(
                f"training would need about {estimate:,.0f} MB with one {longest:,}-token sequence per micro-batch, "
                f"over the {limit:,.0f} MB limit (the process already holds {current:,.0f} MB). Lower --max-length "
                f"(longest sequence now {longest:,} tokens), keep gradient checkpointing on, or raise "
                f"--memory-limit-mb if the machine has more to give.")
        budget = max(longest, budget // 2)
        note = f"lowered from {batch_tokens:,} tokens to fit"
