"""Run by tests/distill/train/test_loop.py under torchrun: the training loop shared out between processes (gloo on CPU).

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m tests.distill.train.distributed_worker TOKENIZER_DIR RUN_DIR GRAD_ACCUM
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
from transformers import AutoTokenizer

from distill.train.loop import train_lora
from tests.conftest import tiny_llama
from tests.distill.train.test_loop import DISTRIBUTED_CONFIG, varied_rows


def main() -> None:
    tokenizer_dir, run_dir, grad_accum = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    result = train_lora(tiny_llama(len(tok)), tok, varied_rows(12), varied_rows(4, offset=50),
                        replace(DISTRIBUTED_CONFIG, grad_accum=grad_accum), run_dir)
    if result.main_process:
        torch.save({k: v.detach() for k, v in result.model.named_parameters() if "lora_" in k}, run_dir / "lora.pt")
        (run_dir / "metrics.json").write_text(json.dumps(result.metrics, default=str))


if __name__ == "__main__":
    main()
