"""The one SQLite store (system of record) and its migrations.

Every table lives in one database file under the state directory, opened through sqlite-utils in
WAL mode with a busy timeout. Gradio answers chats on worker threads, so each thread gets its own
connection (SQLite connections must not be shared across threads); WAL lets readers and one writer
proceed together and the busy timeout makes concurrent writers wait instead of failing.

Migrations are small named functions applied in order, one transaction each. Never edit one that
has shipped: add a new one below it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import sqlite_utils
from sqlite_utils.migrations import Migrations

BUSY_TIMEOUT_S = 30.0

migrations = Migrations("assistant")


@migrations()
def m001_exchanges(db: sqlite_utils.Database) -> None:
    db["exchanges"].create(
        {
            "id": int,
            "session_id": str,
            "turn_index": int,
            "route": str,  # what the user picked: Student / Teacher / Auto
            "routed_to": str,  # who answered: student / teacher
            "route_score": float,
            "route_reason": str,
            "model_name": str,
            "model_version": str,
            "request_messages": str,  # JSON list of {"role", "content"}
            "reply": str,
            "ttft_ms": float,
            "latency_ms": float,
            "input_tokens": int,
            "output_tokens": int,
            "cost": float,
            "error": str,
            "notice": str,  # shown to the user, e.g. "teacher failed, the student answered"
            "created_at": str,
        },
        pk="id",
    )
    db["exchanges"].create_index(["session_id", "turn_index"])
    db["exchanges"].create_index(["created_at"])


@migrations()
def m002_feedback(db: sqlite_utils.Database) -> None:
    db["feedback"].create(
        {"id": int, "exchange_id": int, "thumbs": int, "comment": str, "created_at": str},
        pk="id",
        foreign_keys=[("exchange_id", "exchanges", "id")],
    )
    db["feedback"].create_index(["exchange_id"])


@migrations()
def m003_conversations(db: sqlite_utils.Database) -> None:
    # Imported (PII-scrubbed) support conversations: the case base of the offline teacher and
    # the raw material of training datasets.
    db["conversations"].create(
        {
            "id": int,
            "source": str,  # file or origin it came from
            "external_id": str,  # its id in the source system
            "content_hash": str,
            "system": str,
            "messages": str,  # JSON list of {"role": "user"|"assistant", "content": ...}
            "metadata": str,  # JSON: channel, tags, timestamps, gold facts ...
            "intent": str,
            "resolution": str,
            "csat": float,
            "created_at": str,
        },
        pk="id",
    )
    db["conversations"].create_index(["content_hash"], unique=True)
    db["conversations"].create_index(["intent"])


@migrations()
def m004_kb_articles(db: sqlite_utils.Database) -> None:
    db["kb_articles"].create(
        {
            "id": int,
            "source": str,
            "external_id": str,
            "title": str,
            "body": str,
            "url": str,
            "content_hash": str,
            "created_at": str,
        },
        pk="id",
    )
    db["kb_articles"].create_index(["content_hash"], unique=True)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Store:
    """The application's database. Safe to share between threads: connections are per thread."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        db = self.db
        db.execute("PRAGMA journal_mode=WAL")
        migrations.apply(db)

    @property
    def db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL, much faster commits
            db = sqlite_utils.Database(conn, execute_plugins=False)
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.conn.close()
            self._local.db = None

    # ---- writes: one short transaction each, retried on a locked database -------------
    def _write(self, fn):
        for attempt in range(5):
            try:
                with self.db.atomic():
                    return fn(self.db)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def log_exchange(self, record: dict[str, Any]) -> int:
        row = dict(record)
        row.setdefault("created_at", now())
        if not isinstance(row.get("request_messages"), str):
            row["request_messages"] = json.dumps(row.get("request_messages") or [], ensure_ascii=False)
        return self._write(lambda db: db["exchanges"].insert(row).last_pk)

    def add_feedback(self, exchange_id: int, thumbs: int, comment: str = "") -> int:
        if thumbs not in (1, -1):
            raise ValueError("thumbs must be 1 (up) or -1 (down)")
        if not self.db["exchanges"].count_where("id = ?", [exchange_id]):
            raise KeyError(f"no exchange with id {exchange_id}")
        row = {"exchange_id": exchange_id, "thumbs": thumbs, "comment": comment or "", "created_at": now()}
        return self._write(lambda db: db["feedback"].insert(row).last_pk)

    def add_conversations(self, rows: Iterable[dict[str, Any]]) -> int:
        """Insert conversations, skipping ones whose content hash is already stored. Returns how many were new."""

        def insert(db: sqlite_utils.Database) -> int:
            before = db["conversations"].count
            db["conversations"].insert_all(
                ({**r, "created_at": r.get("created_at") or now()} for r in rows), ignore=True, batch_size=500
            )
            return db["conversations"].count - before

        return self._write(insert)

    def add_kb_articles(self, rows: Iterable[dict[str, Any]]) -> int:
        def insert(db: sqlite_utils.Database) -> int:
            before = db["kb_articles"].count
            db["kb_articles"].insert_all(
                ({**r, "created_at": r.get("created_at") or now()} for r in rows), ignore=True
            )
            return db["kb_articles"].count - before

        return self._write(insert)

    # ---- reads -----------------------------------------------------------------------
    def exchanges(self, session_id: str | None = None) -> list[dict]:
        if session_id is None:
            return list(self.db["exchanges"].rows_where(order_by="id"))
        return list(self.db["exchanges"].rows_where("session_id = ?", [session_id], order_by="turn_index, id"))

    def conversations(self) -> Iterator[dict]:
        for row in self.db["conversations"].rows_where(order_by="id"):
            row["messages"] = json.loads(row["messages"])
            row["metadata"] = json.loads(row["metadata"] or "{}")
            yield row

    def kb_articles(self) -> list[dict]:
        return list(self.db["kb_articles"].rows_where(order_by="id"))

    def count(self, table: str) -> int:
        return self.db[table].count


def open_store(settings) -> Store:
    settings.ensure_home()
    return Store(settings.db_path)
