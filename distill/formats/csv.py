"""CSV / TSV: one row per message, grouped into conversations by a conversation-id column.

Columns are found by name (case-insensitive; see CsvColumns) or mapped by the caller. The role column
is kept as spelled ("customer", "agent" ...) for distill.normalize's role map; the other non-empty
columns of a conversation's rows are metadata. Spreadsheets save in legacy code pages, so the text
encoding is chosen by distill.encoding's full rules, and rows with undecodable bytes are rejected
by conversation, never stored with replacement characters.
"""

from __future__ import annotations

import csv  # the standard library's: imports are absolute, this module is distill.formats.csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from assistant.errors import InputError
from distill.encoding import Encoding, choose, decode, has_undecodable
from distill.formats.common import Bad, Item, Note, Parsed, Sample

DESCRIPTION = "CSV/TSV (one row per message)"


@dataclass
class CsvColumns:
    """Which CSV columns hold what; matched case-insensitively, first present wins."""

    conversation: list[str] = field(default_factory=lambda: ["conversation_id", "conversation", "ticket_id", "thread_id", "session_id", "chat_id", "id"])
    role: list[str] = field(default_factory=lambda: ["role", "speaker", "sender", "author", "from", "author_type", "sender_type"])
    text: list[str] = field(default_factory=lambda: ["text", "content", "message", "body", "value", "utterance"])
    timestamp: list[str] = field(default_factory=lambda: ["timestamp", "created_at", "time", "date", "sent_at"])

    @classmethod
    def from_mapping(cls, mapping: dict[str, str]) -> "CsvColumns":
        cols = cls()
        for key, column in mapping.items():
            if not hasattr(cols, key):
                raise InputError(f"unknown CSV column role {key!r}; use conversation, role, text or timestamp")
            setattr(cols, key, [column])
        return cols


def sniff(sample: Sample) -> bool:
    """A .csv or .tsv file that reads as text (the header is checked when read, where a missing column is named)."""
    return sample.path.suffix.lower() in (".csv", ".tsv") and bool(sample.head)


def _decoded(path: Path, encoding: Encoding | None) -> tuple[str, Encoding]:
    raw = path.read_bytes()
    enc = encoding or choose(raw, legacy=True)
    text = decode(raw, enc, path.name)
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise InputError(f"{path.name}: line {line}: a NUL character; this looks like a binary file or the wrong encoding, "
                         "not a CSV export")
    return text, enc


@dataclass
class _Header:
    """The columns found for each part of a message."""

    conversation: str
    role: str
    text: str
    timestamp: str | None

    @classmethod
    def find(cls, reader: csv.DictReader, columns: CsvColumns, name: str) -> "_Header":
        try:
            fieldnames = reader.fieldnames or []
        except csv.Error as exc:
            raise InputError(f"{name}: line 1: {exc}") from None
        if not any(h and h.strip() for h in fieldnames):
            raise InputError(f"{name}: the file is empty (no header row, no records); nothing imported")
        header = {h.lower().strip(): h for h in fieldnames if h}

        def pick(options: list[str]) -> str | None:
            return next((header[o.lower()] for o in options if o.lower() in header), None)

        found = cls(pick(columns.conversation), pick(columns.role), pick(columns.text), pick(columns.timestamp))
        missing = [part for part, col in (("conversation id", found.conversation), ("role/speaker", found.role),
                                          ("text", found.text)) if col is None]
        if missing:
            raise InputError(
                f"{name}: no column for {', '.join(missing)}; columns are {', '.join(fieldnames)}. "
                "Map them with --csv-columns conversation=...,role=...,text=..."
            )
        return found


def _rows(reader: csv.DictReader, name: str) -> Iterator[tuple[int, dict]]:
    """(line where the row starts, row): a quoted field may span lines."""
    end = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"{name}: line {reader.line_num}: {exc}") from None
        n, end = end + 1, reader.line_num
        yield n, row


def read(path: Path, columns: CsvColumns | None = None, delimiter: str | None = None,
         encoding: Encoding | None = None, **_) -> Iterator[Item]:
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    text, enc = _decoded(path, encoding)
    if not enc.is_plain_utf8:
        yield Note(f"encoding: {enc.describe()}")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    cols = _Header.find(reader, columns or CsvColumns(), path.name)
    conversations: dict[str, dict] = {}
    damaged: dict[str, int] = {}  # conversation id -> first line with bytes that are not UTF-8
    for n, row in _rows(reader, path.name):
        if None in row:
            yield Bad(f"line {n}", "more fields than the header has")
            continue
        conv_id = (row.get(cols.conversation) or "").strip()
        if not conv_id:
            yield Bad(f"line {n}", f"empty {cols.conversation}")
            continue
        if enc.damaged and any(has_undecodable(f"{k}{v}") for k, v in row.items()):
            if has_undecodable(conv_id):
                yield Bad(f"line {n}", "bytes that are not valid UTF-8 in the conversation id")
            else:
                damaged.setdefault(conv_id, n)
            continue
        _add_message(conversations.setdefault(conv_id, {"messages": [], "metadata": {"conversation_id": conv_id},
                                                        "line": n}), row, cols)
    yield from _grouped(conversations, damaged)


def _add_message(conv: dict, row: dict, cols: _Header) -> None:
    msg = {"role": (row.get(cols.role) or "").strip().lower(), "content": row.get(cols.text) or ""}
    if cols.timestamp and row.get(cols.timestamp):
        msg["timestamp"] = row[cols.timestamp]
    conv["messages"].append(msg)
    for k, v in row.items():
        if k not in (cols.conversation, cols.role, cols.text, cols.timestamp) and v:
            conv["metadata"].setdefault(k, v)


def _grouped(conversations: dict[str, dict], damaged: dict[str, int]) -> Iterator[Item]:
    for conv_id, conv in conversations.items():
        where = f"conversation {conv_id} (from line {conv.pop('line')})"
        if conv_id in damaged:
            # a message missing from the middle would teach the wrong thing: the whole conversation is left out
            yield Bad(where, f"line {damaged[conv_id]} has bytes that are not valid UTF-8 (the rest of the file is); "
                             "fix or re-save the file as UTF-8")
        else:
            yield Parsed(where, conv)
    for conv_id, line in damaged.items():
        if conv_id not in conversations:
            yield Bad(f"conversation {conv_id} (line {line})", "bytes that are not valid UTF-8 (the rest of the file is)")
