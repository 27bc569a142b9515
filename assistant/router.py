"""Routing: decide per query whether the student can answer or the teacher should.

A router returns a score in [0, 1] and a human-readable reason; a threshold decides, as in RouteLLM. The
threshold is the calibrated one for the router (`assistant router calibrate --teacher-share 0.2`, stored in
the store) or settings.router_threshold; `calibrate_threshold` turns a target share of teacher calls into
one over a sample of scores.

`auto_route` is Auto mode's decision, the one the chat makes live and the offline A/B replays: the teacher
when the question alone scores over the threshold, else the student's held-back opening (DRAFT_TOKENS) is
scored too and the teacher answers when it scores over the threshold (a cascade: the draft's time and cost
are spent either way, and counted).

The routers (ROUTERS, built by `build_router` from settings.router, or picked in the chat's Auto options):
- rules:      transparent keyword rules on the question plus a low-information draft check (RuleRouter);
- confidence: how sure the student was of its draft: 1 - the geometric-mean probability of its tokens
              (llama.cpp's log-probabilities, carried by the draft's `TokenText` pieces);
- novelty:    how far the conversation state (last message plus the turns before it) is from the nearest
              training example (a resolved past case);
- agreement:  whether the draft says what the nearest resolved case's agent said, or the best KB passage;
- learned:    logistic regression over those signals, trained on where *this* student did worse than *this*
              teacher (`assistant router train`, eval.router_train); stored as plain numbers, versioned.
All of them read the same `Signals` of a turn, so the learned router sees exactly what the others score.

RuleRouter signals (each has a weight; the score combines them as a noisy-OR, 1 - prod(1 - w)):
- escalation: the customer asks for a human, a supervisor or a call back
- sensitive intent: billing disputes, refunds, cancellation, legal, account deletion, security
- multi-issue: several questions or "also / another thing" in one message
- long message: many words, usually a detailed problem report
- upset customer: shouting, repeated punctuation, strong words
- low-information draft: the student's opening is empty, a refusal, a stock apology or repeats itself
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from assistant.errors import ConfigError

# Auto mode holds back this many tokens of the student's reply so the router can judge the draft.
DRAFT_TOKENS = 24


@dataclass(frozen=True)
class RouteDecision:
    score: float
    reason: str
    stage: str = "question"  # "question": scored before the student started; "draft": on its held-back opening
    features: dict = field(default_factory=dict, compare=False)  # the signals it read (logged, for training)

    def to_teacher(self, threshold: float) -> bool:
        return self.score >= threshold


class Router(Protocol):
    name: str
    version: str

    def score(self, messages: Sequence[dict], draft: str | None = None) -> RouteDecision: ...


class Draft(str):
    """The student's held-back opening: its text, and how sure the student was of it when the pieces were
    llama.cpp `TokenText`s (summed log-probability, mean entropy, token count); plain text has no tokens."""

    logprob: float = 0.0
    entropy: float = 0.0
    tokens: int = 0

    @classmethod
    def join(cls, pieces: Sequence[str]) -> "Draft":
        draft = cls("".join(pieces))
        scored = [p for p in pieces if getattr(p, "tokens", 0)]
        draft.tokens = sum(p.tokens for p in scored)
        draft.logprob = sum(p.logprob for p in scored)
        draft.entropy = sum(p.entropy * p.tokens for p in scored) / draft.tokens if draft.tokens else 0.0
        return draft

    @classmethod
    def of(cls, text: str, logprob: float = 0.0, entropy: float = 0.0, tokens: int = 0) -> "Draft":
        draft = cls(text)
        draft.logprob, draft.entropy, draft.tokens = logprob, entropy, tokens
        return draft

    @property
    def mean_prob(self) -> float | None:
        """Geometric-mean probability of the draft's tokens; None when the student gave none (plain text)."""
        return math.exp(self.logprob / self.tokens) if self.tokens else None


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


def _low_info(draft: str) -> bool:
    return len(draft.strip()) < 8 or bool(_LOW_INFO_DRAFT.search(draft)) or _repetitive(draft)


class RuleRouter:
    """Transparent, dependency-free rules: a sensible default before any routing data exists."""

    name, version = "rules", "1"

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
        if draft is not None and _low_info(draft):
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


# The signals of one turn, by name, in the order the learned router reads them. None: not available for
# this turn (no draft yet, a draft without token scores, no retrieval); the learned router then uses the
# value it saw on average in training.
FEATURES = ("rules", "draft_low_info", "draft_prob", "draft_entropy", "case_sim", "case_agree", "kb_agree",
            "depth", "words")
