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
