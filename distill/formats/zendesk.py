"""Zendesk tickets with their "comments" (the Support API's ticket export and incremental exports).

A comment by an end user is the user's: the ticket's requester, and the customers CC'd on it
(`email_cc_ids`, `collaborator_ids`) or whose comment names them an end user (`author.role`). Any other
author answers for the company: the assignee, followers (`follower_ids`, always agents), and authors the
ticket does not place. Comments with "public": false are internal notes and are dropped. Each comment's own
"metadata" (IP addresses, user agents) is never read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from distill.encoding import Encoding
from distill.formats.common import Bad, Item, Parsed, Sample, flat_text, read_records, scalar

DESCRIPTION = "Zendesk tickets with comments"
LIST_KEYS = ("tickets", "results")


def sniff(sample: Sample) -> bool:
    return isinstance(sample.record, dict) and "comments" in sample.record


def read(path: Path, encoding: Encoding | None = None, **_) -> Iterator[Item]:
    return read_records(path, LIST_KEYS, encoding, _ticket)


def _ticket(where: str, rec) -> Parsed | Bad:
    if not isinstance(rec, dict) or not isinstance(rec.get("comments"), list):
        return Bad(where, 'expected a ticket with a "comments" list')
    ticket_id = rec.get("id")
    requester_obj = rec.get("requester") if isinstance(rec.get("requester"), dict) else {}
    requester = rec.get("requester_id")
    requester = requester if requester is not None else requester_obj.get("id")
    customers = _end_users(rec, requester)
    msgs = []
    for c in rec["comments"]:
        if not isinstance(c, dict) or c.get("public") is False:
            continue  # internal notes never reach a customer or a model
        author = c.get("author_id")
        author_obj = c.get("author") if isinstance(c.get("author"), dict) else {}
        if author is None:
            author = author_obj.get("id")
        own_role = scalar(author_obj.get("role"))
        customer = (author in customers and own_role not in ("agent", "admin")) or own_role == "end-user"
        role = "user" if customer else "assistant"
        msgs.append({"role": role, "content": flat_text(c.get("plain_body") or c.get("body") or c.get("html_body")),
                     "timestamp": c.get("created_at")})
    satisfaction = rec.get("satisfaction_rating") if isinstance(rec.get("satisfaction_rating"), dict) else {}
    via = rec.get("via") if isinstance(rec.get("via"), dict) else {}
    meta = {
        "conversation_id": ticket_id, "subject": rec.get("subject"), "tags": rec.get("tags") or [],
        "status": scalar(rec.get("status")), "channel": scalar(via.get("channel")),
        "created_at": rec.get("created_at"),
        "resolution": "resolved" if rec.get("status") in ("solved", "closed") else scalar(rec.get("status")),
        "csat": {"good": 5, "bad": 1}.get(scalar(satisfaction.get("score"))),
        "customer_name": requester_obj.get("name"),
    }
    return Parsed(f"ticket {ticket_id}" if ticket_id is not None else where, {"messages": msgs, "metadata": meta})


def _ids(value) -> set:
    return {v for v in value if isinstance(v, (int, str))} if isinstance(value, list) else set()


def _end_users(rec: dict, requester) -> set:
    """The ticket's customers: the requester and the users CC'd on it, less anyone the ticket shows is staff."""
    staff = _ids(rec.get("follower_ids")) | ({rec["assignee_id"]} if isinstance(rec.get("assignee_id"), (int, str)) else set())
    cc = (_ids(rec.get("email_cc_ids")) | _ids(rec.get("collaborator_ids"))) - staff
    return cc | ({requester} if requester is not None else set())
