"""What a training run is asked to do: `TrainConfig`, one field per setting, each with the help text the CLI
and the Retrain tab show (`config_help`), and the digest that names the run's folder and its version.

The CLI's `assistant train` options take their defaults and help from here (`_train_default`,
`_train_help`), so a new field needs one option line there and never a second copy of its text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

DEFAULT_LOSS = "cross_entropy"


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
    loss: str = field(default=DEFAULT_LOSS, metadata={"help": "Training objective, by name (distill.train.losses): cross_entropy learns the labelled replies' tokens (the assistant tokens only). Validation loss is always cross-entropy, so runs compare."})

    def digest(self) -> str:
        values = asdict(self)
        # `loss` came after runs were already named by this digest: at its default it is left out, so
        # the same settings keep naming the same run folder (and resume its checkpoint) as before
        if values["loss"] == DEFAULT_LOSS:
            del values["loss"]
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def config_help() -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in fields(TrainConfig)}