FEATURE_LABELS = {
    "rules": "rule signals in the question", "draft_low_info": "low-information draft",
    "draft_prob": "student sure of its draft", "draft_entropy": "student's draft entropy",
    "case_sim": "close to a past case", "case_agree": "draft agrees with the nearest case",
    "kb_agree": "draft agrees with the help center", "depth": "deep in the conversation",
    "words": "long message",
}


class Signals:
    """Computes a turn's signals (FEATURES) from the conversation, the draft and retrieval.

    `retriever` gives the training examples (resolved past cases) and KB passages; its `exclude` keeps an
    evaluation's own split out, as the chat never sees its own conversation among the cases."""

    def __init__(self, retriever=None):
        self.retriever = retriever
        self._rules = RuleRouter()

    def nearest_case(self, messages: Sequence[dict]):
        if self.retriever is None or not getattr(self.retriever.cases, "size", 0):
            return None
        hits = self.retriever.cases.search(messages, 1, exclude=self.retriever.exclude)
        return hits[0] if hits else None

    def features(self, messages: Sequence[dict], draft: str | None = None) -> dict:
        text = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        hit = self.nearest_case(messages)
        f = {"rules": self._rules.score(messages).score, "draft_low_info": None, "draft_prob": None,
             "draft_entropy": None, "case_sim": hit.score if hit else None, "case_agree": None, "kb_agree": None,
             "depth": float(sum(m["role"] == "user" for m in messages)), "words": math.log1p(len(text.split()))}
        if draft is None:
            return f
        f["draft_low_info"] = float(_low_info(draft))
        if getattr(draft, "tokens", 0):
            f["draft_prob"], f["draft_entropy"] = draft.mean_prob, draft.entropy
        if self.retriever is not None and draft.strip():
            f.update(self._agreement(text, draft, hit))
        return f

    def _agreement(self, question: str, draft: str, hit) -> dict:
        """Cosine similarity of the draft to the nearest case's reply (its opening, as long as the draft) and to
        the KB passage that best matches the question."""
        embedder = self.retriever.kb.embedder
        out = {}
        vectors = embedder.embed([draft])
        if hit is not None:
            opening = " ".join(hit.item["reply"].split()[: len(draft.split()) + 5])
            out["case_agree"] = float(vectors[0] @ embedder.embed([opening])[0])
        passages = self.retriever.kb.search(question, 1) if self.retriever.kb.index.items else []
        if passages:
            out["kb_agree"] = float(vectors[0] @ embedder.embed([passages[0].item["text"]])[0])
        return out


def _clip(x: float) -> float:
    return round(min(1.0, max(0.0, x)), 4)


class _SignalRouter:
    """A router over `Signals`: `decide(features, draft)` gives the score and reason."""

    name, version, needs_draft = "signals", "1", True

    def __init__(self, retriever=None, signals: Signals | None = None):
        self.signals = signals or Signals(retriever)

    def score(self, messages: Sequence[dict], draft: str | None = None) -> RouteDecision:
        if draft is None and self.needs_draft:
            # the draft is what this router judges: the question alone never sends a turn to the teacher
            return RouteDecision(0.0, "waits for the student's draft", "question")
        f = self.signals.features(messages, draft)
        score, reason = self.decide(f)
        return RouteDecision(_clip(score), reason, "question" if draft is None else "draft", f)

    def decide(self, f: dict) -> tuple[float, str]:  # pragma: no cover - every router writes its own
        raise NotImplementedError


class ConfidenceRouter(_SignalRouter):
    """The student's own certainty about its opening: 1 - geometric-mean token probability. A draft without
    token scores (a student that is not llama.cpp) falls back to the low-information check."""

    name = "confidence"

    def decide(self, f):
        low = f["draft_low_info"] == 1.0
        if f["draft_prob"] is None:
            return (0.6, "student draft is low-information") if low else (0.0, "no token scores; draft looks fine")
        score = max(1 - f["draft_prob"], 0.6 if low else 0.0)
        reason = (f"student's draft: mean token probability {f['draft_prob']:.2f}, entropy {f['draft_entropy']:.2f} nats"
                  + ("; low-information" if low else ""))
        return score, reason


class NoveltyRouter(_SignalRouter):
    """Far from every training example (the conversation state: last message and the turns before it):
    1 - cosine similarity to the nearest resolved past case."""

    name, needs_draft = "novelty", False

    def decide(self, f):
        if f["case_sim"] is None:
            return 0.0, "no past cases to compare with"
        return 1 - f["case_sim"], f"nearest past case similarity {f['case_sim']:.2f}"


