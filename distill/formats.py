"""Readers for the transcript formats support teams export, and format detection.

Every reader streams `Parsed(where, conversation)` or `Bad(where, reason)` items, one per record, so a
malformed record is reported with its place ("line 12", "ticket 4411") and never stops the others.
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

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from assistant.errors import InputError

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

def _json_loads(raw: bytes | str):
    if len(raw) > MAX_RECORD_BYTES:
        raise ValueError(f"record is larger than {MAX_RECORD_BYTES // (1024 * 1024)} MB")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} (column {exc.colno})") from None


def iter_json_records(path: Path, list_keys: tuple[str, ...] = ()) -> Iterator[tuple[str, object]]:
    """Records of a JSONL file (one per line) or a JSON file (an array, or an object holding one under list_keys)."""
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip()
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    if not is_jsonl and head[:1] not in (b"[", b"{"):
        raise InputError(f"{path.name}: not JSON (starts with {head[:20]!r})")
    if not is_jsonl and head[:1] == b"{":
        # an object: either a single JSON document with a list inside, or JSONL whose lines are objects
        with open(path, "rb") as fh:
            first_line = fh.readline()
        try:
            json.loads(first_line)
            whole_is_one_line = first_line.strip() and path.stat().st_size <= len(first_line) + 2
            is_jsonl = not whole_is_one_line
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            is_jsonl = False
    if is_jsonl:
        with open(path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield f"line {n}", _json_loads(line)
                except ValueError as exc:
                    yield f"line {n}", exc
        return
    try:
        doc = _json_loads(path.read_bytes())
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


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts
        return "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in value)
    return str(value)


# ---- readers ---------------------------------------------------------------------------------

def read_openai(path: Path, **_) -> Iterator[Parsed | Bad]:
    for where, rec in iter_json_records(path, ("data", "conversations")):
        if isinstance(rec, Exception):
            yield Bad(where, str(rec))
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


def read_sharegpt(path: Path, **_) -> Iterator[Parsed | Bad]:
    for where, rec in iter_json_records(path, ("data",)):
        if isinstance(rec, Exception):
            yield Bad(where, str(rec))
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


def read_csv(path: Path, columns: CsvColumns | None = None, delimiter: str | None = None, **_) -> Iterator[Parsed | Bad]:
    columns = columns or CsvColumns()
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # keep going with what can be read; the damaged rows are reported below
        text = raw.decode("utf-8-sig", errors="replace")
        yield Bad("file", f"invalid UTF-8 at byte {exc.start}; undecodable bytes were replaced")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = {h.lower().strip(): h for h in (reader.fieldnames or []) if h}

    def pick(options: list[str]) -> str | None:
        return next((header[o.lower()] for o in options if o.lower() in header), None)

    c_conv, c_role, c_text, c_time = pick(columns.conversation), pick(columns.role), pick(columns.text), pick(columns.timestamp)
    missing = [name for name, col in (("conversation id", c_conv), ("role/speaker", c_role), ("text", c_text)) if col is None]
    if missing:
        raise InputError(
            f"{path.name}: no column for {', '.join(missing)}; columns are {', '.join(reader.fieldnames or [])}. "
            "Map them with --csv-columns conversation=...,role=...,text=..."
        )
    conversations: dict[str, dict] = {}
    for n, row in enumerate(reader, 2):  # line 1 is the header
        if None in row:
            yield Bad(f"line {n}", "more fields than the header has")
            continue
        conv_id = (row.get(c_conv) or "").strip()
        if not conv_id:
            yield Bad(f"line {n}", f"empty {c_conv}")
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
        yield Parsed(f"conversation {conv_id} (from line {conv.pop('line')})", conv)


def read_zendesk(path: Path, **_) -> Iterator[Parsed | Bad]:
    for where, rec in iter_json_records(path, ("tickets", "results")):
        if isinstance(rec, Exception):
            yield Bad(where, str(rec))
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


def read_intercom(path: Path, **_) -> Iterator[Parsed | Bad]:
    for where, rec in iter_json_records(path, ("conversations", "data")):
        if isinstance(rec, Exception):
            yield Bad(where, str(rec))
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


def read_freshdesk(path: Path, **_) -> Iterator[Parsed | Bad]:
    for where, rec in iter_json_records(path, ("tickets",)):
        if isinstance(rec, Exception):
            yield Bad(where, str(rec))
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

def _first_record(path: Path):
    for where, rec in iter_json_records(path, ("tickets", "conversations", "results", "data")):
        return rec
    return None


def detect_format(path: Path) -> str:
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
    if b"\x00" in head:
        raise InputError(f"{path.name}: looks like a binary file, not a transcript export; accepted formats: {', '.join(FORMATS)}")
    if suffix in (".csv", ".tsv"):
        return "csv"
    saw = f"starts with {head[:60]!r}"
    if head.lstrip()[:1] in (b"{", b"["):
        try:
            rec = _first_record(path)
        except InputError:
            rec = None
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
            saw = f"records with keys {', '.join(sorted(keys)[:12])}"
        elif rec is not None:
            saw = f"a first record of type {type(rec).__name__}"
    raise InputError(
        f"{path.name}: could not recognise the format ({saw}). Accepted: OpenAI chat JSONL (messages), ShareGPT "
        "(conversations with from/value), Hugging Face datasets (folder or parquet), CSV/TSV (one row per message), "
        "Zendesk tickets with comments, Intercom conversations, Freshdesk tickets with conversations. "
        "Use --format to force one."
    )


def read(path: Path, fmt: str | None = None, **options) -> tuple[str, Iterator[Parsed | Bad]]:
    fmt = fmt or detect_format(path)
    if fmt == "tsv":
        fmt, options["delimiter"] = "csv", "\t"
    if fmt not in READERS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    return fmt, READERS[fmt](path, **options)
