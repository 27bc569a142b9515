"""Quality filter for labels: which teacher (or logged) replies are fit to train the student on.

Each check returns a reason when a reply fails; rejected labels are kept with that reason for review.
Checks: empty; truncated (finish_reason "length"); model refusal boilerplate; a different language
from the customer's; over-long; invented placeholders or template brackets; personal data that was not
in the conversation or the knowledge base (a leak).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from distill.pii import Scrubber

_REFUSAL = re.compile(
    r"\b(as an ai( language model)?|i('m| am) (just |only )?an ai|i cannot (help|assist) with (that|this)( request)?|"
    r"i'?m sorry,? but i (can(no|')t|am unable to) (help|assist|comply)|i (can(no|')t|won'?t) comply)\b",
    re.I,
)
_PLACEHOLDER = re.compile(r"\[[A-Z]+(?:_[A-Z]+)*_\d+\]")
_TEMPLATE = re.compile(r"\[(insert|your|customer|agent|name|order|company)[^\]]{0,30}\]|<(order|customer|name)[ _-]?\w*>|\{\{?\w+\}?\}", re.I)

STOPWORDS = {
    "en": "the and is you to your of for it that with this have can will are not be on",
    "es": "el la de que y en los las por para con una su es no se lo",
    "fr": "le la les de et des est vous pour que une dans pas sur ce avec",
    "de": "der die das und ist nicht sie ich mit den ein eine zu für auf",
    "it": "il di che e la per un una non sono con del della le gli",
    "pt": "o de que e do da em um uma para com não os as você",
    "nl": "de het een en van is dat niet je op te met voor zijn",
}
_STOP = {lang: set(words.split()) for lang, words in STOPWORDS.items()}


def language(text: str) -> str | None:
    """A small stopword vote; None when the text is too short or unclear to tell."""
    words = re.findall(r"[a-zà-ÿ]+", text.lower())
    if len(words) < 6:
        return None
    scores = {lang: sum(w in stop for w in words) for lang, stop in _STOP.items()}
    best = max(scores, key=scores.get)
    ranked = sorted(scores.values(), reverse=True)
    if ranked[0] < 2 or ranked[0] < 1.5 * ranked[1]:
        return None
    return best


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9@.]", "", text.lower())


@dataclass
class QualityFilter:
    max_words: int = 180

    def check(self, reply: str, history: list[dict], finish_reason: str | None = None, reference_text: str = "") -> str | None:
        text = (reply or "").strip()
        if not text:
            return "empty"
        if finish_reason == "length":
            return "truncated (hit the token limit)"
        if _REFUSAL.search(text):
            return "refusal"
        customer = " ".join(m["content"] for m in history if m["role"] == "user")
        asked, answered = language(customer), language(text)
        if asked and answered and asked != answered:
            return f"wrong language ({answered}, customer wrote {asked})"
        if len(text.split()) > self.max_words:
            return f"over-long ({len(text.split())} words > {self.max_words})"
        known = " ".join(m["content"] for m in history)
        invented = [p for p in _PLACEHOLDER.findall(text) if p not in known]
        if invented:
            return f"invents placeholders ({', '.join(sorted(set(invented))[:3])})"
        if _TEMPLATE.search(text):
            return "template placeholder left in the reply"
        scrubber = Scrubber()
        scrubber.scrub(text)
        if scrubber.counts:
            # personal data in a reply is a leak unless it was already in the conversation or the KB
            allowed = _norm(known + " " + reference_text)
            found = [k for k in scrubber._seen if _norm(k[1]) not in allowed]
            if found:
                return f"leaks personal data ({', '.join(sorted({k[0] for k in found}))})"
        return None
