import sqlite3
import threading

import pytest

from assistant.store import Store, migrations


def test_migrations_create_the_schema_once(tmp_path):
    path = tmp_path / "a.db"
    Store(path).close()
    Store(path).close()  # re-opening applies nothing twice
    conn = sqlite3.connect(path)
    applied = [r[0] for r in conn.execute("select name from _sqlite_migrations where migration_set='assistant' order by id")]
    assert applied == [m.name for m in migrations._migrations]
    cols = {r[1] for r in conn.execute("pragma table_info(exchanges)")}
    assert {"id", "session_id", "turn_index", "route", "routed_to", "route_score", "route_reason", "model_name",
            "model_version", "request_messages", "reply", "ttft_ms", "latency_ms", "input_tokens", "output_tokens",
            "cost", "error", "created_at"} <= cols
    assert {r[1] for r in conn.execute("pragma table_info(feedback)")} >= {"exchange_id", "thumbs", "comment"}
    assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_concurrent_writers_lose_nothing(tmp_path):
    store = Store(tmp_path / "a.db")
    errors = []

    def writer(n):
        try:
            for i in range(40):
                ex = store.log_exchange({"session_id": f"s{n}", "turn_index": i, "reply": "x", "request_messages": []})
                store.add_feedback(ex, 1 if i % 2 else -1)
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    # read the file the threads wrote, through a fresh connection
    conn = sqlite3.connect(tmp_path / "a.db")
    assert conn.execute("select count(*) from exchanges").fetchone()[0] == 320
    assert conn.execute("select count(*) from feedback").fetchone()[0] == 320
    assert conn.execute("select count(distinct session_id) from exchanges").fetchone()[0] == 8


def test_feedback_needs_a_real_exchange_and_valid_thumbs(tmp_path):
    store = Store(tmp_path / "a.db")
    with pytest.raises(KeyError):
        store.add_feedback(999, 1)
    ex = store.log_exchange({"session_id": "s", "reply": "x"})
    with pytest.raises(ValueError):
        store.add_feedback(ex, 0)
