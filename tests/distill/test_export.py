"""GGUF export: the real packaged model through merge + export + llama.cpp, and a tiny trained model."""

import pytest
from peft import LoraConfig, get_peft_model

from assistant.errors import InputError
from assistant.models import LlamaStudent
from assistant.settings import packaged_student_gguf
from distill.base_model import load_base
from distill.export import export_gguf

pytestmark = pytest.mark.slow
PROMPTS = ["How do I reset my password?", "What is the capital of France?", "My camera is offline, what should I do?"]


def test_zero_lora_export_gives_the_packaged_models_greedy_output(tmp_path, base_cache):
    model, tokenizer = load_base(str(packaged_student_gguf()), base_cache)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj"], task_type="CAUSAL_LM"))
    # LoRA B starts at zero: merging changes nothing, so the export must reproduce the base exactly
    out = export_gguf(peft_model, packaged_student_gguf(), tmp_path / "zero.gguf", "f16")
    served = LlamaStudent(out, max_tokens=20, repeat_penalty=1.0)
    base = peft_model.merge_and_unload()
    for prompt in PROMPTS:
        msgs = [{"role": "user", "content": prompt}]
        ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        expected = tokenizer.decode(base.generate(**ids, max_new_tokens=20, do_sample=False)[0, ids["input_ids"].shape[1]:],
                                    skip_special_tokens=True)
        assert served.complete(msgs).text.strip() == expected.strip()
    # the chat template and tokenizer travelled with it
    assert "im_start" in served._llm.metadata["tokenizer.chat_template"]


def test_quantised_exports_are_smaller_and_load(tmp_path, smol_tokenizer):
    from tests.conftest import tiny_llama

    model = tiny_llama(len(smol_tokenizer))
    sizes = {}
    for qtype in ("f16", "q8_0", "q4_0"):
        path = export_gguf(model, packaged_student_gguf(), tmp_path / f"tiny-{qtype}.gguf", qtype)
        sizes[qtype] = path.stat().st_size
        served = LlamaStudent(path, max_tokens=4)
        reply = served.complete([{"role": "user", "content": "hi"}])
        # llama.cpp read the whole vocabulary and rendered the prompt through the exported chat template
        assert served._llm.n_vocab() == len(smol_tokenizer) and reply.input_tokens > 3
        assert reply.finish_reason in ("stop", "length")
    assert sizes["f16"] > sizes["q8_0"] > sizes["q4_0"]
    with pytest.raises(InputError, match="unknown export type"):
        export_gguf(model, packaged_student_gguf(), tmp_path / "x.gguf", "q3_zz")
    assert not (tmp_path / "x.gguf").exists()
