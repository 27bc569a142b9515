"""Import logged support conversations into the store: read, normalise, scrub PII, dedupe, insert.

`import_file()` is what the CLI (`assistant import`) and the UI's Import tab call. One import is one
transaction: a bad file, a crash or Ctrl-C leaves the store exactly as it was. Records stream through
(bounded memory); malformed records are listed with their place and reason, and with `strict=True`
nothing is imported if any record is bad. Importing the same file twice adds nothing (content hash);
near-duplicates are imported but flagged with the conversation they nearly repeat.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from assistant.errors import InputError
from assistant.store import Store, now
from distill import formats
from distill.dedupe import NearDuplicateIndex, signature
from distill.normalize import normalise
from distill.pii import Scrubber

# Fields of an export that identify the customer: used to find their name in the text, never stored.
NAME_FIELDS = ("customer_name", "requester_name", "user_name", "name", "customer")
DROP_FIELDS = {"ip", "ip_address", "metadata", "phone", "address", "email"}
BATCH = 1000

_INSERT = (
    "INSERT INTO conversations (source, external_id, content_hash, system, messages, metadata, intent, resolution, csat,"
    " created_at, import_id, near_duplicate_of, near_duplicate_score, minhash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


@dataclass
class ImportSummary:
    source: str
    format: str = ""
    read: int = 0
    imported: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    pii: Counter = field(default_factory=Counter)
    turns: Counter = field(default_factory=Counter)
    intents: Counter = field(default_factory=Counter)
    tags: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    scrub: bool = True
    strict: bool = False
    seconds: float = 0.0
    import_id: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rejected"] = [list(r) for r in self.rejected]
        for k in ("pii", "turns", "intents", "tags", "notes"):
            d[k] = dict(getattr(self, k).most_common())
        return d

    def lines(self, max_rejected: int = 20) -> list[str]:
        """The summary as plain lines, for the CLI and the UI."""
        out = [
            f"{self.source} ({self.format}): {self.read} records read in {self.seconds:.1f} s",
            f"  imported {self.imported}, exact duplicates skipped {self.duplicates}, "
            f"near-duplicates flagged {self.near_duplicates}, rejected {len(self.rejected)}",
        ]
        if self.scrub:
            pii = ", ".join(f"{k} {v}" for k, v in self.pii.most_common()) or "none found"
            out.append(f"  PII replaced: {pii}")
        else:
            out.append("  PII scrubbing was OFF: texts were stored as they came")
        if self.turns:
            lo, hi = min(self.turns), max(self.turns)
            mean = sum(k * v for k, v in self.turns.items()) / sum(self.turns.values())
            out.append(f"  messages per conversation: {lo}-{hi}, mean {mean:.1f}")
        if self.intents:
            out.append("  top intents: " + ", ".join(f"{k} ({v})" for k, v in self.intents.most_common(8)))
        if self.tags:
            out.append("  top tags: " + ", ".join(f"{k} ({v})" for k, v in self.tags.most_common(8)))
        if self.notes:
            out.append("  cleaned: " + ", ".join(f"{k} {v}" for k, v in self.notes.items()))
        for where, reason in self.rejected[:max_rejected]:
            out.append(f"  rejected {where}: {reason}")
        if len(self.rejected) > max_rejected:
            out.append(f"  ... and {len(self.rejected) - max_rejected} more rejected")
        return out


def content_hash(system: str, messages: list[dict]) -> str:
    canonical = json.dumps([system] + [[m["role"], m["content"]] for m in messages], ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _names(metadata: dict) -> list[str]:
    names = []
    for key in NAME_FIELDS:
        value = metadata.get(key)
        if isinstance(value, dict):
            value = value.get("name")
        if isinstance(value, str) and value.strip():
            names.append(value.strip())
    return names


def _safe_metadata(metadata: dict, scrubber: Scrubber | None) -> dict:
    meta = {}
    for k, v in metadata.items():
        key = str(k)
        if key in NAME_FIELDS or key.lower() in DROP_FIELDS or "email" in key.lower() or "phone" in key.lower():
            continue
        if isinstance(v, str) and scrubber is not None:
            v = scrubber.scrub(v)
        meta[key] = v
    return meta


def _csat(value) -> float | None:
    """CSAT on a 1-5 scale: 1-5 as is, 0-10 (NPS-like) and percentages scaled."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    if x <= 5:
        return x
    if x <= 10:
        return round(x / 2, 1)
    if x <= 100:
        return round(x / 20, 1)
    return None


