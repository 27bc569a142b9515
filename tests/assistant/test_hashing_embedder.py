"""The offline hashing embedder (assistant.hashing_embedder): unit vectors, deterministic, shared words score higher."""

import numpy as np

from assistant.hashing_embedder import HashingEmbedder


def test_vectors_are_unit_length_and_the_same_every_time():
    texts = ["Where is my order NH-20417?", "How do I reset my camera?"]
    first, again = HashingEmbedder().embed(texts), HashingEmbedder().embed(texts)
    assert first.shape == (2, HashingEmbedder.dim) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0)
    assert np.array_equal(first, again)


def test_shared_words_make_similar_vectors():
    query, near, far = HashingEmbedder().embed(["where is my order", "my order is late, where is it",
                                                 "reset the camera to factory settings"])
    assert query @ near > 0.5 > query @ far


def test_a_text_without_words_is_the_zero_vector():
    vectors = HashingEmbedder().embed(["", "?!"])
    assert not vectors.any()
    assert HashingEmbedder().embed([]).shape == (0, HashingEmbedder.dim)
