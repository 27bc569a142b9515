"""PII scrubbing of support transcripts, before anything is stored or sent to a teacher.

Offline and fast: regular expressions plus checksums (Luhn for payment cards, mod-97 for IBANs,
octet ranges for IPs) and the names the export itself identifies (customer name fields). Each
value becomes a typed placeholder that stays the same within a conversation: the first e-mail
address is [EMAIL_1] wherever it appears, a second one [EMAIL_2].

Precision matters as much as recall: order numbers, dates, times, prices and version strings
must survive, or the transcripts lose the facts the student has to learn. So phone numbers need
phone punctuation (+country code, parentheses or separated digit groups), bare digit runs are
left alone unless they pass the card checksum.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

TYPES = ("EMAIL", "URL", "CARD", "IBAN", "IP", "PHONE", "ADDRESS", "NAME")

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# URLs whose query or path carries a secret (reset links, signed links, session ids).
_URL_TOKEN = re.compile(
    r"\bhttps?://[^\s<>\"']*?(?:[?&#](?:token|access_token|auth|key|api_key|sig|signature|code|session|sid|reset|otp|password|pwd)=|/(?:reset|verify|magic|login)/[A-Za-z0-9_-]{12,})[^\s<>\"']*",
    re.I,
)
_CARD = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
_IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\w|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}:){0,5}[0-9A-Fa-f]{1,4}(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w+-])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,4}"  # +44 20 7946 0958, +1-555-123-4567
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]?\d{4}"  # (555) 123-4567
    r"|\d{3}[ .-]\d{3}[ .-]\d{4}"  # 555-123-4567, 555.123.4567
    r")(?![\w-])"
)
_STREET_SUFFIX = (
    r"Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Way|Place|Pl|Terrace|Circle|Parkway|Pkwy|Highway|Hwy|Square|Sq"
)
_ADDRESS = re.compile(
    r"\b\d{1,6}\s+(?:[A-Z][a-z]+\.?\s+){1,3}(?:" + _STREET_SUFFIX + r")\b\.?"
    r"(?:,?\s*(?:Apt|Suite|Unit|#)\.?\s*\w+)?"
    r"(?:,\s*[A-Z][A-Za-z]+(?:\s[A-Z][A-Za-z]+)?(?:,\s*[A-Z]{2})?(?:\s+(?:\d{5}(?:-\d{4})?|[A-Z]\d[A-Z]\s?\d[A-Z]\d))?)?"
)


def luhn_ok(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = ord(ch) - 48
        if alt:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        alt = not alt
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    s = candidate.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


@dataclass
class Scrubber:
    """Scrubs the texts of one conversation, keeping placeholders consistent across its messages."""

    names: Iterable[str] = ()
    counts: Counter = field(default_factory=Counter)
    _seen: dict = field(default_factory=dict)
    _name_re: re.Pattern | None = None

    def __post_init__(self):
        parts: set[str] = set()
        for full in self.names:
            full = (full or "").strip()
            if not full:
                continue
            parts.add(full)
            # "Maria Garcia" is also "Maria" and "Garcia" in the text; skip initials and short words
            parts.update(p for p in re.split(r"\s+", full) if len(p) >= 3)
        if parts:
            alternatives = "|".join(re.escape(p) for p in sorted(parts, key=len, reverse=True))
            self._name_re = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.I)

    def _placeholder(self, kind: str, value: str) -> str:
        key = (kind, value.lower().replace(" ", "").replace("-", ""))
        if key not in self._seen:
            n = sum(1 for k in self._seen if k[0] == kind) + 1
            self._seen[key] = f"[{kind}_{n}]"
        self.counts[kind] += 1
        return self._seen[key]

    def scrub(self, text: str) -> str:
        if not text:
            return text
        text = _URL_TOKEN.sub(lambda m: self._placeholder("URL", m.group(0)), text)
        text = _EMAIL.sub(lambda m: self._placeholder("EMAIL", m.group(0)), text)
        text = _IBAN.sub(lambda m: self._placeholder("IBAN", m.group(0)) if iban_ok(m.group(0)) else m.group(0), text)

        def card(m: re.Match) -> str:
            digits = re.sub(r"\D", "", m.group(0))
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                return self._placeholder("CARD", digits)
            return m.group(0)

        text = _CARD.sub(card, text)
        text = _IPV4.sub(lambda m: self._placeholder("IP", m.group(0)), text)
        text = _IPV6.sub(lambda m: self._placeholder("IP", m.group(0)), text)
        text = _PHONE.sub(lambda m: self._placeholder("PHONE", re.sub(r"\D", "", m.group(0))[-10:]), text)
        text = _ADDRESS.sub(lambda m: self._placeholder("ADDRESS", m.group(0)), text)
        if self._name_re is not None:
            text = self._name_re.sub(lambda m: self._placeholder("NAME", self._name_key(m.group(0))), text)
        return text

    def _name_key(self, found: str) -> str:
        # "Maria", "Maria Garcia" and "Garcia" are one person: key every part by the full name that contains it
        for full in self.names:
            if full and found.lower() in full.lower().split() + [full.lower()]:
                return full
        return found


def scrub_messages(messages: list[dict], names: Iterable[str] = ()) -> tuple[list[dict], Counter]:
    """Scrub every message of one conversation; returns the new messages and counts per PII type."""
    scrubber = Scrubber(names=[n for n in names if n])
    out = [{**m, "content": scrubber.scrub(m["content"])} for m in messages]
    return out, scrubber.counts
