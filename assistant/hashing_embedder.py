"""An offline embedder with no model load, for benchmarks and tests.

Bag-of-words hashing: each word adds +1 or -1 to one of 384 dimensions (chosen by the word's MD5), and the
vector is unit-normalised. Texts that share words get similar vectors, which is enough for retrieval to
find the case or KB passage a test wrote for a question, in microseconds and deterministically. It knows
nothing about meaning (synonyms, paraphrases): never a substitute for the MiniLM embedder when quality
matters. Same interface as `assistant.retrieval.Embedder` (`dim`, `embed(texts)`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np


class HashingEmbedder:
    """Deterministic bag-of-words hashing vectors: similar wording, similar vectors."""

    dim = 384  # the MiniLM embedder's size, so vectors fit the same indexes

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0 if (h >> 20) % 2 else -1.0
            norm = np.linalg.norm(out[i])
            if norm:
                out[i] /= norm
        return out
