"""Normalise a raw conversation: roles, HTML, Unicode, whitespace, spreadsheet formulas, merged turns.

The rules, in order: roles mapped to user / assistant (system kept apart, anything else rejected);
HTML turned into plain text; Unicode NFKC-normalised and control characters removed; whitespace
collapsed (paragraph breaks kept); cells that a spreadsheet would run as a formula (=cmd|..., @SUM(...))
defused; very long messages cut; empty messages dropped; consecutive same-role messages merged.
A conversation without at least one user and one assistant message is rejected with a reason.
"""

from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser

from assistant.errors import InputError

MAX_MESSAGE_CHARS = 8000

ROLE_MAP = {
    "user": "user", "customer": "user", "human": "user", "client": "user", "requester": "user", "contact": "user",
    "end-user": "user", "end_user": "user", "visitor": "user", "lead": "user",
    "assistant": "assistant", "agent": "assistant", "gpt": "assistant", "bot": "assistant", "admin": "assistant",
    "support": "assistant", "operator": "assistant", "staff": "assistant", "model": "assistant",
    "system": "system", "developer": "system",
}

_TAG = re.compile(r"<\s*/?\s*(p|div|br|span|a|b|i|strong|em|ul|ol|li|h[1-6]|table|tr|td|html|body|img|blockquote|pre|code)\b[^>]*>", re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u2028\u2029\ufeff]")
_FORMULA = re.compile(r"^[=+\-@\t\r]+(?=[A-Za-z_(@\"'])(?=.*[(|!])")


class _TextExtractor(HTMLParser):
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def strip_html(text: str) -> str:
    if not _TAG.search(text):
        return html.unescape(text) if "&" in text else text
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def clean_text(text: str) -> tuple[str, dict]:
    """Plain, normalised text of one message, and what was done to it (for the import summary)."""
    notes = {}
    text = strip_html(text)
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub("", text)
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    if _FORMULA.match(text):
        text = _FORMULA.sub("", text)
        notes["formula_defused"] = 1
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS].rstrip() + " […]"
        notes["truncated"] = 1
    return text, notes


def normalise(messages: list[dict]) -> tuple[str, list[dict], dict]:
    """(system text, user/assistant messages, notes). Raises InputError when the conversation is unusable."""
    system_parts, out, notes = [], [], {}
    for i, m in enumerate(messages):
        role = ROLE_MAP.get(str(m.get("role", "")).strip().lower())
        if role is None:
            raise InputError(f"message {i + 1} has an unknown role {str(m.get('role'))[:30]!r}")
        text, n = clean_text(str(m.get("content") or ""))
        for k, v in n.items():
            notes[k] = notes.get(k, 0) + v
        if not text:
            continue
        if role == "system":
            system_parts.append(text)
        elif out and out[-1]["role"] == role:
            out[-1]["content"] += "\n\n" + text
        else:
            out.append({"role": role, "content": text})
    roles = {m["role"] for m in out}
    if "user" not in roles or "assistant" not in roles:
        missing = " and ".join(r for r in ("user", "assistant") if r not in roles)
        raise InputError(f"no {missing} message (a conversation needs at least one of each)")
    return "\n".join(system_parts), out, notes
