"""Import logged support conversations into the store: normalise, scrub PII, hash, insert once.

This first version reads OpenAI chat JSONL (one {"messages": [...], "metadata": {...}} per line),
the format of data/sample; the import issue adds the other export formats behind `import_file`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from assistant.errors import InputError
from distill.pii import scrub_messages

NAME_FIELDS = ("customer_name", "requester_name", "name", "user_name", "customer")


@dataclass
class ImportSummary:
    source: str
    read: int = 0
    imported: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    pii: Counter = field(default_factory=Counter)


def content_hash(messages: list[dict], system: str = "") -> str:
    canonical = json.dumps([system] + [[m["role"], m["content"]] for m in messages], ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def normalise(messages: list[dict]) -> tuple[str, list[dict]]:
    """Roles to user/assistant (system kept apart), consecutive same-role messages merged, empties dropped."""
    system_parts, out = [], []
    for m in messages:
        role = {"human": "user", "customer": "user", "gpt": "assistant", "agent": "assistant"}.get(m.get("role"), m.get("role"))
        text = " ".join(str(m.get("content") or "").split()) if role == "system" else str(m.get("content") or "").strip()
        if not text:
            continue
        if role == "system":
            system_parts.append(text)
        elif role in ("user", "assistant"):
            if out and out[-1]["role"] == role:
                out[-1]["content"] += "\n\n" + text
            else:
                out.append({"role": role, "content": text})
    return "\n".join(system_parts), out


def conversation_row(messages: list[dict], metadata: dict, source: str, scrub: bool = True) -> tuple[dict, Counter]:
    system, msgs = normalise(messages)
    roles = {m["role"] for m in msgs}
    if not {"user", "assistant"} <= roles:
        raise InputError("a conversation needs at least one user and one assistant message")
    pii = Counter()
    if scrub:
        names = [metadata.get(f) for f in NAME_FIELDS if isinstance(metadata.get(f), str)]
        msgs, pii = scrub_messages(msgs, names)
        system = scrub_messages([{"role": "system", "content": system}], names)[0][0]["content"] if system else ""
    # Identifying fields of the export are not kept once they have served to find names in the text.
    meta = {k: v for k, v in metadata.items() if k not in NAME_FIELDS and "email" not in k and k != "ip"}
    csat = meta.get("csat")
    row = {
        "source": source,
        "external_id": str(meta.get("conversation_id") or meta.get("id") or ""),
        "content_hash": content_hash(msgs, system),
        "system": system,
        "messages": json.dumps(msgs, ensure_ascii=False),
        "metadata": json.dumps(meta, ensure_ascii=False),
        "intent": meta.get("intent"),
        "resolution": meta.get("resolution"),
        "csat": float(csat) if isinstance(csat, (int, float)) else None,
    }
    return row, pii


def import_openai_jsonl(store, path: Path | str, scrub: bool = True) -> ImportSummary:
    path = Path(path)
    summary = ImportSummary(source=str(path))
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            summary.read += 1
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
                    raise InputError('expected an object with a "messages" list')
                row, pii = conversation_row(record["messages"], record.get("metadata") or {}, path.name, scrub)
            except (json.JSONDecodeError, InputError) as exc:
                summary.rejected.append((line_no, str(exc)))
                continue
            summary.pii.update(pii)
            rows.append(row)
    summary.imported = store.add_conversations(rows)
    summary.duplicates = len(rows) - summary.imported
    return summary
