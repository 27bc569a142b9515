"""Readers for the transcript formats support teams export, and format detection.

Every reader streams `Parsed(where, conversation)` or `Bad(where, reason)` items, one per record, so a
malformed record is reported with its place ("line 12", "ticket 4411") and never stops the others; a
`Note` says something about the whole file (its text encoding when it is not plain UTF-8, see
distill.encoding). Detection reports the parse error of the first records when none can be read,
rather than guessing at a format.
A conversation here is `{"messages": [{"role", "content", "timestamp"?}], "metadata": {...}}` with
roles still as the source spelled them; `distill.normalize` maps them.

Formats (field names from the vendors' documented exports):
- openai:    JSONL, one {"messages": [{"role", "content"}], "metadata"?: {...}} per line
- sharegpt:  JSON array or JSONL of {"conversations": [{"from", "value"}], ...}
- hf:        a Hugging Face dataset saved with save_to_disk (folder), or parquet / JSON(L) with a messages column
- csv / tsv: one row per message; columns mappable (conversation id, role/speaker, text, timestamp)
- zendesk:   tickets with "comments" (public flag, author_id vs requester_id, body / html_body); "metadata" (IPs) dropped
- intercom:  conversations with "source" plus "conversation_parts" (part_type, author.type, HTML body)
- freshdesk: tickets with "conversations" entries ("incoming", "private", "body_text" / "body")
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from assistant.errors import InputError
from distill.encoding import SAMPLE_BYTES, UTF8, Encoding, choose, decode, forced, has_undecodable, sniff_unicode

FORMATS = ("openai", "sharegpt", "hf", "csv", "zendesk", "intercom", "freshdesk")
MAX_RECORD_BYTES = 20 * 1024 * 1024  # one JSON line or record larger than this is refused, not parsed


@dataclass
class Parsed:
    where: str
    conversation: dict


@dataclass
class Bad:
    where: str
    reason: str


@dataclass
class Note:
    """Not a record: something the import summary should say about the whole file (e.g. its encoding)."""

    text: str


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


# ---- helpers ---------------------------------------------------------------------------------

def _json_loads(raw: bytes | str, whole: bool = False):
    """One JSON value; a ValueError names the reason and the column (and line, for a whole document)."""
    if len(raw) > MAX_RECORD_BYTES:
        raise ValueError(f"record is larger than {MAX_RECORD_BYTES // (1024 * 1024)} MB")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            where = f"line {line}, byte {exc.start}" if whole else f"byte {exc.start}"
            raise ValueError(f"invalid UTF-8 at {where} (JSON must be UTF-8 or UTF-16/32)") from None
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}" if whole else f"column {exc.colno}"
        raise ValueError(f"invalid JSON at {where}: {exc.msg}") from None


def _decoded_head(path: Path, enc: Encoding, size: int = 4096) -> str:
    with open(path, "rb") as fh:
        fh.seek(enc.bom)
        raw = fh.read(size)
    return codecs.getincrementaldecoder(enc.codec)(errors="replace").decode(raw)


def _text_lines(path: Path, enc: Encoding) -> Iterator[tuple[int, str]]:
    """Numbered lines of a UTF-16/32 file; a line with bytes the codec cannot decode carries U+FFFD."""
    with open(path, "rb") as raw:
        raw.seek(enc.bom)
        with io.TextIOWrapper(raw, encoding=enc.codec, errors="replace", newline=None) as fh:
            yield from enumerate(fh, 1)


def json_encoding(path: Path, encoding: Encoding | None = None) -> Encoding:
    """JSON is UTF-8 unless a BOM or the zero-byte pattern of UTF-16/32 says otherwise (RFC 8259)."""
    if encoding is not None:
        return encoding
    with open(path, "rb") as fh:
        head = fh.read(SAMPLE_BYTES)
    return sniff_unicode(head) or UTF8


def iter_json_records(path: Path, list_keys: tuple[str, ...] = (), encoding: Encoding | None = None
                      ) -> Iterator[tuple[str, object]]:
    """Records of a JSONL file (one per line) or a JSON file (an array, or an object holding one under list_keys).

    A record that cannot be parsed comes back as a ValueError naming the reason; a text encoding other
    than plain UTF-8 is announced first as ("file", Note).
    """
    enc = json_encoding(path, encoding)
    if not enc.is_plain_utf8:
        yield "file", Note(f"encoding: {enc.describe()}")
    utf8 = enc.codec in ("utf-8", "utf-8-sig")
    head = _decoded_head(path, enc).lstrip()
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    if not is_jsonl and head[:1] not in ("[", "{"):
        raise InputError(f"{path.name}: not JSON (starts with {head[:20]!r})")
    if not is_jsonl and head[:1] == "{":
        # an object: either a single JSON document with a list inside, or JSONL whose lines are objects
        with closing(_lines(path, enc, utf8)) as lines:
            first_line = next(lines, (0, b""))[1]
            try:
                json.loads(first_line)
                # more than one line holding something: JSONL; the whole document on one line: JSON
                is_jsonl = bool(first_line.strip()) and any(line.strip() for _, line in lines)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                is_jsonl = False
    if is_jsonl:
        for n, line in _lines(path, enc, utf8):
            if not line.strip():
                continue
            if not utf8 and "\ufffd" in line:
                yield f"line {n}", ValueError(f"bytes that are not valid {enc.label}")
                continue
            try:
                yield f"line {n}", _json_loads(line)
            except ValueError as exc:
                yield f"line {n}", exc
        return
    raw = path.read_bytes()[enc.bom:]
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        if not utf8:
            try:
                raw = raw.decode(enc.codec)
            except UnicodeDecodeError as exc:
                raise ValueError(f"invalid {enc.label} at byte {exc.start + enc.bom}") from None
        doc = _json_loads(raw, whole=True)
    except ValueError as exc:
        raise InputError(f"{path.name}: {exc}") from None
    if isinstance(doc, dict):
        for key in list_keys:
            if isinstance(doc.get(key), list):
                doc = doc[key]
                break
        else:
            doc = [doc]
    if not isinstance(doc, list):
        raise InputError(f"{path.name}: expected a list of records")
    for n, record in enumerate(doc, 1):
        yield f"record {n}", record


def _lines(path: Path, enc: Encoding, utf8: bool) -> Iterator[tuple[int, bytes | str]]:
    if not utf8:
        yield from _text_lines(path, enc)
        return
    with open(path, "rb") as fh:
        fh.seek(enc.bom)
        for n, line in enumerate(fh, 1):
            yield n, (line[3:] if n == 1 and line.startswith(codecs.BOM_UTF8) else line)


def _passed(where: str, rec) -> "Bad | Note":
    """What a reader yields for a record iter_json_records could not parse, or for its encoding note."""
    return rec if isinstance(rec, Note) else Bad(where, str(rec))


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts
        return "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in value)
    return str(value)


# ---- readers ---------------------------------------------------------------------------------

def read_openai(path: Path, encoding: Encoding | None = None, **_) -> Iterator[Parsed | Bad | Note]:
    for where, rec in iter_json_records(path, ("data", "conversations"), encoding):
        if isinstance(rec, (Exception, Note)):
            yield _passed(where, rec)
        elif not isinstance(rec, dict) or not isinstance(rec.get("messages"), list):
            yield Bad(where, 'expected an object with a "messages" list')
        else:
            msgs = []
            for m in rec["messages"]:
                if not isinstance(m, dict) or "role" not in m:
                    yield Bad(where, 'every message needs a "role"')
                    break
                msgs.append({"role": str(m["role"]), "content": _text(m.get("content"))})
            else:
                meta = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
                meta = {**{k: v for k, v in rec.items() if k not in ("messages", "metadata")}, **meta}
                yield Parsed(where, {"messages": msgs, "metadata": meta})


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
                  "bing": "assistant", "bard": "assistant", "model": "assistant", "system": "system"}


def read_sharegpt(path: Path, encoding: Encoding | None = None, **_) -> Iterator[Parsed | Bad | Note]:
    for where, rec in iter_json_records(path, ("data",), encoding):
        if isinstance(rec, (Exception, Note)):
            yield _passed(where, rec)
            continue
        turns = rec.get("conversations") if isinstance(rec, dict) else None
        if not isinstance(turns, list):
            yield Bad(where, 'expected an object with a "conversations" list')
            continue
        msgs = []
        for t in turns:
            if not isinstance(t, dict) or "from" not in t:
                yield Bad(where, 'every turn needs "from" and "value"')
                break
            msgs.append({"role": SHAREGPT_ROLES.get(str(t["from"]).lower(), str(t["from"])), "content": _text(t.get("value"))})
        else:
            meta = {k: v for k, v in rec.items() if k != "conversations"}
            if "system" in meta and isinstance(meta["system"], str):
                msgs.insert(0, {"role": "system", "content": meta.pop("system")})
            yield Parsed(where, {"messages": msgs, "metadata": meta})


def read_hf(path: Path, **_) -> Iterator[Parsed | Bad]:
    import datasets

    try:
        if path.is_dir():
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                ds = datasets.concatenate_datasets([ds[k] for k in ds])
        elif path.suffix.lower() == ".parquet":
            ds = datasets.Dataset.from_parquet(str(path))
        else:
            ds = datasets.Dataset.from_json(str(path))
    except Exception as exc:
        raise InputError(f"{path}: could not read as a Hugging Face dataset: {exc}") from None
    column = next((c for c in ("messages", "conversations", "conversation", "dialog", "chat") if c in ds.column_names), None)
    if column is None:
        raise InputError(f"{path}: no messages column; columns are {', '.join(ds.column_names)}")
    for n, rec in enumerate(ds, 1):
        turns = rec[column]
        if not isinstance(turns, list):
            yield Bad(f"row {n}", f"{column} is not a list")
            continue
        msgs = []
        for t in turns:
            if isinstance(t, dict) and ("role" in t or "from" in t):
                role = t.get("role") or SHAREGPT_ROLES.get(str(t.get("from")).lower(), t.get("from"))
                msgs.append({"role": str(role), "content": _text(t.get("content", t.get("value")))})
        meta = {k: v for k, v in rec.items() if k != column and isinstance(v, (str, int, float, bool, list, dict, type(None)))}
        yield Parsed(f"row {n}", {"messages": msgs, "metadata": meta})


CSV_ROLES = {"customer": "user", "user": "user", "client": "user", "end-user": "user", "end_user": "user", "requester": "user",
             "contact": "user", "visitor": "user", "human": "user", "agent": "assistant", "assistant": "assistant",
             "support": "assistant", "admin": "assistant", "operator": "assistant", "staff": "assistant", "bot": "assistant",
             "system": "system"}


def read_csv(path: Path, columns: CsvColumns | None = None, delimiter: str | None = None,
             encoding: Encoding | None = None, **_) -> Iterator[Parsed | Bad | Note]:
    columns = columns or CsvColumns()
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    raw = path.read_bytes()
    enc = encoding or choose(raw, legacy=True)
    text = decode(raw, enc, path.name)
    if not enc.is_plain_utf8:
        yield Note(f"encoding: {enc.describe()}")
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise InputError(f"{path.name}: line {line}: a NUL character; this looks like a binary file or the wrong encoding, "
                         "not a CSV export")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        fieldnames = reader.fieldnames or []
    except csv.Error as exc:
        raise InputError(f"{path.name}: line 1: {exc}") from None
    if not any(h and h.strip() for h in fieldnames):
        raise InputError(f"{path.name}: the file is empty (no header row, no records); nothing imported")
    header = {h.lower().strip(): h for h in fieldnames if h}

    def pick(options: list[str]) -> str | None:
        return next((header[o.lower()] for o in options if o.lower() in header), None)

    c_conv, c_role, c_text, c_time = pick(columns.conversation), pick(columns.role), pick(columns.text), pick(columns.timestamp)
    missing = [name for name, col in (("conversation id", c_conv), ("role/speaker", c_role), ("text", c_text)) if col is None]
    if missing:
        raise InputError(
            f"{path.name}: no column for {', '.join(missing)}; columns are {', '.join(fieldnames)}. "
            "Map them with --csv-columns conversation=...,role=...,text=..."
        )
    conversations: dict[str, dict] = {}
    damaged: dict[str, int] = {}  # conversation id -> first line with bytes that are not UTF-8
    end = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InputError(f"{path.name}: line {reader.line_num}: {exc}") from None
        n, end = end + 1, reader.line_num  # a quoted field may span lines: report where the row starts
        if None in row:
            yield Bad(f"line {n}", "more fields than the header has")
            continue
        conv_id = (row.get(c_conv) or "").strip()
        if not conv_id:
            yield Bad(f"line {n}", f"empty {c_conv}")
            continue
        if enc.damaged and any(has_undecodable(f"{k}{v}") for k, v in row.items()):
            if has_undecodable(conv_id):
                yield Bad(f"line {n}", "bytes that are not valid UTF-8 in the conversation id")
            else:
                damaged.setdefault(conv_id, n)
            continue
        role = (row.get(c_role) or "").strip().lower()
        msg = {"role": CSV_ROLES.get(role, role), "content": row.get(c_text) or ""}
        if c_time and row.get(c_time):
            msg["timestamp"] = row[c_time]
        conv = conversations.setdefault(conv_id, {"messages": [], "metadata": {"conversation_id": conv_id}, "line": n})
        conv["messages"].append(msg)
        extras = {k: v for k, v in row.items() if k not in (c_conv, c_role, c_text, c_time) and v}
        for k, v in extras.items():
            conv["metadata"].setdefault(k, v)
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


def read_zendesk(path: Path, encoding: Encoding | None = None, **_) -> Iterator[Parsed | Bad | Note]:
    for where, rec in iter_json_records(path, ("tickets", "results"), encoding):
        if isinstance(rec, (Exception, Note)):
            yield _passed(where, rec)
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("comments"), list):
            yield Bad(where, 'expected a ticket with a "comments" list')
            continue
        ticket_id = rec.get("id")
        where = f"ticket {ticket_id}" if ticket_id is not None else where
        requester = rec.get("requester_id")
        requester_obj = rec.get("requester") if isinstance(rec.get("requester"), dict) else {}
        requester = requester if requester is not None else requester_obj.get("id")
        msgs = []
        for c in rec["comments"]:
            if not isinstance(c, dict):
                continue
            if c.get("public") is False:
                continue  # internal notes never reach a customer or a model
            author = c.get("author_id")
            role = "user" if (author == requester and requester is not None) else "assistant"
            msgs.append({"role": role, "content": _text(c.get("plain_body") or c.get("body") or c.get("html_body")),
                         "timestamp": c.get("created_at")})
        satisfaction = rec.get("satisfaction_rating") if isinstance(rec.get("satisfaction_rating"), dict) else {}
        meta = {
            "conversation_id": ticket_id, "subject": rec.get("subject"), "tags": rec.get("tags") or [],
            "status": rec.get("status"), "channel": (rec.get("via") or {}).get("channel") if isinstance(rec.get("via"), dict) else None,
            "created_at": rec.get("created_at"), "resolution": "resolved" if rec.get("status") in ("solved", "closed") else rec.get("status"),
            "csat": {"good": 5, "bad": 1}.get(satisfaction.get("score")),
            "customer_name": requester_obj.get("name"),
        }
        yield Parsed(where, {"messages": msgs, "metadata": meta})


def read_intercom(path: Path, encoding: Encoding | None = None, **_) -> Iterator[Parsed | Bad | Note]:
    for where, rec in iter_json_records(path, ("conversations", "data"), encoding):
        if isinstance(rec, (Exception, Note)):
            yield _passed(where, rec)
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("source"), dict):
            yield Bad(where, 'expected a conversation with a "source" object')
            continue
        conv_id = rec.get("id")
        where = f"conversation {conv_id}" if conv_id is not None else where
        parts_obj = rec.get("conversation_parts") or {}
        parts = parts_obj.get("conversation_parts", []) if isinstance(parts_obj, dict) else parts_obj
        source = rec["source"]
        names = []

        def role_of(author: dict) -> str:
            kind = (author or {}).get("type", "")
            if kind in ("user", "lead", "contact"):
                if author.get("name"):
                    names.append(author["name"])
                return "user"
            return "assistant"  # admin (agent) and bot (Fin, operator) both answer for the company

        msgs = [{"role": role_of(source.get("author")), "content": _text(source.get("body")), "timestamp": rec.get("created_at")}]
        for p in parts if isinstance(parts, list) else []:
            if not isinstance(p, dict):
                continue
            if p.get("part_type") in ("note", "note_and_reopen") or not p.get("body"):
                continue  # internal notes and state changes (assignment, close) carry no message
            msgs.append({"role": role_of(p.get("author")), "content": _text(p.get("body")), "timestamp": p.get("created_at")})
        rating = rec.get("conversation_rating") if isinstance(rec.get("conversation_rating"), dict) else {}
        tags = rec.get("tags", {})
        tags = [t.get("name") for t in tags.get("tags", [])] if isinstance(tags, dict) else tags
        meta = {"conversation_id": conv_id, "created_at": rec.get("created_at"), "channel": source.get("delivered_as") or source.get("type"),
                "tags": tags, "resolution": "resolved" if rec.get("state") == "closed" else rec.get("state"),
                "csat": rating.get("rating"), "customer_name": names[0] if names else None}
        yield Parsed(where, {"messages": msgs, "metadata": meta})


FRESHDESK_SOURCES = {1: "email", 2: "portal", 3: "phone", 7: "chat", 9: "feedback_widget", 10: "outbound_email"}


def read_freshdesk(path: Path, encoding: Encoding | None = None, **_) -> Iterator[Parsed | Bad | Note]:
    for where, rec in iter_json_records(path, ("tickets",), encoding):
        if isinstance(rec, (Exception, Note)):
            yield _passed(where, rec)
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("conversations"), list):
            yield Bad(where, 'expected a ticket with a "conversations" list')
            continue
        ticket_id = rec.get("id")
        where = f"ticket {ticket_id}" if ticket_id is not None else where
        msgs = []
        if rec.get("description_text") or rec.get("description"):
            msgs.append({"role": "user", "content": _text(rec.get("description_text") or rec.get("description")),
                         "timestamp": rec.get("created_at")})
        for c in rec["conversations"]:
            if not isinstance(c, dict) or c.get("private"):
                continue  # private notes are internal
            msgs.append({"role": "user" if c.get("incoming") else "assistant",
                         "content": _text(c.get("body_text") or c.get("body")), "timestamp": c.get("created_at")})
        requester = rec.get("requester") if isinstance(rec.get("requester"), dict) else {}
        status = rec.get("status")
        meta = {"conversation_id": ticket_id, "subject": rec.get("subject"), "tags": rec.get("tags") or [],
                "channel": FRESHDESK_SOURCES.get(rec.get("source"), rec.get("source")), "created_at": rec.get("created_at"),
                "resolution": {4: "resolved", 5: "closed"}.get(status, status), "customer_name": requester.get("name")}
        yield Parsed(where, {"messages": msgs, "metadata": meta})


READERS = {"openai": read_openai, "sharegpt": read_sharegpt, "hf": read_hf, "csv": read_csv, "zendesk": read_zendesk,
           "intercom": read_intercom, "freshdesk": read_freshdesk}


# ---- detection -------------------------------------------------------------------------------

DETECT_RECORDS = 20  # records looked at for one that shows the format, past any that do not parse


def _first_record(path: Path, encoding: Encoding | None = None) -> tuple[object, tuple[str, Exception] | None]:
    """The first record that parses (None if none of the first few do), and the first parse error seen."""
    error = None
    for n, (where, rec) in enumerate(iter_json_records(path, ("tickets", "conversations", "results", "data"), encoding)):
        if isinstance(rec, Note):
            continue
        if isinstance(rec, Exception):
            error = error or (where, rec)
        else:
            return rec, error
        if n >= DETECT_RECORDS:
            break
    return None, error


def detect_format(path: Path, encoding: Encoding | None = None) -> str:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        if any((path / f).exists() for f in ("dataset_info.json", "dataset_dict.json", "state.json")):
            return "hf"
        raise InputError(f"{path}: a folder, but not a saved Hugging Face dataset (no dataset_info.json or dataset_dict.json)")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "hf"
    with open(path, "rb") as fh:
        head = fh.read(8192)
    enc = encoding or sniff_unicode(head)
    text = _decoded_head(path, enc, 8192) if enc is not None else head.decode("utf-8", errors="replace")
    if "\x00" in text:
        raise InputError(f"{path.name}: looks like a binary file, not a transcript export; accepted formats: {', '.join(FORMATS)}")
    if len(head) < 8192 and not text.replace("\ufeff", "").strip():
        raise InputError(f"{path.name}: the file is empty (no records); nothing imported")
    if suffix in (".csv", ".tsv"):
        return "csv"
    saw = f"starts with {text[:60]!r}"
    if text.lstrip()[:1] in ("{", "["):
        rec, error = _first_record(path, enc)
        if isinstance(rec, dict):
            keys = set(rec)
            if "messages" in keys:
                return "openai"
            if "conversation_parts" in keys or ("source" in keys and rec.get("type") == "conversation"):
                return "intercom"
            if "comments" in keys:
                return "zendesk"
            if isinstance(rec.get("conversations"), list):
                first = next((t for t in rec["conversations"] if isinstance(t, dict)), {})
                if "from" in first or "value" in first:
                    return "sharegpt"
                if {"incoming", "body_text", "private"} & set(first) or "requester_id" in keys:
                    return "freshdesk"
                return "sharegpt"
            saw = f"records with keys {', '.join(sorted(map(str, keys))[:12])}"
        elif rec is not None:
            saw = f"a first record that is a JSON {type(rec).__name__}, not an object"
        elif error is not None:
            where, exc = error
            # the real reason, as --format would have reported it, not a guess about the format
            raise InputError(f"{path.name}: {where}: {exc}; no record in the first {DETECT_RECORDS} could be read, "
                             "so the format could not be detected")
    raise InputError(
        f"{path.name}: could not recognise the format ({saw}). Accepted: OpenAI chat JSONL (messages), ShareGPT "
        "(conversations with from/value), Hugging Face datasets (folder or parquet), CSV/TSV (one row per message), "
        "Zendesk tickets with comments, Intercom conversations, Freshdesk tickets with conversations. "
        "Use --format to force one."
    )


def read(path: Path, fmt: str | None = None, encoding: str | None = None, **options
         ) -> tuple[str, Iterator[Parsed | Bad | Note]]:
    """(format, records): the format detected unless given; `encoding` forces a text encoding (else detected)."""
    enc = forced(encoding) if encoding else None
    fmt = fmt or detect_format(path, enc)
    options["encoding"] = enc
    if fmt == "tsv":
        fmt, options["delimiter"] = "csv", "\t"
    if fmt not in READERS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    return fmt, READERS[fmt](path, **options)
