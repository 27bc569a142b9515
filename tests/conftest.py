"""Shared fixtures: every test gets its own state directory; fakes for models and embeddings."""

from __future__ import annotations

import hashlib
import re
import socket

import numpy as np
import pytest

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


class FakeEmbedder:
    """Deterministic bag-of-words hashing vectors: similar wording, similar vectors; no model load."""

    dim = 384

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0 if (h >> 20) % 2 else -1.0
            norm = np.linalg.norm(out[i])
            if norm:
                out[i] /= norm
        return out


@pytest.fixture
def fake_embedder():
    return FakeEmbedder()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
