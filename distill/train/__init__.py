"""Fine-tune the student on a labelled dataset with LoRA (stage 2 of distillation).

  config  TrainConfig: every setting of a run, with the help text the CLI and the Retrain tab show
  data    dataset rows -> laid-out, tokenised, masked sequences -> token-budgeted micro-batches
  losses  the training objectives by name (TrainConfig.loss) and the chunked output-head loss
  loop    LoRA setup, optimizer steps with gradient accumulation, validation, checkpoints, progress,
          several processes under torchrun / accelerate launch

`distill.pipeline.train_student` calls `train_lora` and turns its adapter into a registered version.
The names below are what the rest of the project imports from `distill.train`.
"""

from distill.train.config import TrainConfig, config_help
from distill.train.data import (collate, length_grouped_batches, pad_id, prepare_rows, real_tokens,
                                training_windows)
from distill.train.losses import loss_function
from distill.train.loop import (TrainProgress, TrainResult, device_and_dtype, distributed, enable_checkpointing,
                                train_lora, validation_loss)

__all__ = ["TrainConfig", "TrainProgress", "TrainResult", "collate", "config_help", "device_and_dtype", "distributed",
           "enable_checkpointing", "length_grouped_batches", "loss_function", "pad_id", "prepare_rows", "real_tokens",
           "train_lora", "training_windows", "validation_loss"]
