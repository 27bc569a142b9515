"""Scoring a reply against what it should say: gold-fact matching and token F1.

It lives in distill/ because the promotion check (distill.pipeline) scores candidates with it, below the
evaluation (eval/abtest, eval/metrics/gold_fact) that uses the same functions.

Gold facts are short phrases an agent turn must state ("30 days", "Orders > Return an item",
"5-7 business days"). Matching is on normalised text: case, Unicode dashes and quotes, contractions
("can't" = "cannot"), ranges ("5 to 7" = "5-7"), thousands separators, markdown emphasis and
punctuation are evened out, so a reply is not failed for wording the fact did not depend on.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

_CONTRACTIONS = {"can't": "cannot", "won't": "will not", "n't": " not", "'re": " are", "'ll": " will", "'ve": " have",
                 "'m": " am", "it's": "it is", "that's": "that is", "there's": "there is", "you're": "you are"}


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    text = re.sub(r"[‐-―−]", "-", text)
    for short, long in _CONTRACTIONS.items():
        text = text.replace(short, long)
    text = re.sub(r"(\d),(\d{3})\b", r"\1\2", text)
    text = re.sub(r"(\d)\s*(?:-|to|–)\s*(\d)", r"\1-\2", text)
    text = re.sub(r"[*_`#]", "", text)
    text = re.sub(r"[^\w$%@./>+-]+", " ", text)
    text = re.sub(r"(?<!\d)[.](?!\d)", " ", text)
    return " ".join(text.split())


def fact_present(reply: str, fact: str) -> bool:
    return _present(f" {normalise(reply)} ", fact)


def _present(padded_reply: str, fact: str) -> bool:
    f = normalise(fact)
    return bool(f) and f" {f} " in padded_reply


def gold_fact_recall(reply: str, facts: list[str]) -> float | None:
    """Share of the gold facts the reply states; None when the turn has no gold facts."""
    facts = [f for f in facts if f and f.strip()]
    if not facts:
        return None
    text = f" {normalise(reply)} "
    return sum(_present(text, f) for f in facts) / len(facts)


def token_f1(reply: str, reference: str) -> float:
    a, b = normalise(reply).split(), normalise(reference).split()
    if not a or not b:
        return float(a == b)
    common = sum((Counter(a) & Counter(b)).values())
    if not common:
        return 0.0
    p, r = common / len(a), common / len(b)
    return 2 * p * r / (p + r)
