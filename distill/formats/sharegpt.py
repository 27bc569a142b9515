"""ShareGPT: a JSON array or JSONL of {"conversations": [{"from", "value"}], "system"?: ..., ...}.

"from" is kept as spelled ("human", "gpt", "chatgpt" ...) for distill.normalize's role map; a
top-level "system" string becomes the first message; the other fields are metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from distill.encoding import Encoding
from distill.formats.common import Bad, Item, Parsed, Sample, flat_text, read_records

DESCRIPTION = "ShareGPT (conversations with from/value)"
LIST_KEYS = ("data",)


def sniff(sample: Sample) -> bool:
    """Any record with a "conversations" list; asked last, after Freshdesk whose tickets have one too."""
    return isinstance(sample.record, dict) and isinstance(sample.record.get("conversations"), list)


def read(path: Path, encoding: Encoding | None = None, **_) -> Iterator[Item]:
    return read_records(path, LIST_KEYS, encoding, _conversation)


def _conversation(where: str, rec) -> Parsed | Bad:
    turns = rec.get("conversations") if isinstance(rec, dict) else None
    if not isinstance(turns, list):
        return Bad(where, 'expected an object with a "conversations" list')
    msgs = []
    for t in turns:
        if not isinstance(t, dict) or "from" not in t:
            return Bad(where, 'every turn needs "from" and "value"')
        msgs.append({"role": str(t["from"]), "content": flat_text(t.get("value"))})
    meta = {k: v for k, v in rec.items() if k != "conversations"}
    if "system" in meta and isinstance(meta["system"], str):
        msgs.insert(0, {"role": "system", "content": meta.pop("system")})
    return Parsed(where, {"messages": msgs, "metadata": meta})
