"""Near-duplicate detection with MinHash over word shingles, banded for fast candidate lookup.

The same conversation re-exported with small edits (a fixed typo, a signature, a different export tool's
whitespace) has a different content hash but almost the same shingles. Each conversation gets a
64-value MinHash signature; 16 bands of 4 values index it, and a candidate sharing a band is confirmed
when the estimated Jaccard similarity reaches the threshold (default 0.8).
"""

from __future__ import annotations

import re
import zlib

import numpy as np

N_HASHES = 64
BANDS = 16
ROWS = N_HASHES // BANDS
SHINGLE = 5
_PRIME = np.uint64((1 << 61) - 1)
_rng = np.random.default_rng(1234567)
_A = _rng.integers(1, (1 << 31) - 1, N_HASHES, dtype=np.uint64)
_B = _rng.integers(0, (1 << 31) - 1, N_HASHES, dtype=np.uint64)
_WORD = re.compile(r"\w+")


def signature(text: str) -> np.ndarray:
    words = _WORD.findall(text.lower())
    if len(words) < SHINGLE:
        shingles = {" ".join(words)}
    else:
        shingles = {" ".join(words[i:i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}
    x = np.fromiter((zlib.crc32(s.encode("utf-8")) for s in shingles), dtype=np.uint64, count=len(shingles))
    # (a * x + b) mod p for every hash function at once; x < 2^32 and a, b < 2^31 keep it inside uint64
    return ((np.outer(_A, x) + _B[:, None]) % _PRIME).min(axis=1).astype(np.uint64)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


class NearDuplicateIndex:
    # Templated conversations ("Where is my order?" / the standard answer) fill a band bucket with
    # thousands of keys; checking only the most recent ones keeps each lookup O(1) and still finds
    # a near-duplicate, since any member of such a bucket is one.
    MAX_CANDIDATES_PER_BAND = 16

    def __init__(self, threshold: float = 0.8):
        self.threshold = threshold
        self.buckets: dict[tuple[int, bytes], list[int]] = {}
        self.signatures: dict[int, np.ndarray] = {}

    def _bands(self, sig: np.ndarray):
        raw = sig.tobytes()
        step = ROWS * 8
        return [(b, raw[b * step:(b + 1) * step]) for b in range(BANDS)]

    def add(self, key: int, sig: np.ndarray) -> None:
        self.signatures[key] = sig
        for band in self._bands(sig):
            self.buckets.setdefault(band, []).append(key)

    def find(self, sig: np.ndarray) -> tuple[int, float] | None:
        """The most similar indexed key at or above the threshold, with its similarity."""
        best = None
        seen = set()
        for band in self._bands(sig):
            for key in self.buckets.get(band, ())[-self.MAX_CANDIDATES_PER_BAND:]:
                if key in seen:
                    continue
                seen.add(key)
                s = similarity(sig, self.signatures[key])
                if s >= self.threshold and (best is None or s > best[1]):
                    best = (key, s)
        return best
