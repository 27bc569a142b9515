"""Load the student's base model for training: a GGUF file, a local folder or a hub id.

A GGUF (the packaged SmolLM2-135M-Instruct by default) is dequantised by transformers, which takes
about 15 s; the result is cached as safetensors under $ASSISTANT_HOME/cache/base-<hash of the GGUF>/,
so later loads take a few seconds. Hub ids only work where the weights are already in the local
Hugging Face cache (this product never downloads at run time unless the user allows it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from assistant.errors import ModelError


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def base_identity(base: str) -> dict:
    """What goes in a manifest about the base: its spec and a content hash when it is a file."""
    path = Path(base)
    if path.is_file():
        return {"base": str(path.name), "path": str(path), "sha256": file_sha256(path)}
    return {"base": base, "path": str(path) if path.exists() else None, "sha256": None}


def load_base(base: str, cache_dir: Path | None, dtype=None, load_in_4bit: bool = False, device_index: int = 0):
    """(model, tokenizer) for training. GGUF files are dequantised once and cached as safetensors.

    With `load_in_4bit` (QLoRA) the frozen base is quantised to 4-bit NF4 by bitsandbytes on GPU
    `device_index`; a GGUF base is read from its safetensors cache for that.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # air-gapped by default
    dtype = dtype or torch.float32
    path = Path(base)
    if load_in_4bit:
        return _load_4bit(base, cache_dir, device_index)
    try:
        if path.is_file() and path.suffix.lower() == ".gguf":
            digest = file_sha256(path)[:16]
            cached = cache_dir / f"base-{digest}" if cache_dir else None
            if cached is not None and (cached / "config.json").exists():
                return (AutoModelForCausalLM.from_pretrained(cached, dtype=dtype),
                        AutoTokenizer.from_pretrained(cached))
            loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            # The GGUF-loaded model is marked "quantized" and refuses save_pretrained; its weights are plain
            # dequantised tensors, so move them into an ordinary model of the same config.
            config = loaded.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
            model.load_state_dict(loaded.state_dict(), strict=False)
            model.tie_weights()
            del loaded
            if cached is not None:
                tmp = cached.with_name(cached.name + ".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                model.save_pretrained(tmp, safe_serialization=True)
                tokenizer.save_pretrained(tmp)
                shutil.rmtree(cached, ignore_errors=True)
                tmp.rename(cached)  # complete or absent
            return model, tokenizer
        return AutoModelForCausalLM.from_pretrained(base, dtype=dtype), AutoTokenizer.from_pretrained(base)
    except (OSError, ValueError) as exc:
        raise ModelError(f"could not load the student base {base!r}: {exc}") from exc


def qlora_problem() -> str | None:
    """Why 4-bit QLoRA cannot run here, or None when it can."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return "4-bit QLoRA needs a CUDA GPU; this machine has none (train without --load-in-4bit)"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "4-bit QLoRA needs bitsandbytes: pip install bitsandbytes (or train without --load-in-4bit)"
    return None


def _load_4bit(base: str, cache_dir: Path | None, device_index: int):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    problem = qlora_problem()
    if problem:
        raise ModelError(problem)
    path = Path(base)
    if path.is_file() and path.suffix.lower() == ".gguf":
        load_base(base, cache_dir)  # writes the safetensors cache once
        base = str(cache_dir / f"base-{file_sha256(path)[:16]}")
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    try:
        model = AutoModelForCausalLM.from_pretrained(base, quantization_config=quant, device_map={"": device_index})
        return model, AutoTokenizer.from_pretrained(base)
    except (OSError, ValueError) as exc:
        raise ModelError(f"could not load the student base {base!r} in 4-bit: {exc}") from exc
