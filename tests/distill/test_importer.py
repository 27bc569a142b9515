"""distill.importer: bad input never corrupts the store (strict mode, crashes, fuzzing), re-imports add
nothing, near-duplicates are flagged; and imports beside live chats: the store stays writable during an
import, a failed or killed import leaves nothing, and two imports of one file at once insert it once."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from assistant.errors import AssistantError, InputError
from distill import importer
from distill.importer import Staging, import_file
from tests.importing import FIXTURES, new_store, snapshot, stored, write_conversations

ROOT = Path(__file__).resolve().parents[2]


def test_strict_imports_nothing_when_anything_is_bad(tmp_path):
    store = new_store(tmp_path)
    with pytest.raises(InputError, match="nothing imported"):
        import_file(store, FIXTURES / "openai_chat.jsonl", strict=True)
    assert stored(store) == [] and store.db["imports"].count == 0


def test_crash_mid_import_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    store = new_store(tmp_path)
    import_file(store, FIXTURES / "sharegpt.json")
    before = stored(store)
    real = importer.prepare
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C halfway through
        return real(*args, **kwargs)

    monkeypatch.setattr(importer, "prepare", crashing)
    with pytest.raises(KeyboardInterrupt):
        import_file(store, FIXTURES / "openai_chat.jsonl")
    assert stored(store) == before and store.db["imports"].count == 1


def test_reimport_adds_nothing(tmp_path):
    store = new_store(tmp_path)
    import_file(store, FIXTURES / "openai_chat.jsonl")
    again = import_file(store, FIXTURES / "openai_chat.jsonl")
    assert again.imported == 0 and again.duplicates == 2
    assert len(stored(store)) == 2
    assert store.db["imports"].count == 2  # both runs are on record


def test_near_duplicates_are_flagged_across_files(tmp_path):
    base = [{"role": "user", "content": "My thermostat shows offline since the storm yesterday, what should I try first?"},
            {"role": "assistant", "content": "Restart it by holding the button for 20 seconds, then check the Wi-Fi signal is at least two bars in the app."}]
    edited = [dict(base[0]), {"role": "assistant", "content": base[1]["content"] + " Thanks!"}]
    (tmp_path / "a.jsonl").write_text(json.dumps({"messages": base}) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"messages": edited}) + "\n")
    store = new_store(tmp_path)
    import_file(store, tmp_path / "a.jsonl")
    s = import_file(store, tmp_path / "b.jsonl")
    assert s.imported == 1 and s.near_duplicates == 1
    first, second = stored(store)
    assert second["near_duplicate_of"] == first["id"] and second["near_duplicate_score"] >= 0.8


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                              lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
                                  ["messages", "role", "content", "conversations", "from", "value", "comments", "source",
                                   "conversation_parts", "body", "public", "author_id", "requester_id", "incoming"]), c, max_size=4),
                              max_leaves=20).map(lambda v: json.dumps(v).encode())),
       st.sampled_from([".jsonl", ".json", ".csv", ".tsv", ".txt"]))
def test_no_input_crashes_the_importer_with_anything_but_our_error(tmp_path, data, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    store = new_store(tmp_path)
    try:
        s = import_file(store, path)
        assert s.imported + s.duplicates + len(s.rejected) == s.read
    except AssistantError:
        pass


def test_a_file_with_nothing_importable_is_an_error_and_stores_nothing(tmp_path):
    store = new_store(tmp_path)
    (tmp_path / "no_agents.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hello?"}]}) + "\n")
    with pytest.raises(InputError, match=r"no_agents\.jsonl: nothing importable.*line 1: no assistant message"):
        import_file(store, tmp_path / "no_agents.jsonl")
    assert snapshot(store) == {"conversations": [], "imports": []}


def test_a_chat_can_log_exchanges_while_an_import_is_midway(tmp_path, monkeypatch):
    path = write_conversations(tmp_path / "big.jsonl", 40)
    store = new_store(tmp_path)
    real, calls, during = importer.prepare, {"n": 0}, []
    logged, errors, stop = [], [], threading.Event()

    def chat():  # a chat session logging replies the whole time
        i = 0
        while not stop.is_set():
            try:
                logged.append(store.log_exchange({"session_id": "busy", "turn_index": i, "reply": "ok",
                                                  "request_messages": [{"role": "user", "content": f"q{i}"}]}))
            except Exception as exc:  # reported by the assertion below
                errors.append(exc)
            i += 1
            time.sleep(0.002)

    def midway(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 20:  # several batches staged already: a reply logged now must not wait for the import
            worker = threading.Thread(target=lambda: during.append(store.log_exchange({"session_id": "midway", "reply": "x"})))
            worker.start()
            worker.join(timeout=20)
            assert during, "an exchange could not be written while the import was running"
        return real(*args, **kwargs)

    monkeypatch.setattr(importer, "prepare", midway)
    writer = threading.Thread(target=chat)
    writer.start()
    try:
        s = import_file(store, path, batch_rows=3)
    finally:
        stop.set()
        writer.join()
    assert s.imported == 40 and not errors and during
    assert len(store.exchanges("busy")) == len(logged) > 0 and len(store.exchanges("midway")) == 1
    assert len(stored(store)) == 40


def test_an_import_failing_between_batches_leaves_the_store_and_no_scratch_file(tmp_path, monkeypatch):
    store = new_store(tmp_path)
    import_file(store, write_conversations(tmp_path / "first.jsonl", 5))
    before = snapshot(store)
    real, flushes = Staging.flush, {"n": 0}

    def failing(self):
        real(self)
        flushes["n"] += 1
        if flushes["n"] == 3:
            raise RuntimeError("disk full")

    monkeypatch.setattr(Staging, "flush", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        import_file(store, write_conversations(tmp_path / "second.jsonl", 30, start=100), batch_rows=4)
    assert flushes["n"] == 3 and snapshot(store) == before
    assert not list(importer._staging_dir(store).iterdir())


CHILD = """
import sys, time
from pathlib import Path
from assistant.store import Store
from distill import importer

