"""Intercom conversations: the opening message in "source", the replies in "conversation_parts".

Users, leads and contacts are the customer; admins (agents) and bots (Fin, operator) both answer for
the company. Notes and parts without a body (assignment, close) carry no message and are dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from distill.encoding import Encoding
from distill.formats.common import Bad, Item, Parsed, Sample, flat_text, read_records

DESCRIPTION = "Intercom conversations"
LIST_KEYS = ("conversations", "data")
CUSTOMER_TYPES = ("user", "lead", "contact")


def sniff(sample: Sample) -> bool:
    rec = sample.record
    return isinstance(rec, dict) and ("conversation_parts" in rec or ("source" in rec and rec.get("type") == "conversation"))


def read(path: Path, encoding: Encoding | None = None, **_) -> Iterator[Item]:
    return read_records(path, LIST_KEYS, encoding, _conversation)


def _conversation(where: str, rec) -> Parsed | Bad:
    if not isinstance(rec, dict) or not isinstance(rec.get("source"), dict):
        return Bad(where, 'expected a conversation with a "source" object')
    conv_id = rec.get("id")
    parts_obj = rec.get("conversation_parts") or {}
    parts = parts_obj.get("conversation_parts", []) if isinstance(parts_obj, dict) else parts_obj
    source = rec["source"]
    names: list[str] = []  # the customer's, for the PII scrubber

    def role_of(author: dict) -> str:
        if (author or {}).get("type", "") in CUSTOMER_TYPES:
            if author.get("name"):
                names.append(author["name"])
            return "user"
        return "assistant"

    msgs = [{"role": role_of(source.get("author")), "content": flat_text(source.get("body")), "timestamp": rec.get("created_at")}]
    for p in parts if isinstance(parts, list) else []:
        if not isinstance(p, dict) or p.get("part_type") in ("note", "note_and_reopen") or not p.get("body"):
            continue
        msgs.append({"role": role_of(p.get("author")), "content": flat_text(p.get("body")), "timestamp": p.get("created_at")})
    rating = rec.get("conversation_rating") if isinstance(rec.get("conversation_rating"), dict) else {}
    tags = rec.get("tags", {})
    tags = [t.get("name") for t in tags.get("tags", [])] if isinstance(tags, dict) else tags
    meta = {"conversation_id": conv_id, "created_at": rec.get("created_at"), "channel": source.get("delivered_as") or source.get("type"),
            "tags": tags, "resolution": "resolved" if rec.get("state") == "closed" else rec.get("state"),
            "csat": rating.get("rating"), "customer_name": names[0] if names else None}
    return Parsed(f"conversation {conv_id}" if conv_id is not None else where, {"messages": msgs, "metadata": meta})
