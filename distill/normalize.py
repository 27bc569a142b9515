"""Normalise a raw conversation: roles, HTML, Unicode, whitespace, spreadsheet formulas, merged turns.

The rules, in order: roles mapped to user / assistant (system kept apart, anything else rejected);
HTML sanitised by an allow-list (nh3) and turned into plain text, so no script, iframe, SVG, event
handler or javascript: link is ever stored; Unicode NFKC-normalised and control characters removed;
whitespace collapsed (paragraph breaks kept); cells that a spreadsheet would run as a formula
(=cmd|..., -2+3+cmd|..., @SUM(...)) defused; very long messages cut; empty messages dropped;
consecutive same-role messages merged. `clean_field` applies the same sanitising and defusing to
metadata values (every CSV column, subjects, tags).
A conversation without at least one user and one assistant message is rejected with a reason.
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

import nh3

from assistant.errors import InputError

MAX_MESSAGE_CHARS = 8000

# The one role map: readers (distill.formats) keep roles as the export spelled them and this decides,
# lower-cased and stripped. ShareGPT's names (human, gpt, chatgpt, bing, bard, model) are here too.
ROLE_MAP = {
    "user": "user", "customer": "user", "human": "user", "client": "user", "requester": "user", "contact": "user",
    "end-user": "user", "end_user": "user", "visitor": "user", "lead": "user",
    "assistant": "assistant", "agent": "assistant", "gpt": "assistant", "bot": "assistant", "admin": "assistant",
    "support": "assistant", "operator": "assistant", "staff": "assistant", "model": "assistant",
    "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
    "system": "system", "developer": "system",
}

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u2028\u2029\ufeff]")

# Sanitising is an allow-list (nh3, the Rust ammonia sanitiser): only these structural tags survive, with
# no attributes at all, and are then turned into line breaks; every other tag is dropped. Elements whose
# content is code or a foreign document are dropped with their content.
_KEEP_TAGS = {"p", "div", "br", "li", "ul", "ol", "tr", "td", "th", "table", "h1", "h2", "h3", "h4", "h5", "h6",
              "blockquote", "pre"}
_DROP_WITH_CONTENT = {"script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math",
                      "template", "noscript", "noembed", "noframes", "xmp", "textarea", "select", "title", "head"}
_MARKUP = re.compile(r"<[a-zA-Z!/?]|&(#\d+|#[xX][0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]*);?")
# A link a browser or a Markdown renderer would run: removed from plain text too (with what follows it).
_UNSAFE_LINK = re.compile(r"(?:(?:java|vb|live)script\s*:|\bdata\s*:\s*(?:text/html|image/svg\+xml|application/))"
                          r"(?:\([^()\s]*\)|[^()\s])*", re.I)
_TAGLIKE = re.compile(r"<[a-zA-Z!/?]")
MAX_SANITISE_PASSES = 6  # entity-encoded markup is decoded one level per pass; more levels than this is refused

# A cell a spreadsheet would evaluate: it starts (after blanks) with = + - @ (or a tab / CR before one) and
# is not a plain number; "=" starts are always formulas, the others when they call a function, use a DDE
# pipe or reference another sheet (so "- step one", "+1 555 0100" and "@dana thanks!" stay as they are).
_FORMULA_START = re.compile(r"^[\s]*[=+\-@]")
_NUMBER = re.compile(r"^[\s]*[+\-]?[\d\s.,:/%()+\-]*$")
_FORMULA_ACTION = re.compile(r"[A-Za-z_][\w.]*\(|\||![$]?[A-Za-z]{1,3}[$]?\d|^\s*[+\-@]+\s*[=@]")
_FORMULA_PREFIX = re.compile(r"^[\s=+\-@]+")


class _TextExtractor(HTMLParser):
    """Sanitised HTML (only _KEEP_TAGS, no attributes) -> plain text with line breaks where blocks were."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in _KEEP_TAGS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in _KEEP_TAGS and tag not in ("td", "th"):
            self.parts.append("\n")

    def handle_data(self, data):
        self.parts.append(data)


def _html_to_text(text: str) -> str:
    cleaned = nh3.clean(text, tags=_KEEP_TAGS, attributes={}, clean_content_tags=_DROP_WITH_CONTENT,
                        strip_comments=True, link_rel=None)
    parser = _TextExtractor()
    parser.feed(cleaned)
    parser.close()
    return "".join(parser.parts)


def sanitise(text: str) -> tuple[str, bool]:
    """(plain text of a message that may hold HTML, whether it held markup or a code-running link).

    The allow-list sanitiser runs, then the text is taken, repeatedly until nothing changes, so markup
    hidden behind entities (`&lt;script&gt;`) or behind compatibility characters NFKC folds into `<` and
    `>` is sanitised as well; then links that would run code (`javascript:` ...) are removed. Raises
    InputError when the markup does not settle.
    """
    markup = False
    for _ in range(MAX_SANITISE_PASSES):
        text = unicodedata.normalize("NFKC", text)
        if not _MARKUP.search(text):
            break
        markup = markup or bool(_TAGLIKE.search(text))
        plain = _html_to_text(text)
        if plain == text:
            break
        text = plain
    else:
        raise InputError(f"HTML or entities nested more than {MAX_SANITISE_PASSES} levels deep")
    text, links = _UNSAFE_LINK.subn("[link removed]", text)
    return text, markup or bool(links)


def strip_html(text: str) -> str:
    """Plain text of possibly-HTML text, sanitised (see `sanitise`)."""
    return sanitise(text)[0]


def is_formula(value: str) -> bool:
    """Would a spreadsheet evaluate this cell? (see _FORMULA_START above)"""
    if not _FORMULA_START.match(value) or _NUMBER.match(value):
        return False
    return value.lstrip()[0] == "=" or bool(_FORMULA_ACTION.search(value))


def defuse_formula(value: str) -> tuple[str, bool]:
    """(value a spreadsheet will show as text, whether anything was removed): the formula's leading signs go."""
    if not is_formula(value):
        return value, False
    return _FORMULA_PREFIX.sub("", value), True


def clean_field(value: str) -> tuple[str, dict]:
    """A metadata value (CSV column, subject, tag): sanitised and defused like message text, not reflowed."""
    notes = {}
    text, markup = sanitise(value)
    if markup:
        notes["html_sanitised"] = 1
    text = _CONTROL.sub("", text).strip()
    text, defused = defuse_formula(text)
    if defused:
        notes["formula_defused"] = 1
    return text, notes


def clean_text(text: str) -> tuple[str, dict]:
    """Plain, normalised text of one message, and what was done to it (for the import summary)."""
    notes = {}
    text, markup = sanitise(text)
    if markup:
        notes["html_sanitised"] = 1
    text = _CONTROL.sub("", text)
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    text, defused = defuse_formula(text)
    if defused:
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
