"""Freshdesk tickets with their "conversations" (the API's ticket view with include=conversations).

The ticket's description is the customer's first message; a conversation entry is the customer's
when "incoming", the company's otherwise; "private" entries are internal notes and are dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from distill.encoding import Encoding
from distill.formats.common import Bad, Item, Parsed, Sample, flat_text, read_records, scalar

DESCRIPTION = "Freshdesk tickets with conversations"
LIST_KEYS = ("tickets",)
SOURCES = {1: "email", 2: "portal", 3: "phone", 7: "chat", 9: "feedback_widget", 10: "outbound_email"}
STATUSES = {4: "resolved", 5: "closed"}


def sniff(sample: Sample) -> bool:
    """A "conversations" list whose entries look like Freshdesk's, not ShareGPT's from/value turns."""
    rec = sample.record
    if not isinstance(rec, dict) or not isinstance(rec.get("conversations"), list):
        return False
    first = next((t for t in rec["conversations"] if isinstance(t, dict)), {})
    if "from" in first or "value" in first:
        return False
    return bool({"incoming", "body_text", "private"} & set(first)) or "requester_id" in rec


def read(path: Path, encoding: Encoding | None = None, **_) -> Iterator[Item]:
    return read_records(path, LIST_KEYS, encoding, _ticket)


def _ticket(where: str, rec) -> Parsed | Bad:
    if not isinstance(rec, dict) or not isinstance(rec.get("conversations"), list):
        return Bad(where, 'expected a ticket with a "conversations" list')
    ticket_id = rec.get("id")
    msgs = []
    if rec.get("description_text") or rec.get("description"):
        msgs.append({"role": "user", "content": flat_text(rec.get("description_text") or rec.get("description")),
                     "timestamp": rec.get("created_at")})
    for c in rec["conversations"]:
        if not isinstance(c, dict) or c.get("private"):
            continue
        msgs.append({"role": "user" if c.get("incoming") else "assistant",
                     "content": flat_text(c.get("body_text") or c.get("body")), "timestamp": c.get("created_at")})
    requester = rec.get("requester") if isinstance(rec.get("requester"), dict) else {}
    status, source = scalar(rec.get("status")), scalar(rec.get("source"))
    meta = {"conversation_id": ticket_id, "subject": rec.get("subject"), "tags": rec.get("tags") or [],
            "channel": SOURCES.get(source, source), "created_at": rec.get("created_at"),
            "resolution": STATUSES.get(status, status), "customer_name": requester.get("name")}
    return Parsed(f"ticket {ticket_id}" if ticket_id is not None else where, {"messages": msgs, "metadata": meta})
