"""Helpers for the import tests: a store in tmp_path and the conversations it holds."""

import json
import sqlite3
from pathlib import Path

from assistant.store import Store

FIXTURES = Path(__file__).parent / "fixtures"


def new_store(tmp_path) -> Store:
    return Store(tmp_path / "import.db")


def stored(store: Store) -> list[dict]:
    conn = sqlite3.connect(store.path)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("select * from conversations order by id")]
    for r in rows:
        r["messages"] = json.loads(r["messages"])
        r["metadata"] = json.loads(r["metadata"])
    return rows


def all_text(store: Store) -> str:
    return " ".join(m["content"] for r in stored(store) for m in r["messages"]) + " ".join(
        json.dumps(r["metadata"]) for r in stored(store))


def snapshot(store: Store) -> dict:
    """Everything an import may write, read through a fresh connection: equal snapshots, untouched store."""
    conn = sqlite3.connect(store.path)
    try:
        return {table: conn.execute(f"select * from {table} order by id").fetchall()
                for table in ("conversations", "imports")}
    finally:
        conn.close()


def write_conversations(path: Path, n: int, start: int = 0) -> Path:
    """An OpenAI chat JSONL file of n distinct small conversations (distinct enough not to be near-duplicates)."""
    words = ["thermostat", "camera", "doorbell", "refund", "invoice", "parcel", "battery", "firmware", "router",
             "warranty", "coupon", "subscription", "sensor", "hub", "app", "password"]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(start, start + n):
            topic = " ".join(words[(i * k + k) % len(words)] for k in range(1, 6))
            fh.write(json.dumps({"messages": [
                {"role": "user", "content": f"Question {i}: my {topic} stopped working after update {i * 7}"},
                {"role": "assistant", "content": f"Answer {i}: reset the {topic} and wait {i % 13 + 2} minutes"},
            ], "metadata": {"conversation_id": f"C-{i}"}}) + "\n")
    return path