def prepare(conversation: dict, source: str, scrub: bool) -> tuple[dict, Counter, Counter]:
    """One raw conversation -> a row for the conversations table (raises InputError when unusable)."""
    system, messages, notes = normalise(conversation["messages"])
    metadata = conversation.get("metadata") or {}
    scrubber = Scrubber(names=_names(metadata)) if scrub else None
    if scrubber is not None:
        messages = [{"role": m["role"], "content": scrubber.scrub(m["content"])} for m in messages]
        system = scrubber.scrub(system)
    meta = _safe_metadata(metadata, scrubber)
    meta["source_file"] = source
    timestamps = [m.get("timestamp") for m in conversation["messages"] if m.get("timestamp")]
    if timestamps:
        meta.setdefault("first_message_at", str(timestamps[0]))
        meta.setdefault("last_message_at", str(timestamps[-1]))
    sig = signature(" ".join(m["content"] for m in messages))
    row = {
        "source": source,
        "external_id": str(meta.get("conversation_id") or meta.get("id") or ""),
        "content_hash": content_hash(system, messages),
        "system": system,
        "messages": json.dumps(messages, ensure_ascii=False),
        "metadata": json.dumps(meta, ensure_ascii=False, default=str),
        "intent": str(meta["intent"]) if meta.get("intent") else None,
        "resolution": str(meta["resolution"]).lower() if meta.get("resolution") else None,
        "csat": _csat(meta.get("csat")),
        "minhash": sig,
        "n_messages": len(messages),
        "tags": meta.get("tags") if isinstance(meta.get("tags"), list) else [],
    }
    return row, (scrubber.counts if scrubber else Counter()), Counter(notes)


def import_file(store: Store, path: Path | str, fmt: str | None = None, *, scrub: bool = True, strict: bool = False,
                csv_columns: dict[str, str] | None = None, near_duplicate_threshold: float = 0.8,
                progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Import one export file (or saved dataset folder). Returns the summary, also stored as an import record."""
    path = Path(path)
    options = {"columns": formats.CsvColumns.from_mapping(csv_columns)} if csv_columns else {}
    fmt, items = formats.read(path, fmt, **options)
    summary = ImportSummary(source=path.name, format=fmt, scrub=scrub, strict=strict)
    started, t0 = now(), time.perf_counter()
    db = store.db
    existing = {r[0] for r in db.conn.execute("SELECT content_hash FROM conversations")}
    near = NearDuplicateIndex(near_duplicate_threshold)
    for cid, blob in db.conn.execute("SELECT id, minhash FROM conversations WHERE minhash IS NOT NULL"):
        near.add(cid, np.frombuffer(blob, dtype=np.uint64))

    with store.transaction():
        import_id = db["imports"].insert({
            "source": str(path), "format": fmt, "status": "running", "started_at": started,
            "options": json.dumps({"scrub": scrub, "strict": strict, "csv_columns": csv_columns,
                                   "near_duplicate_threshold": near_duplicate_threshold}),
        }).last_pk
        created = now()
        for item in items:
            summary.read += 1
            if progress and summary.read % 500 == 0:
                progress(summary.read)
            if isinstance(item, formats.Bad):
                summary.rejected.append((item.where, item.reason))
                continue
            try:
                row, pii, notes = prepare(item.conversation, path.name, scrub)
            except InputError as exc:
                summary.rejected.append((item.where, str(exc)))
                continue
            if row["content_hash"] in existing:
                summary.duplicates += 1
                continue
            existing.add(row["content_hash"])
            summary.pii.update(pii)
            summary.notes.update(notes)
            summary.turns[row["n_messages"]] += 1
            if row["intent"]:
                summary.intents[row["intent"]] += 1
            summary.tags.update(str(t) for t in row["tags"])
            match = near.find(row["minhash"])
            if match:
                summary.near_duplicates += 1
            cur = db.conn.execute(_INSERT, (
                row["source"], row["external_id"], row["content_hash"], row["system"], row["messages"], row["metadata"],
                row["intent"], row["resolution"], row["csat"], created, import_id,
                match[0] if match else None, match[1] if match else None, row["minhash"].tobytes(),
            ))
            near.add(cur.lastrowid, row["minhash"])
            summary.imported += 1
        if strict and summary.rejected:
            where, reason = summary.rejected[0]
            raise InputError(
                f"{path.name}: {len(summary.rejected)} bad record(s), nothing imported (--strict). "
                f"First: {where}: {reason}"
            )
        if summary.read == 0:
            raise InputError(f"{path.name}: no records found")
        summary.seconds = time.perf_counter() - t0
        summary.import_id = import_id
        db["imports"].update(import_id, {
            "status": "done", "read": summary.read, "imported": summary.imported, "duplicates": summary.duplicates,
            "near_duplicates": summary.near_duplicates, "rejected": len(summary.rejected),
            "summary": json.dumps(summary.to_dict(), ensure_ascii=False), "finished_at": now(),
        })
    if progress:
        progress(summary.read)
    return summary
