"""The store: migrations, concurrent writers, feedback checks, and the chat history read back from exchanges."""

import sqlite3
import threading

import pytest

from assistant import store as store_module
from assistant.store import Store, StoreBusy, migrations


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


def test_session_history_is_rebuilt_from_the_logged_exchanges(tmp_path):
    store = Store(tmp_path / "a.db")

    def log(session, turn, request, reply, **extra):
        store.log_exchange({"session_id": session, "turn_index": turn, "request_messages": request, "reply": reply,
                            **extra})

    first = [{"role": "user", "content": "where is my order"}]
    log("s", 0, first, "It ships today.")
    log("other", 0, [{"role": "user", "content": "someone else's question"}], "someone else's answer")
    # turn 1 failed before an exchange was logged: nothing of it is stored, so nothing is remembered.
    # Turn 2: the teacher failed and the student answered; that reply was shown, so it is history.
    second = first + [{"role": "assistant", "content": "It ships today."}, {"role": "user", "content": "and returns?"}]
    log("s", 1, second, "Within 30 days.", error="teacher timed out", notice="the student answered")
    assert store.session_history("s") == [
        {"role": "user", "content": "where is my order"}, {"role": "assistant", "content": "It ships today."},
        {"role": "user", "content": "and returns?"}, {"role": "assistant", "content": "Within 30 days."},
    ]
    assert store.session_history("nobody") == []


def test_session_history_follows_turn_order_not_insertion_order(tmp_path):
    store = Store(tmp_path / "a.db")
    store.log_exchange({"session_id": "s", "turn_index": 1, "request_messages": [{"role": "user", "content": "b"}],
                        "reply": "B"})
    store.log_exchange({"session_id": "s", "turn_index": 0, "request_messages": [{"role": "user", "content": "a"}],
                        "reply": None})
    assert store.session_history("s") == [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""},
                                          {"role": "user", "content": "b"}, {"role": "assistant", "content": "B"}]


def _hold_write_lock(path, release: threading.Event, held: threading.Event):
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    held.set()
    release.wait(30)
    conn.execute("COMMIT")
    conn.close()


def test_an_exchange_waits_past_the_busy_timeout_instead_of_being_dropped(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.05)  # one attempt gives up quickly: retries must carry it
    path = tmp_path / "a.db"
    store = Store(path)
    release, held = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, release, held))
    holder.start()
    held.wait(10)
    threading.Timer(0.5, release.set).start()  # another writer holds the lock ten busy timeouts long
    ex = store.log_exchange({"session_id": "s", "reply": "kept"})
    store.add_feedback(ex, 1)
    holder.join()
    conn = sqlite3.connect(path)
    assert conn.execute("select reply from exchanges").fetchall() == [("kept",)]
    assert conn.execute("select count(*) from feedback").fetchone()[0] == 1


def test_a_write_that_never_gets_the_lock_raises_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(store_module, "WRITE_RETRY_DEADLINE_S", 0.3)
    path = tmp_path / "a.db"
    store = Store(path)
    store.close()
    release, held = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, release, held))
    holder.start()
    held.wait(10)
    try:
        with pytest.raises(StoreBusy, match=r"a\.db: the database stayed locked by another writer for \d+ s \(\d+ attempts\)"):
            store.log_exchange({"session_id": "s", "reply": "x"})
    finally:
        release.set()
        holder.join()
    assert store.log_exchange({"session_id": "s", "reply": "later"}) == 1  # nothing half-written before
