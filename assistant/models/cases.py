"""Answering from the nearest resolved case: the one implementation, and the offline teacher built on it.

`nearest_cases` finds the agent replies that followed the conversation states most like this one, and
withholds those carrying an instruction, markup or a link the knowledge base does not contain;
`nearest_reply` is the closest of them made safe for this customer (`make_safe`). That is what the
labeller's case-based backend (`distill.backends.CaseBackend`) and the evaluation's no-model baseline
(`eval.abtest.RetrievalBaseline`) answer with.

`CaseTeacher`, the offline stand-in for the teacher, starts from the same candidates and does more: a
case whose agent asked for what this customer already gave is passed over, a case whose agent repeated
or summed up their own replies is answered with this conversation's replies, and a KB passage answers
when no case is close.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from assistant.models.base import ChatModel, Usage
from assistant.models.past_replies import identifier_kinds, kb_text, make_safe, neutralise_placeholders, unsupported_content


@dataclass
class NearestCases:
    hits: list  # retrieval hits over the case base, closest first, none of them withheld
    withheld: list[tuple]  # (hit, why) for the close ones whose reply must never be served


def nearest_cases(case_base, history: Sequence[dict], k: int, *, exclude: frozenset = frozenset(),
                  kb: str | None = None) -> NearestCases:
    """The `k` closest agent replies to this conversation state, outside the `exclude` conversations.

    With `kb` (all of the knowledge base's text, `kb_text`) a reply carrying an instruction, markup or a link
    the knowledge base does not contain is withheld; with None nothing is checked (no KB to check against)."""
    found = case_base.search(history, k=k, exclude=exclude)
    if kb is None:
        return NearestCases(found, [])
    checked = [(hit, unsupported_content(hit.item["reply"], kb)) for hit in found]
    return NearestCases([hit for hit, why in checked if not why], [(hit, why) for hit, why in checked if why])


def nearest_reply(case_base, history: Sequence[dict], k: int = 1, *, exclude: frozenset = frozenset(),
                  kb: str | None = None) -> tuple[str, object | None]:
    """The closest usable agent reply made safe for this customer, and its hit; ("", None) when there is none."""
    hits = nearest_cases(case_base, history, k, exclude=exclude, kb=kb).hits
    if not hits:
        return "", None
    return make_safe(hits[0].item["reply"], hits[0].item["history"], history), hits[0]


# ---- what a past agent did with its own conversation -----------------------------------------
# A matched case's reply is not always an answer to copy: sometimes its agent repeated their previous
# reply ("say again?") or summed up their earlier replies ("can you recap?"). Copying that text would
# give the new customer another customer's answers. These helpers find, from the words alone, how much
# of a reply its agent took from earlier replies of the same conversation, so the teacher can do the
# same with this conversation's replies. No phrase lists: what counts is what the agent copied, whatever
# the customer's words were.

_WORD = re.compile(r"\w+")
# A sentence ends at . ! ? followed by a space or the end ("$19.99" and "v2.1" do not end one).
_SENTENCE = re.compile(r"[^\n]+?(?:[.!?]+(?=\s|$)|$)", re.M)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def _segments(text: str) -> list[re.Match]:
    """A reply's units: its lines when it has several (a list), else its sentences."""
    lines = list(re.finditer(r"[^\n]*\S[^\n]*", text))
    return lines if len(lines) > 1 else list(_SENTENCE.finditer(text))


def _copied(words: Sequence[str], source: Sequence[str], run: int = 2) -> set[int]:
    """Positions of `words` inside a run of at least `run` consecutive words that also occurs in `source`.

    Runs, not single words: two replies about anything share "the", "you" and "order"; a reply that
    repeats or sums up another shares phrases ("14 days", "5-7 business days", "Account > Gift cards")."""
    grams = {tuple(source[i:i + run]) for i in range(len(source) - run + 1)}
    return {j for i in range(len(words) - run + 1) if tuple(words[i:i + run]) in grams for j in range(i, i + run)}


def _token_f1(a: str, b: str) -> float:
    """Word-overlap F1 between two texts (bag of words)."""
    wa, wb = _words(a), _words(b)
    common = sum(min(wa.count(w), wb.count(w)) for w in set(wa))
    return 0.0 if not common else 2 * common / (len(wa) + len(wb))


@dataclass
class Reuse:
    """How much of an agent reply was copied from earlier agent replies of its own conversation."""

    share: float          # share of the reply's words that sit in copied runs
    copied: int           # how many words that is
    per_source: list[int]  # copied words found in each source reply
    lead: str = ""        # the framing before the copied part ("Sure: ", "Here's a recap:")
    tail: str = ""        # the framing after it ("All of it is on order NH-1234567.")


def reuse(reply: str, sources: Sequence[str], min_segment_share: float = 0.5) -> Reuse:
    """Measure what `reply` copied from `sources`, and split off the words it framed the copy with.

    A unit (line or sentence) mostly made of copied runs is copied content; the units before the first
    and after the last such unit are the agent's own framing, kept when the teacher does the same."""
    spans = [(m.start(), m.end()) for m in _WORD.finditer(reply)]
    words = [reply[a:b].lower() for a, b in spans]
    found = [_copied(words, _words(s)) for s in sources]
    copied = set().union(*found) if found else set()
    if not words or not copied:
        return Reuse(0.0, 0, [len(f) for f in found], lead=reply)
    content = []  # (start, end, char where its first copied word starts) of the copied units
    for seg in _segments(reply):
        inside = [i for i, (a, b) in enumerate(spans) if seg.start() <= a < seg.end()]
        if inside and sum(i in copied for i in inside) / len(inside) >= min_segment_share:
            content.append((seg.start(), seg.end(), spans[min(i for i in inside if i in copied)][0]))
    if not content:
        return Reuse(len(copied) / len(words), len(copied), [len(f) for f in found], lead=reply)
    first, last = content[0], content[-1]
    # Framing units before the copy ("Here's the recap:") or, when the copy starts the reply, the words
    # before its first copied run ("Sure: ...").
    lead = reply[:first[0]] if reply[:first[0]].strip() else reply[first[0]:first[2]]
    return Reuse(len(copied) / len(words), len(copied), [len(f) for f in found], lead=lead, tail=reply[last[1]:])


class CaseTeacher(ChatModel):
    """Offline teacher: answers with what the team's agents said in the most similar resolved case.

    When the matched agent did something with their own conversation instead of answering anew, the
    teacher does the same with this one: a repeat of the previous reply, or a recap of the earlier ones
    (extra["source"] == "conversation"). A case whose agent asked for an identifier this customer has
    already given is passed over for the next similar one, and so is a case whose agent reply carries an
    instruction, markup or a link the knowledge base does not contain (`unsupported_content`;
    extra["withheld"] says which and why): when every close case is withheld, the KB passage answers."""

    role = "teacher"
    local = True
    generates = False
    name = "case-based"

    # Below this case similarity, a KB passage that matches better is the safer answer.
    MIN_CASE_SCORE = 0.55
    # Candidates looked at when the best one asks the customer for what they already gave.
    CANDIDATES = 5
    # A reply that copies this share of its words from the previous reply is a repeat; one that copies
    # this share from several earlier replies, none of them more than RECAP_MAX_FROM_ONE of the copy,
    # is a recap. On the sample's 1,428 case replies: repeats copy 0.8-1.0, recaps (4-6 answers) 0.4-0.7
    # with at most 0.53 of the copy from one reply; other replies that copy much take 0.7-1.0 of it
    # from one reply (a stock phrase said again, an answer picked up again), and none passes as a
    # recap. Two thirds leaves room for a two-answer recap that dwells on one of them.
    REPEAT_SHARE = 0.6
    RECAP_SHARE = 0.45
    RECAP_MAX_FROM_ONE = 0.67
    # A repeat copies at least this many words, and a recap as many from each of two replies or more;
    # a reply shorter than STOCK_WORDS said again word for word is a stock phrase, not a repeat.
    MIN_COPIED = 5
    STOCK_WORDS = 15
    # A statement shorter than this is an acknowledgement ("Sure.", "Got it, thanks."): not recapped.
    MIN_RECAP_WORDS = 6
    # Sentences recapped per answer: answers often open with a preamble ("Looking at order NH-1 now.")
    # or keep a second fact for the next sentence; on the sample, 2 kept all that whole answers kept.
    RECAP_SENTENCES = 2

    def __init__(self, retriever):
        self.retriever = retriever
        self.version = f"cases-{retriever.cases.size}"
        self.description = (
            f"offline case-based stand-in ({retriever.cases.size} agent replies from resolved conversations); "
            "no teacher API configured"
        )
        self._turns_of: tuple = (None, {})  # (case base, {conversation id: its items by turn}), built lazily
        self._kb_cache: tuple = (None, "")  # (knowledge base, all its text), for the poisoned-reply check

    def answer(self, messages: Sequence[dict]) -> tuple[str, dict]:
        """The reply and where it came from (extra["source"]: "case", "conversation", "kb" or "none")."""
        history = [m for m in messages if m["role"] != "system"]
        near = nearest_cases(self.retriever.cases, history, self.CANDIDATES, exclude=self.retriever.exclude,
                             kb=self._kb_text())
        withheld = [{"conversation_id": hit.item["conversation_id"], "reason": why} for hit, why in near.withheld]
        best_case, passed_over = self._pick(near.hits, history)
        query = next((m["content"] for m in reversed(history) if m["role"] == "user"), "")
        kb = self.retriever.kb.search(query, k=1)
        best_kb = kb[0] if kb else None
        if best_case and (best_case.score >= self.MIN_CASE_SCORE or not best_kb or best_case.score >= best_kb.score):
            item = best_case.item
            text, source = self._from_conversation(best_case, history) or (
                make_safe(item["reply"], item["history"], history),
                {"source": "case", "score": best_case.score, "conversation_id": item["conversation_id"]})
            if passed_over:
                source["passed_over"] = passed_over  # closer cases whose agent asked again for a given identifier
            if withheld:
                source["withheld"] = withheld
            return text, source
        source = {"withheld": withheld} if withheld else {}
        if best_kb:
            passage = best_kb.item["text"].split("\n", 1)
            body = passage[1] if len(passage) > 1 else passage[0]
            text = f"Here is what our help center says ({best_kb.item['title']}):\n\n{body.strip()}"
            return text, {"source": "kb", "score": best_kb.score, "title": best_kb.item["title"], **source}
        return ("I'm sorry, I don't have information on that. Let me pass you to a colleague who can help.",
                {"source": "none", "score": 0.0, **source})

    def _kb_text(self) -> str:
        """All of the KB's text, for the poisoned-reply check; read again only when the KB was rebuilt (an import)."""
        kb = self.retriever.kb
        if self._kb_cache[0] is not kb:
            self._kb_cache = (kb, kb_text(kb))
        return self._kb_cache[1]

    # -- don't ask again ------------------------------------------------------------------------

    def _pick(self, cases: list, history: Sequence[dict]) -> tuple:
        """The closest case whose agent does not ask for an identifier this customer already gave (the
        closest one when they all do), and the conversation ids passed over to reach it."""
        for n, hit in enumerate(cases):
            if not self._asks_again(hit.item, history):
                return hit, [c.item["conversation_id"] for c in cases[:n]]
        return (cases[0] if cases else None), []

    def _asks_again(self, item: dict, history: Sequence[dict]) -> bool:
        """Did the case's agent ask for something this customer has already given?

        Read from what happened next in the case: the agent's reply is a question and the customer's
        next message supplied an identifier of a kind they had not given before (an order number, an
        email). If this customer gave that kind of identifier earlier, asking again would be wrong."""
        if "?" not in item["reply"]:
            return False
        answer = self._next_customer_message(item)
        if not answer:
            return False
        given_before = identifier_kinds(" ".join(m["content"] for m in item["history"] if m["role"] == "user"))
        supplied = identifier_kinds(answer) - given_before
        ours = identifier_kinds(" ".join(m["content"] for m in history if m["role"] == "user"))
        return bool(supplied & ours)

    def _next_customer_message(self, item: dict) -> str | None:
        """The customer message that followed `item`'s reply in its conversation, if the case base has it
        (as part of a later item's history)."""
        cases = self.retriever.cases
        if self._turns_of[0] is not cases:  # the case base was rebuilt (an import): index it again
            by_conversation: dict = {}
            for it in cases.index.items:
                if it["conversation_id"] is not None:
                    by_conversation.setdefault(it["conversation_id"], []).append(it)
            self._turns_of = (cases, by_conversation)
        later = [it for it in self._turns_of[1].get(item["conversation_id"], []) if it["turn"] > item["turn"]]
        if not later:
            return None
        after = min(later, key=lambda it: it["turn"])["history"][item["turn"] + 1]
        return after["content"] if after["role"] == "user" else None

    # -- repeat and recap -----------------------------------------------------------------------

    def _from_conversation(self, hit, history: Sequence[dict]) -> tuple[str, dict] | None:
        """A repeat or a recap built from this conversation's replies, when the case's agent did that."""
        item = hit.item
        theirs = [m["content"] for m in item["history"] if m["role"] == "assistant"]
        ours = [m["content"] for m in history if m["role"] == "assistant"]
        if not theirs or not ours:
            return None
        source = {"source": "conversation", "score": hit.score, "case_conversation_id": item["conversation_id"]}

        def framed(part: Reuse, body: str) -> str:
            # The case agent's own framing, made safe for this customer, around this conversation's text
            # (placeholders neutralised too: an imported conversation's replies carry "[NAME_1]").
            lead = make_safe(part.lead, item["history"], history).strip()
            tail = make_safe(part.tail, item["history"], history).strip()
            body = neutralise_placeholders(body)
            sep = "\n" if "\n" in body else " "
            return sep.join(p for p in (lead, body, tail) if p)

        repeat = reuse(item["reply"], theirs[-1:])
        if self._is_repeat(item["reply"], theirs[-1], repeat):
            # All of the previous reply, even when the matched agent repeated only part of theirs: which
            # part ("the last part", "the important bit") depends on a request the case may not share.
            body = ours[-1].strip()
            return framed(repeat, body), {**source, "kind": "repeat"}

        recap = reuse(item["reply"], theirs)
        if self._is_recap(recap):
            # Replies the recap took nothing from: at most one pair of words, which can be chance ("with the").
            left_out = [t for t, n in zip(theirs, recap.per_source) if n <= 2]
            lines = self._recap_lines(ours, left_out)
            if lines:
                return framed(recap, "\n".join(f"- {line}" for line in lines)), {**source, "kind": "recap"}
        return None

    def _is_repeat(self, reply: str, previous: str, part: Reuse) -> bool:
        """Mostly copied from the reply right before it."""
        if part.share < self.REPEAT_SHARE or part.copied < self.MIN_COPIED:
            return False
        # The same short reply twice is a stock phrase ("Anything else?" after two "thanks"), not a repeat.
        return not (_token_f1(reply, previous) >= 0.9 and len(_words(reply)) < self.STOCK_WORDS)

    def _is_recap(self, part: Reuse) -> bool:
        """Mostly copied, and from several earlier replies: no single one accounts for most of the copy
        (a reply copied from one earlier reply is a stock phrase said again, or a back-reference)."""
        if part.share < self.RECAP_SHARE or sum(n >= self.MIN_COPIED for n in part.per_source) < 2:
            return False
        return max(part.per_source) <= self.RECAP_MAX_FROM_ONE * part.copied

    def _recap_lines(self, ours: Sequence[str], left_out: Sequence[str]) -> list[str]:
        """The first substantive sentences of each distinct earlier answer of this conversation, in order.

        Skipped, like the matched agent skipped them: acknowledgements and questions (no statement of
        MIN_RECAP_WORDS words: "Sure.", "Got it, thanks.", "What else can I help with?"), replies resembling
        the ones that agent left out of their recap, and repeats of an answer already listed."""
        kept: list[str] = []
        lines = []
        for reply in ours:
            substantive = [s for s in _sentences(reply)
                           if len(_words(s)) >= self.MIN_RECAP_WORDS and not s.endswith("?")]
            if not substantive or any(_token_f1(reply, other) >= 0.6 for other in left_out):
                continue
            words = _words(reply)
            if any(len(_copied(words, _words(k))) >= 0.6 * len(words) for k in kept):
                continue
            kept.append(reply)
            lines.append(" ".join(substantive[:self.RECAP_SENTENCES]))
        return lines

    def _generate(self, messages, max_tokens):
        text, source = self.answer(messages)
        words = re.findall(r"\S+\s*", text)
        for w in words:
            yield w
        # Word counts stand in for tokens: nothing is billed per token for a local stand-in.
        yield Usage(sum(len(m["content"].split()) for m in messages), len(words), finish_reason="stop", extra=source)
