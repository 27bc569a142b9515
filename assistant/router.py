"""Routing: decide per query whether the student can answer or the teacher should.

A router returns a score in [0, 1] and a human-readable reason; a threshold (settings.router_threshold)
decides, as in RouteLLM. The threshold can be calibrated to a target share of teacher calls with
`calibrate_threshold`. This first router is rule based; learned routers implement the same interface.

`auto_route` is Auto mode's decision, the one the chat makes live and the offline A/B replays: the teacher
when the question alone scores over the threshold, else the student's held-back opening (DRAFT_TOKENS)
is scored too and an empty, evasive or looping draft goes to the teacher.

RuleRouter signals (each has a weight; the score combines them as a noisy-OR, 1 - prod(1 - w)):
- escalation: the customer asks for a human, a supervisor or a call back
- sensitive intent: billing disputes, refunds, cancellation, legal, account deletion, security
- multi-issue: several questions or "also / another thing" in one message
- long message: many words, usually a detailed problem report
- upset customer: shouting, repeated punctuation, strong words
- low-information draft: the student's opening is empty, a refusal, a stock apology or repeats itself
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

# Auto mode holds back this many tokens of the student's reply so the router can judge the draft.
DRAFT_TOKENS = 24


@dataclass(frozen=True)
class RouteDecision:
    score: float
    reason: str

    def to_teacher(self, threshold: float) -> bool:
        return self.score >= threshold


class Router(Protocol):
    name: str

    def score(self, messages: Sequence[dict], draft: str | None = None) -> RouteDecision: ...


_ESCALATION = re.compile(
    r"\b(human|real person|supervisor|manager|agent|representative|call me|phone me|speak to (someone|somebody))\b", re.I
)
_SENSITIVE = re.compile(
    r"\b(refund\w*|charg\w*|billed|bill|invoice|dispute|chargeback|cancel\w*|lawyer|legal|sue|court|gdpr|"
    r"delete my (account|data)|erase|fraud|hack\w*|stolen|password|locked out|two[- ]factor|2fa)\b",
    re.I,
)
_MULTI = re.compile(r"\b(also|another thing|and another|plus|second (issue|question)|as well as)\b", re.I)
_UPSET = re.compile(r"\b(ridiculous|unacceptable|terrible|worst|angry|furious|wtf|scam|useless|done with)\b", re.I)
_LOW_INFO_DRAFT = re.compile(
    r"^\s*(i'?m sorry|sorry|i (can(no|')t|am unable|don'?t know)|as an ai|i'?m not sure|please (contact|check))", re.I
)


def _repetitive(text: str) -> bool:
    words = text.lower().split()
    if len(words) < 12:
        return False
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return len(set(trigrams)) / len(trigrams) < 0.6


class RuleRouter:
    """Transparent, dependency-free rules: a sensible default before any routing data exists."""

    name = "rules-v1"

    WEIGHTS = {
        "asks for a human": 0.7,
        "sensitive topic": 0.5,
        "several issues in one message": 0.4,
        "long message": 0.3,
        "customer is upset": 0.35,
        "student draft is low-information": 0.6,
    }

    def __init__(self, long_words: int = 60):
        self.long_words = long_words

    def signals(self, messages: Sequence[dict], draft: str | None = None) -> list[str]:
        text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        found = []
        if _ESCALATION.search(text):
            found.append("asks for a human")
        if _SENSITIVE.search(text):
            found.append("sensitive topic")
        if text.count("?") >= 2 or _MULTI.search(text):
            found.append("several issues in one message")
        if len(text.split()) >= self.long_words:
            found.append("long message")
        letters = [c for c in text if c.isalpha()]
        shouting = len(letters) >= 12 and sum(c.isupper() for c in letters) / len(letters) > 0.6
        if shouting or "!!" in text or _UPSET.search(text):
            found.append("customer is upset")
        if draft is not None and (len(draft.strip()) < 8 or _LOW_INFO_DRAFT.search(draft) or _repetitive(draft)):
            found.append("student draft is low-information")
        return found

    def score(self, messages: Sequence[dict], draft: str | None = None) -> RouteDecision:
        found = self.signals(messages, draft)
        keep = 1.0
        for s in found:
            keep *= 1 - self.WEIGHTS[s]
        score = round(1 - keep, 4)
        reason = ", ".join(found) if found else "routine question"
        return RouteDecision(score, reason)


def calibrate_threshold(scores: Sequence[float], teacher_share: float) -> float:
    """The threshold that sends about `teacher_share` of these queries to the teacher."""
    if not scores:
        return 0.5
    if teacher_share <= 0:
        return 1.0 + 1e-9
    ordered = sorted(scores, reverse=True)
    k = max(1, round(teacher_share * len(ordered)))
    return ordered[min(k, len(ordered)) - 1]


def auto_route(router: Router, messages: Sequence[dict], threshold: float,
               draft: Callable[[], str]) -> tuple[str, RouteDecision]:
    """Auto mode: ("teacher" or "student", the decision that says why).

    `draft()` is called only when the question alone stays under the threshold, and returns the opening of the
    student's reply (the chat holds back its first DRAFT_TOKENS tokens; the A/B takes the first words of a
    finished reply). When the student keeps the turn, the decision shown is the higher-scoring of the two."""
    before = router.score(messages)
    if before.to_teacher(threshold):
        return "teacher", before
    return route_draft(router, messages, threshold, before, draft())


def route_draft(router: Router, messages: Sequence[dict], threshold: float, before: RouteDecision,
                draft: str) -> tuple[str, RouteDecision]:
    """The second half of `auto_route`, for a caller that fetches the draft itself (the chat, which shows the
    customer their place in line while the student's draft waits for a slot)."""
    after = router.score(messages, draft=draft)
    if after.to_teacher(threshold):
        return "teacher", after
    return "student", after if after.score > before.score else before
