"""Shared fixtures: every test gets its own state directory; fakes for models and embeddings."""

from __future__ import annotations

import pytest

from assistant.hashing_embedder import HashingEmbedder
from assistant.settings import Settings


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    """Point the state directory at tmp_path and clear teacher variables, so no test touches real state."""
    home = tmp_path / "state"
    monkeypatch.setenv("ASSISTANT_HOME", str(home))
    for name in ("ASSISTANT_TEACHER_BASE_URL", "OPENAI_BASE_URL", "ASSISTANT_TEACHER_API_KEY", "OPENAI_API_KEY",
                 "ASSISTANT_TEACHER_MODEL", "OPENAI_MODEL", "ASSISTANT_CONFIG", "GRADIO_SERVER_NAME",
                 "GRADIO_SERVER_PORT", "ASSISTANT_PORT", "ASSISTANT_HOST"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def settings(state_dir) -> Settings:
    return Settings.from_env()


FakeEmbedder = HashingEmbedder  # the name the tests use: retrieval without a model load


@pytest.fixture
def fake_embedder():
    return FakeEmbedder()



@pytest.fixture(scope="session")
def smol_tokenizer(request):
    """The packaged SmolLM2 tokenizer (chat template included); read from the GGUF once, then cached."""
    from transformers import AutoTokenizer

    from assistant.settings import packaged_student_gguf

    cache = request.config.cache.mkdir("smollm2-tokenizer")
    if (cache / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(cache)
    gguf = packaged_student_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok.save_pretrained(cache)
    return tok


def tiny_llama(vocab_size: int, seed: int = 0):
    """A randomly initialised Llama with a few hidden units: trains in seconds on a CPU."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, rms_norm_eps=1e-5)
    model = LlamaForCausalLM(config)
    # Unit-scale embeddings (tied to the output head): with the usual 0.02 scale and 32 hidden units the
    # frozen head could not make any token much likelier than another, and nothing could be memorised.
    with torch.no_grad():
        model.model.embed_tokens.weight.normal_(0.0, 1.0)
    return model


@pytest.fixture(scope="session")
def base_cache(request):
    """Where the dequantised packaged base is cached across tests (and later runs)."""
    return request.config.cache.mkdir("base-cache")
