"""OpenAI chat JSONL: one {"messages": [{"role", "content"}], "metadata"?: {...}} per line.

Also a JSON array of such records, or an object holding one under "data" / "conversations". Fields
beside "messages" are kept as metadata (those under "metadata" win).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from distill.encoding import Encoding
from distill.formats.common import Bad, Item, Parsed, Sample, flat_text, read_records

DESCRIPTION = "OpenAI chat JSONL (messages)"
LIST_KEYS = ("data", "conversations")


def sniff(sample: Sample) -> bool:
    return isinstance(sample.record, dict) and "messages" in sample.record


def read(path: Path, encoding: Encoding | None = None, **_) -> Iterator[Item]:
    return read_records(path, LIST_KEYS, encoding, _conversation)


def _conversation(where: str, rec) -> Parsed | Bad:
    if not isinstance(rec, dict) or not isinstance(rec.get("messages"), list):
        return Bad(where, 'expected an object with a "messages" list')
    msgs = []
    for m in rec["messages"]:
        if not isinstance(m, dict) or "role" not in m:
            return Bad(where, 'every message needs a "role"')
        msgs.append({"role": str(m["role"]), "content": flat_text(m.get("content"))})
    meta = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
    meta = {**{k: v for k, v in rec.items() if k not in ("messages", "metadata")}, **meta}
    return Parsed(where, {"messages": msgs, "metadata": meta})
