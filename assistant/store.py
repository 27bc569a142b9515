"""The one SQLite store (system of record) and its migrations.

Every table lives in one database file under the state directory, opened through sqlite-utils in
WAL mode with a busy timeout. Gradio answers chats on worker threads, so each thread gets its own
connection (SQLite connections must not be shared across threads); WAL lets readers and one writer
proceed together and the busy timeout makes concurrent writers wait instead of failing.

No write is silently dropped: a write transaction that cannot get the lock within the busy timeout
tries again with backoff, up to WRITE_RETRY_DEADLINE_S in all, and then raises StoreBusy (a clear
AssistantError) instead of SQLite's bare "database is locked". Long jobs keep their own write
transactions short: an import stages its rows outside the store and swaps them in with one short
transaction (distill.importer).

Migrations are small named functions applied in order, one transaction each. Never edit one that
has shipped: add a new one below it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import sqlite_utils
from sqlite_utils.migrations import Migrations

from assistant.errors import AssistantError

BUSY_TIMEOUT_S = 30.0  # one attempt at the write lock waits this long inside SQLite's busy handler
WRITE_RETRY_DEADLINE_S = 120.0  # then attempts are repeated, with backoff, until this much time has passed
WRITE_RETRY_MAX_DELAY_S = 2.0

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


@migrations()
def m005_imports(db: sqlite_utils.Database) -> None:
    # One row per import run, with its summary; conversations remember which import brought them and
    # whether they nearly duplicate an earlier one (MinHash signature kept for later imports).
    db["imports"].create(
        {
            "id": int,
            "source": str,
            "format": str,
            "options": str,
            "status": str,
            "read": int,
            "imported": int,
            "duplicates": int,
            "near_duplicates": int,
            "rejected": int,
            "summary": str,
            "started_at": str,
            "finished_at": str,
        },
        pk="id",
    )
    db["conversations"].add_column("import_id", int)
    db["conversations"].add_column("near_duplicate_of", int)
    db["conversations"].add_column("near_duplicate_score", float)
    db["conversations"].add_column("minhash", bytes)


@migrations()
def m006_kb_versions(db: sqlite_utils.Database) -> None:
    # Every KB import is a new version; the teacher is grounded in the latest one.
    db["kb_versions"].create(
        {"id": int, "source": str, "n_articles": int, "n_chunks": int, "content_hash": str, "created_at": str},
        pk="id",
    )
    db["kb_articles"].add_column("version", int)
    db.execute("DROP INDEX IF EXISTS idx_kb_articles_content_hash")
    if db["kb_articles"].count:
        db["kb_versions"].insert({"id": 1, "source": "before versioning", "n_articles": db["kb_articles"].count,
                                  "n_chunks": None, "content_hash": "", "created_at": now()})
        db.execute("UPDATE kb_articles SET version = 1")
    db["kb_articles"].create_index(["version"])


@migrations()
def m007_labelling(db: sqlite_utils.Database) -> None:
    # Teacher calls are the expensive part: keyed by hash(prefix, prompt, teacher, params) so none is paid twice.
    db["teacher_calls"].create(
        {
            "cache_key": str, "teacher": str, "prompt_id": str, "prompt_hash": str, "params": str, "reply": str,
            "finish_reason": str, "input_tokens": int, "output_tokens": int, "cached_tokens": int, "cost": float,
            "latency_ms": float, "reference": str, "created_at": str,
        },
        pk="cache_key",
    )
    db["label_jobs"].create(
        {
            "id": int, "source": str, "teacher": str, "prompt_id": str, "prompt_hash": str, "options": str,
            "status": str, "n_tasks": int, "n_done": int, "n_cached": int, "n_called": int, "n_failed": int,
            "n_accepted": int, "n_rejected": int, "input_tokens": int, "output_tokens": int, "cost": float,
            "started_at": str, "finished_at": str,
        },
        pk="id",
    )
    db["labels"].create(
        {
            "id": int, "job_id": int, "conversation_id": int, "message_index": int, "source": str, "teacher": str,
            "prompt_id": str, "prompt_hash": str, "cache_key": str, "reply": str, "status": str, "reason": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("job_id", "label_jobs", "id"), ("conversation_id", "conversations", "id")],
    )
    db["labels"].create_index(["job_id", "status"])
    db["label_batches"].create(
        {
            "id": int, "request_hash": str, "batch_id": str, "input_file_id": str, "n_requests": int,
            "status": str, "created_at": str, "finished_at": str,
        },
        pk="id",
    )
    db["label_batches"].create_index(["request_hash"])
    db["datasets"].create(
        {
            "id": int, "version": str, "path": str, "content_hash": str, "label_job_id": int, "teacher": str,
            "n_train": int, "n_validation": int, "n_test": int, "manifest": str, "created_at": str,
        },
        pk="id",
    )
    db["datasets"].create_index(["version"], unique=True)


@migrations()
def m008_model_versions(db: sqlite_utils.Database) -> None:
    # Trained students. Exactly one row is "serving" (none: the packaged base serves); promotions keeps
    # the history that rollback walks back through.
    db["model_versions"].create(
        {
            "id": int, "version": str, "base": str, "base_sha256": str, "dataset_version": str, "path": str,
            "gguf_path": str, "gguf_type": str, "gguf_bytes": int, "config": str, "metrics": str, "evaluation": str,
            "status": str, "created_at": str,
        },
        pk="id",
    )
    db["model_versions"].create_index(["version"], unique=True)
    db["promotions"].create(
        {"id": int, "version": str, "action": str, "reason": str, "created_at": str}, pk="id",
    )


@migrations()
def m009_jobs(db: sqlite_utils.Database) -> None:
    # Long background jobs started from the UI (retraining): their progress and log live here, so a
    # reloaded page, or a second browser, sees the same job.
    db["jobs"].create(
        {"id": int, "kind": str, "status": str, "progress": str, "log": str, "result": str, "error": str,
         "started_at": str, "finished_at": str},
        pk="id",
    )


@migrations()
def m010_evaluation(db: sqlite_utils.Database) -> None:
    db["eval_runs"].create(
        {"id": int, "dataset_version": str, "config": str, "models": str, "judge": str, "status": str, "n_turns": int,
         "measurements": str, "started_at": str, "finished_at": str},
        pk="id",
    )
    db["eval_items"].create(
        {"id": int, "run_id": int, "arm": str, "conversation_id": int, "turn": int, "intent": str, "data": str},
        pk="id", foreign_keys=[("run_id", "eval_runs", "id")],
    )
    db["eval_items"].create_index(["run_id", "arm"])
    # online A/B: the arm a chat session was assigned to, and teacher answers shadowing student replies
    db["exchanges"].add_column("experiment_arm", str)
    db["shadow_answers"].create(
        {"id": int, "exchange_id": int, "teacher": str, "reply": str, "latency_ms": float, "input_tokens": int,
         "output_tokens": int, "cost": float, "judge": str, "created_at": str},
        pk="id", foreign_keys=[("exchange_id", "exchanges", "id")],
    )



@migrations()
def m011_spend_by_day(db: sqlite_utils.Database) -> None:
    # the daily teacher budget (assistant/spend.py) sums today's costs on every teacher call
    db["teacher_calls"].create_index(["created_at"], if_not_exists=True)
    db["shadow_answers"].create_index(["created_at"], if_not_exists=True)


@migrations()
def m012_routing(db: sqlite_utils.Database) -> None:
    # #14: which router decided each exchange (and its version), the tier that answered, the cascade's spent
    # student draft (time and cost, already inside latency_ms and cost), and the signals the router read
    # (JSON), so thumbs on logged exchanges can train the learned router.
    for column, kind in (("router", str), ("router_version", str), ("tier", str), ("draft_ms", float),
                         ("draft_cost", float), ("route_features", str)):
        db["exchanges"].add_column(column, kind)
    # learned routers, versioned like students: one row is "serving"; `trained_on` names the evaluation runs,
    # splits and conversations whose outcomes it learned from (an evaluation refuses to score it on them)
    db["router_versions"].create(
        {"id": int, "version": str, "kind": str, "model": str, "trained_on": str, "metrics": str, "status": str,
         "created_at": str},
        pk="id",
    )
    db["router_versions"].create_index(["version"], unique=True)
    # `assistant router calibrate`: the threshold that sent the target share of validation turns to the
    # teacher, and the scores themselves, so any other share (the chat's slider) maps to a threshold too
    db["router_calibrations"].create(
        {"id": int, "router": str, "router_version": str, "teacher_share": float, "threshold": float,
         "scores": str, "source": str, "created_at": str},
        pk="id",
    )


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection to the store's file with the store's settings (busy timeout, foreign keys, WAL sync)."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL, much faster commits
    return conn


class StoreBusy(AssistantError):
    """The database stayed locked by another writer for longer than the store waits."""


def is_busy(exc: BaseException) -> bool:
    """SQLite's "database is locked" / "database is busy": another connection holds the write lock."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def begin_immediate(conn: sqlite3.Connection, path: Path | str, deadline_s: float | None = None) -> None:
    """BEGIN IMMEDIATE, retried with backoff while another writer holds the lock; StoreBusy past the deadline."""
    deadline_s = WRITE_RETRY_DEADLINE_S if deadline_s is None else deadline_s
    started = time.monotonic()
    delay, attempts = 0.05, 0
    while True:
        attempts += 1
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            waited = time.monotonic() - started
            if not is_busy(exc):
                raise
            if waited >= deadline_s:
                raise StoreBusy(
                    f"{Path(path).name}: the database stayed locked by another writer for {waited:.0f} s "
                    f"({attempts} attempts); nothing was written, try again"
                ) from exc
            time.sleep(min(delay, max(0.0, deadline_s - waited)))
            delay = min(delay * 2, WRITE_RETRY_MAX_DELAY_S)


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
            db = sqlite_utils.Database(connect(self.path), execute_plugins=False)
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.conn.close()
            self._local.db = None

    # ---- writes ----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """A write transaction taken up front (BEGIN IMMEDIATE).

        A deferred transaction that reads first and writes later fails at once with "database is locked"
        when another connection committed in between (SQLite cannot wait there without risking deadlock);
        taking the write lock first makes writers queue on the busy timeout instead, and retry past it
        (begin_immediate). Only taking the lock is retried: the body runs once, inside the transaction.
        """
        db = self.db
        if db.conn.in_transaction:  # nested: join the outer transaction
            with db.atomic():
                yield db
            return
        begin_immediate(db.conn, self.path)
        try:
            yield db
        except BaseException:
            db.conn.execute("ROLLBACK")
            raise
        db.conn.execute("COMMIT")

    # One statement, one transaction: callers outside this module write through these three, or through
    # `transaction()` when several statements must commit together, never through `db` directly, so every
    # write waits for the lock the same way (and raises StoreBusy past it).
    def insert(self, table: str, row: dict, *, replace: bool = False) -> int:
        """Insert one row; returns its primary key."""
        with self.transaction() as db:
            return db[table].insert(row, replace=replace).last_pk

    def update(self, table: str, pk, values: dict) -> None:
        with self.transaction() as db:
            db[table].update(pk, values)

    def execute(self, sql: str, params=()) -> None:
        """One write statement (an UPDATE with a condition or an expression such as `log = log || ?`)."""
        with self.transaction() as db:
            db.execute(sql, list(params))

    def log_exchange(self, record: dict[str, Any]) -> int:
        """Store one chat exchange; waits (and retries) for the write lock, raises StoreBusy rather than drop it."""
        row = dict(record)
        row.setdefault("created_at", now())
        if not isinstance(row.get("request_messages"), str):
            row["request_messages"] = json.dumps(row.get("request_messages") or [], ensure_ascii=False)
        return self.insert("exchanges", row)

    def add_feedback(self, exchange_id: int, thumbs: int, comment: str = "") -> int:
        if thumbs not in (1, -1):
            raise ValueError("thumbs must be 1 (up) or -1 (down)")
        if not self.db["exchanges"].count_where("id = ?", [exchange_id]):
            raise KeyError(f"no exchange with id {exchange_id}")
        row = {"exchange_id": exchange_id, "thumbs": thumbs, "comment": comment or "", "created_at": now()}
        return self.insert("feedback", row)

    # ---- reads -----------------------------------------------------------------------
    def exchanges(self, session_id: str | None = None) -> list[dict]:
        if session_id is None:
            return list(self.db["exchanges"].rows_where(order_by="id"))
        return list(self.db["exchanges"].rows_where("session_id = ?", [session_id], order_by="turn_index, id"))

    def session_history(self, session_id: str) -> list[dict]:
        """A chat session's conversation so far, as the model should see it next turn.

        Rebuilt only from what this server logged: each exchange's customer message (the last message
        of its request) and the reply it logged. Nothing a client sends back is trusted as model input,
        and a turn that failed before an exchange was logged is simply not part of it.
        """
        history: list[dict] = []
        for row in self.exchanges(session_id):
            request = json.loads(row["request_messages"] or "[]")
            if not request or request[-1].get("role") != "user":
                continue  # not a chat turn (nothing we could rebuild it from)
            history.append({"role": "user", "content": request[-1]["content"]})
            history.append({"role": "assistant", "content": row["reply"] or ""})
        return history

    def conversations(self) -> Iterator[dict]:
        for row in self.db["conversations"].rows_where(order_by="id"):
            row["messages"] = json.loads(row["messages"])
            row["metadata"] = json.loads(row["metadata"] or "{}")
            yield row

    def kb_version(self) -> int | None:
        row = next(self.db.query("SELECT max(id) AS v FROM kb_versions"), None)
        return row["v"] if row else None

    def kb_articles(self, version: int | None = None) -> list[dict]:
        """Articles of one KB version, the latest by default."""
        version = version or self.kb_version()
        if version is None:
            return []
        return list(self.db["kb_articles"].rows_where("version = ?", [version], order_by="id"))

    def count(self, table: str) -> int:
        return self.db[table].count

    def latest_label_job(self) -> int | None:
        """The id of the newest label job, None before the first."""
        return next(self.db.query("SELECT max(id) AS id FROM label_jobs"))["id"]

    def rejected_labels(self, job_id: int, limit: int) -> list[dict]:
        """A label job's rejected labels, in the order written: conversation_id, message_index, reason, reply."""
        return list(self.db.query(
            "SELECT conversation_id, message_index, reason, reply FROM labels WHERE job_id = ? AND status = 'rejected' "
            "ORDER BY id LIMIT ?", [job_id, limit]))

    def rejection_reasons(self, job_id: int) -> list[tuple[str, int]]:
        """Why a label job's labels were rejected: (reason, how many), the commonest first."""
        return [(r["reason"], r["n"]) for r in self.db.query(
            "SELECT reason, count(*) AS n FROM labels WHERE job_id = ? AND status = 'rejected' "
            "GROUP BY reason ORDER BY n DESC", [job_id])]

    def datasets(self) -> list[dict]:
        """Every dataset version, oldest first."""
        return list(self.db["datasets"].rows_where(order_by="id"))


    def router_versions(self) -> list[dict]:
        """Every trained router version, oldest first."""
        return list(self.db["router_versions"].rows_where(order_by="id"))

    def serving_router(self) -> dict | None:
        """The learned router version that serves (its model and training record decoded), None before one."""
        row = next(self.db["router_versions"].rows_where("status = 'serving'", order_by="id desc", limit=1), None)
        if row is None:
            return None
        return {**row, "model": json.loads(row["model"]), "trained_on": json.loads(row["trained_on"] or "{}")}

    def router_calibration(self, router: str, version: str) -> dict | None:
        """The newest calibration of a router version (its scores decoded), None when never calibrated."""
        row = next(self.db["router_calibrations"].rows_where(
            "router = ? AND router_version = ?", [router, version], order_by="id desc", limit=1), None)
        return None if row is None else {**row, "scores": json.loads(row["scores"] or "[]")}

    def route_scores(self, router: str, version: str, limit: int = 2000) -> list[float]:
        """The scores a router version gave the most recent Auto exchanges (for a share without a calibration)."""
        return [r["route_score"] for r in self.db.query(
            "SELECT route_score FROM exchanges WHERE route = 'Auto' AND router = ? AND router_version = ? "
            "AND route_score IS NOT NULL ORDER BY id DESC LIMIT ?", [router, version, limit])]


def open_store(settings) -> Store:
    settings.ensure_home()
    return Store(settings.db_path)
