"""Export a trained student for serving: merge the LoRA into the base and write a GGUF llama.cpp loads.

The GGUF is written with the `gguf` package. Metadata (architecture hyper-parameters, the tokenizer's
vocabulary, merges and special tokens, and the chat template) is copied from the base GGUF the model came
from, so the served model tokenises and formats chats exactly as the base did; only the weights change.
Tensor names follow gguf's own HF -> GGUF name map; q/k projections get the head permutation llama.cpp
expects (the inverse of what transformers undoes when it loads a GGUF).

Types: Q8_0 (default: 8-bit, near-lossless), F16, or Q4_0 (4-bit, smallest). Norms stay F32; with Q4_0 the
token embedding stays Q8_0 (the output layer reads it too). Measured on the sample's test split
(`python -m eval.bench_quant`): Q4_0 generates 1.29x faster than Q8_0 with 2.3 points less gold-fact accuracy
(54.5% vs 56.8%, inside each other's interval), so Q8_0 stays the default. Q4_1 is not offered: the packaged
base is itself Q4_1, and re-quantising the merged weights to the base's own 4-bit grid rounds most of the
fine-tune's small changes back to the base's values (the Q4_1 student scored 17.0% and answered like the base).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from assistant.errors import InputError, ModelError

DEFAULT_TYPE = "q8_0"  # what `assistant train` exports unless told otherwise
TYPES = {"q8_0": "Q8_0", "f16": "F16", "q4_0": "Q4_0"}
_FILE_TYPE = {"Q8_0": 7, "F16": 1, "Q4_0": 2}  # llama.cpp's LLAMA_FTYPE_MOSTLY_* values


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF q/k layout -> llama.cpp's (interleaved rotary halves), as convert_hf_to_gguf does."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def merged_state(model) -> dict[str, np.ndarray]:
    """fp32 numpy weights of a (possibly LoRA-wrapped) causal LM with the adapter merged in."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}, model.config


def _copy_metadata(reader, writer, skip: set[str]) -> None:
    """Tokenizer and general fields of the base; the architecture's own fields come from the model config."""
    import gguf

    for name, f in reader.fields.items():
        if name.startswith(("GGUF.", "llama.")) or name in skip:
            continue
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = f.types[-1]
            writer.add_key_value(name, f.contents(), vtype, sub_type=sub)
        else:
            writer.add_key_value(name, f.contents(), vtype)


def export_gguf(model, template_gguf: Path, out_path: Path, qtype: str = "q8_0", name: str | None = None) -> Path:
    """Write `model` (merged) as a GGUF next to nothing else; the file appears complete or not at all."""
    import gguf

    key = qtype.lower()
    if key not in TYPES:
        raise InputError(f"unknown export type {qtype!r}; choose one of {', '.join(TYPES)}")
    ggml_type = getattr(gguf.GGMLQuantizationType, TYPES[key])
    template_gguf = Path(template_gguf)
    if not template_gguf.is_file() or template_gguf.suffix.lower() != ".gguf":
        raise ModelError(f"exporting needs the base GGUF for its tokenizer and metadata; got {template_gguf}")
    reader = gguf.GGUFReader(str(template_gguf))
    arch = reader.fields["general.architecture"].contents()
    if arch != "llama":
        raise ModelError(f"GGUF export supports Llama-architecture students; the base is {arch!r}")
    state, config = merged_state(model)
    n_blocks = config.num_hidden_layers
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_blocks)
    tied = getattr(config, "tie_word_embeddings", False)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    _copy_metadata(reader, writer, skip={"general.architecture", "general.file_type", "general.name"})
    writer.add_name(name or out_path.stem)
    writer.add_file_type(_FILE_TYPE[TYPES[key]])
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(n_blocks)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", None) or (config.rope_parameters or {}).get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    for hf_name, w in state.items():
        if hf_name == "lm_head.weight" and tied:
            continue  # tied to the token embedding, which llama.cpp reuses
        base, suffix = hf_name.rsplit(".", 1)
        gg = name_map.get_name(base, try_suffixes=())
        if gg is None:
            raise ModelError(f"no GGUF name for tensor {hf_name}")
        gg = f"{gg}.{suffix}"
        if hf_name.endswith("self_attn.q_proj.weight"):
            w = _permute(w, config.num_attention_heads)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            w = _permute(w, config.num_key_value_heads)
        if w.ndim == 1 or (ggml_type != gguf.GGMLQuantizationType.F16 and w.shape[-1] % 32):
            writer.add_tensor(gg, w.astype(np.float32))
        elif ggml_type == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(gg, w.astype(np.float16))
        else:
            qt = gguf.GGMLQuantizationType.Q8_0 if (gg.startswith("token_embd") and key == "q4_0") else ggml_type
            writer.add_tensor(gg, gguf.quants.quantize(w.astype(np.float32), qt), raw_dtype=qt)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out_path)
    return out_path