class AgreementRouter(_SignalRouter):
    """Does the draft say what the nearest resolved case's agent said, or what the help center says?
    1 - the better of the two cosine similarities."""

    name = "agreement"

    def decide(self, f):
        sims = [s for s in (f["case_agree"], f["kb_agree"]) if s is not None]
        if not sims:
            return (0.6, "student draft is low-information") if f["draft_low_info"] == 1.0 else (0.0, "nothing to compare the draft with")
        return 1 - max(sims), (f"draft vs nearest case {_num(f['case_agree'])}, vs help center {_num(f['kb_agree'])}")


def _num(x) -> str:
    return "–" if x is None else f"{x:.2f}"


class LearnedRouter(_SignalRouter):
    """Logistic regression over the signals, trained on this student's outcomes against this teacher
    (eval.router_train). `model` is plain numbers: {"features", "mean", "scale", "coef", "intercept"}, so
    serving needs no training library and nothing is unpickled."""

    name = "learned"

    def __init__(self, model: dict, version: str, retriever=None, signals: Signals | None = None):
        super().__init__(retriever, signals)
        self.model, self.version = model, version

    def decide(self, f):
        m = self.model
        contributions = {}
        for name, mean, scale, coef in zip(m["features"], m["mean"], m["scale"], m["coef"]):
            value = f.get(name)
            x = mean if value is None else float(value)
            contributions[name] = coef * (x - mean) / (scale or 1.0)
        z = m["intercept"] + sum(contributions.values())
        score = 1 / (1 + math.exp(-max(-30.0, min(30.0, z))))
        top = [n for n, c in sorted(contributions.items(), key=lambda kv: -kv[1]) if c > 0.1][:2]
        why = ", ".join(FEATURE_LABELS.get(n, n) + (" (low)" if _pushes_low(m, n) else "") for n in top)
        return score, f"learned: P(student worse) {score:.2f}" + (f"; mostly {why}" if why else "")


def _pushes_low(model: dict, name: str) -> bool:
    """A feature with a negative weight raises the score when it is low ("student sure of its draft (low)")."""
    return model["coef"][model["features"].index(name)] < 0


ROUTERS = {
    "rules": "keyword rules on the question, then a low-information draft check",
    "confidence": "the student's token probabilities on its held-back draft (a cascade)",
    "novelty": "distance of the conversation to the nearest training example",
    "agreement": "whether the draft agrees with the nearest resolved case or KB passage",
    "learned": "logistic regression over all the signals, trained on this student's outcomes (assistant router train)",
}


def build_router(name: str, retriever=None, learned: dict | None = None, signals: Signals | None = None) -> Router:
    """The router called `name` (a key of ROUTERS). `learned`: the router version row to serve (its "version"
    and "model"), required for "learned"."""
    if name == "rules":
        return RuleRouter()
    if name == "learned":
        if not learned:
            raise ConfigError("no learned router is trained yet: run `assistant router train` (or pick another "
                              f"router: {', '.join(r for r in ROUTERS if r != 'learned')})")
        return LearnedRouter(learned["model"], learned["version"], retriever, signals)
    classes = {"confidence": ConfidenceRouter, "novelty": NoveltyRouter, "agreement": AgreementRouter}
    if name not in classes:
        raise ConfigError(f"unknown router {name!r}; choose from {', '.join(ROUTERS)}")
    return classes[name](retriever, signals)


def calibrate_threshold(scores: Sequence[float], teacher_share: float) -> float:
    """The threshold that sends about `teacher_share` of these queries to the teacher."""
    if teacher_share <= 0:
        return 1.0 + 1e-9
    if not scores:
        return 0.5
    ordered = sorted(scores, reverse=True)
    k = max(1, round(teacher_share * len(ordered)))
    return ordered[min(k, len(ordered)) - 1]


def auto_route(router: Router, messages: Sequence[dict], threshold: float,
               draft: Callable[[], str]) -> tuple[str, RouteDecision]:
    """Auto mode: ("teacher" or "student", the decision that says why).

    `draft()` is called only when the question alone stays under the threshold, and returns the opening of the
    student's reply (the chat holds back its first DRAFT_TOKENS tokens; the A/B replays the recorded opening).
    When the student keeps the turn, the decision shown is the higher-scoring of the two."""
    before = router.score(messages)
    if before.to_teacher(threshold):
        return "teacher", before
    return route_draft(router, messages, threshold, before, draft())


def route_draft(router: Router, messages: Sequence[dict], threshold: float, before: RouteDecision,
                draft: str) -> tuple[str, RouteDecision]:
    """The second half of `auto_route`, for a caller that fetches the draft itself (the chat, which shows the
    customer their place in line while the student's draft waits for a slot)."""
    after = router.score(messages, draft=draft)
    after = RouteDecision(after.score, after.reason, "draft", after.features or before.features)
    if after.to_teacher(threshold):
        return "teacher", after
    kept = after if after.score > before.score else before
    return "student", RouteDecision(kept.score, kept.reason, "draft", after.features)