db, path, stage, marker = sys.argv[1:5]
def pause():
    Path(marker).write_text("paused")
    time.sleep(120)
if stage == "staging":
    real, n = importer.Staging.flush, [0]
    def flush(self):
        real(self)
        n[0] += 1
        if n[0] == 3:
            pause()
    importer.Staging.flush = flush
else:  # inside the swap transaction, after the rows were copied into the store
    importer._record_import = lambda *a: pause()
importer.import_file(Store(db), path, batch_rows=2)
"""


@pytest.mark.parametrize("stage", ["staging", "swap"])
def test_kill_9_mid_import_leaves_the_store_as_it_was(tmp_path, stage):
    store = new_store(tmp_path)
    import_file(store, write_conversations(tmp_path / "first.jsonl", 3))
    before = snapshot(store)
    path, marker = write_conversations(tmp_path / "second.jsonl", 20, start=50), tmp_path / "paused"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(store.path), str(path), stage, str(marker)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, child.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the child never reached the pause"
            time.sleep(0.05)
        if stage == "staging":
            assert list(importer._staging_dir(store).glob("*.db"))  # rows were staged, in a scratch file
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert snapshot(store) == before
    # the next import cleans up the dead one's scratch file and works
    s = import_file(store, path)
    assert s.imported == 20 and len(stored(store)) == 23
    assert not list(importer._staging_dir(store).iterdir())


def test_two_imports_of_one_file_at_once_insert_it_once(tmp_path, monkeypatch):
    path = write_conversations(tmp_path / "same.jsonl", 12)
    store = new_store(tmp_path)
    real_prepare, real_turn = importer.prepare, importer.import_turn
    second_waiting, results, errors = threading.Event(), [], []

    def slow_prepare(*args, **kwargs):
        # the first import, holding its turn, lets the second one start and reach the lock
        if threading.current_thread().name == "first" and not second_waiting.is_set():
            threading.Thread(target=run, args=("second",), name="second").start()
            second_waiting.wait(timeout=20)
            time.sleep(0.3)
        return real_prepare(*args, **kwargs)

    def spying_turn(*args, **kwargs):
        if threading.current_thread().name == "second":
            second_waiting.set()
        return real_turn(*args, **kwargs)

    def run(name):
        try:
            results.append((name, import_file(store, path)))
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    monkeypatch.setattr(importer, "prepare", slow_prepare)
    monkeypatch.setattr(importer, "import_turn", spying_turn)
    first = threading.Thread(target=run, args=("first",), name="first")
    first.start()
    first.join(timeout=60)
    deadline = time.monotonic() + 60
    while len(results) + len(errors) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not errors, errors
    outcome = {name: (s.imported, s.duplicates) for name, s in results}
    assert outcome == {"first": (12, 0), "second": (0, 12)}
    assert len(stored(store)) == 12 and store.db["imports"].count == 2
    first_run, second_run = store.db["imports"].rows_where(order_by="id")
    assert second_run["started_at"] >= first_run["finished_at"]  # it took its turn: read the store after the first


def test_rows_another_writer_stored_meanwhile_are_counted_as_duplicates_not_inserted_twice(tmp_path, monkeypatch):
    store = new_store(tmp_path)
    real = Staging.swap_in

    def racing(self, *args, **kwargs):
        self.flush()
        row = self.conn.execute("SELECT source, content_hash, system, messages, metadata FROM staged WHERE seq = 2").fetchone()
        store.execute("INSERT INTO conversations (source, content_hash, system, messages, metadata)"
                      " VALUES (?, ?, ?, ?, ?)", row)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Staging, "swap_in", racing)
    s = import_file(store, write_conversations(tmp_path / "x.jsonl", 5))
    assert (s.imported, s.duplicates) == (4, 1) and len(stored(store)) == 5
    assert store.db["imports"].get(s.import_id)["imported"] == 4


def test_an_import_that_cannot_get_its_turn_says_so(tmp_path):
    from assistant.store import StoreBusy

    store = new_store(tmp_path)
    path = write_conversations(tmp_path / "x.jsonl", 2)
    with importer.import_turn(store):
        with pytest.raises(StoreBusy, match="another import into import.db has been running"):
            import_file(store, path, lock_wait_s=0.2)
    assert snapshot(store) == {"conversations": [], "imports": []}
    assert import_file(store, path).imported == 2
