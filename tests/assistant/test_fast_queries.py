"""Query embeddings through ONNX Runtime (assistant.fast_queries): the packaged MiniLM's own vectors, faster."""

from pathlib import Path

import numpy as np
import pytest

from assistant.fast_queries import QueryEncoder
from assistant.retrieval import Embedder, load_embedder

TEXTS = ["hi", "My doorbell camera keeps going offline every night since the update — what can I do? 😩",
         "Settings > Devices > Doorbell " * 80]  # the last one is longer than the model reads: truncated alike


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    found = QueryEncoder.load(load_embedder(), tmp_path_factory.mktemp("cache"))
    assert found is not None, "ONNX Runtime and onnx are dependencies: the export must work here"
    return found


def test_the_same_vectors_as_the_sentence_transformers_model(encoder):
    reference = load_embedder().encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    for one, ref in zip(TEXTS, reference):  # one at a time, as a chat turn asks
        assert float(encoder.encode([one])[0] @ ref) > 0.9999
    together = encoder.encode(TEXTS)  # padded to the longest: the mask keeps padding out of the mean
    assert np.allclose(together, reference, atol=1e-4)


def test_a_chat_turn_uses_it_and_bulk_embedding_does_not(encoder, monkeypatch):
    embedder = Embedder(None, model=load_embedder())
    embedder._queries = encoder
    calls = []
    monkeypatch.setattr(encoder, "encode", lambda texts: calls.append(len(texts)) or QueryEncoder.encode(encoder, texts))
    embedder.embed(["where is my order", "user: hi"])
    embedder.embed([f"imported text {i}" for i in range(20)])
    assert calls == [2]


def test_without_a_cache_directory_or_for_another_model_it_stays_on_pytorch():
    assert QueryEncoder.load(load_embedder(), None) is None
    assert QueryEncoder.load(object(), Path("/nonexistent")) is None
    assert Embedder(None, model=load_embedder())._query_encoder() is None
