"""The reliability benchmark's pieces (eval.bench_reliability): product processes configured only through their
environment, a served app that fails to start said so, the kill probe's stage detection and verdicts, the fault
verdicts, the bad-file corpus, the injection row and the table. The probes themselves start `assistant serve`
and run for minutes: `python -m eval.bench_reliability --quick`."""

import json
import sqlite3

import pytest

from assistant.store import Store
from distill.importer import import_file
from eval import bench_reliability as bench


def test_a_product_process_reads_only_what_the_bench_configures(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSISTANT_TEACHER_BASE_URL", "http://teacher.example/v1")  # this process's own settings
    monkeypatch.setenv("OPENAI_API_KEY", "sk-mine")
    env = bench.child_env(tmp_path / "state", ASSISTANT_ROUTER_THRESHOLD=0)
    assert "ASSISTANT_TEACHER_BASE_URL" not in env and "OPENAI_API_KEY" not in env
    assert env["ASSISTANT_HOME"] == str(tmp_path / "state") and env["ASSISTANT_ROUTER_THRESHOLD"] == "0"
    out, _ = bench.cli(["settings"], tmp_path / "state", ASSISTANT_MAX_NEW_TOKENS=7)  # the real CLI, in a subprocess
    assert out.returncode == 0, out.stderr
    shown = dict(line.split(None, 1) for line in out.stdout.splitlines() if line[:1].strip() and len(line.split()) > 1)
    assert shown["home"] == str(tmp_path / "state") and shown["max_new_tokens"] == "7"
    assert shown["teacher_base_url"] == "None" and shown["seed_sample"] == "False" and shown["embedder"] == "hashing"


def test_a_served_app_that_cannot_start_is_reported_with_its_error(tmp_path):
    with pytest.raises(RuntimeError, match=r"exited with 1: .*ASSISTANT_PORT"):
        with bench.served(tmp_path / "state", ASSISTANT_PORT="not-a-port"):
            pass


def test_reply_text_reads_the_chat_api_history():
    assert bench.reply_text([{"role": "assistant", "content": "plain"}]) == "plain"
    parts = [{"role": "user", "content": "q"}, {"role": "assistant", "content": [{"type": "text", "text": "a"}, "b"]}]
    assert bench.reply_text(parts) == "a\nb" and bench.reply_text([]) == ""


def asked(**changes) -> bench.Asked:
    fallback = dict(text="The student's reply.", notice="⚠️ The teacher model is unavailable right now, so the student "
                    "model answered.", wait=3.0, shown="[]", logged=("student", "teacher answered HTTP 500", "n", 1.0, 2.0),
                    stored=1)
    return bench.Asked(**{**fallback, **changes})


def test_a_fault_is_met_by_a_timely_reply_with_a_notice_and_a_logged_error():
    assert bench._fault_met(asked(), "notice", 10.0)
    assert not bench._fault_met(asked(wait=12.0), "notice", 10.0)
    assert not bench._fault_met(asked(notice=""), "notice", 10.0)
    assert not bench._fault_met(asked(logged=("student", "", "", 1.0, 2.0)), "notice", 10.0)
    assert not bench._fault_met(asked(stored=0, logged=None), "notice", 10.0)
    assert not bench._fault_met(asked(text="Something went wrong"), "notice", 10.0)
    assert bench._fault_met(asked(wait=15.0), "info", 10.0)  # reported, not held to the target
    assert bench._fault_met(asked(text=bench.TEACHER_TEXT, notice=""), "none", 10.0)
    assert not bench._fault_met(asked(), "none", 10.0)  # the healthy control must be the teacher's reply


def test_the_swap_is_seen_once_pages_follow_the_wal_header(tmp_path):
    wal, staging = tmp_path / "assistant.db-wal", tmp_path / "staging"
    staging.mkdir()
    files = [staging / "x.db"]
    wal.write_bytes(b"h" * bench.WAL_HEADER)  # what opening the store writes: not the swap
    assert bench._stage_seen("swap (write lock held)", 1.0, files, staging, 10, wal, 0) is None
    wal.write_bytes(b"h" * (bench.WAL_HEADER + 4120))
    assert bench._stage_seen("swap (write lock held)", 1.0, files, staging, 10, wal, 0).startswith("swap: the WAL")
    assert bench._stage_seen("staging created", 0.1, files, staging, 10, wal, 0) == "staging created"
    assert bench._stage_seen("starting", 0.1, [], staging, 10, wal, 0) is None


def test_after_a_kill_the_store_is_judged_untouched_whole_or_partial(tmp_path):
    db = tmp_path / "assistant.db"
    store = Store(db)
    before = bench.table_counts(db)
    assert bench._after_kill(db, before)[1:] == ("nothing stored", {})
    summary = import_file(store, bench.FIXTURES / "sharegpt.json")
    check, outcome, changed = bench._after_kill(db, before)
    assert check == "ok" and outcome == f"whole import stored (+{summary.imported})" and changed["imports"] == 1
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM conversations WHERE id = (SELECT max(id) FROM conversations)")  # a torn import
    conn.commit()
    conn.close()
    assert bench._after_kill(db, before)[1].startswith("PARTIAL")
    store.close()


def test_the_bad_file_corpus_is_well_formed(tmp_path):
    corpus = bench.bad_file_corpus()
    names = [f.name for f in corpus]
    assert len(names) == len(set(names))
    for f in corpus:
        path = bench._place(f, tmp_path / "files")
        assert path.exists() is (f.name != "gen_missing.jsonl"), f.name
        if f.data is not None:
            assert path.read_bytes() == f.data
    assert any(f.importable for f in corpus) and any(not f.importable for f in corpus)


def test_hostile_values_in_the_store_are_found(tmp_path):
    db = tmp_path / "assistant.db"
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO conversations (id, messages, metadata, content_hash) VALUES (1, ?, ?, 'h')",
                 (json.dumps([{"role": "user", "content": "<script>alert(1)</script>"}]), json.dumps({"note": "=1+1"})))
    conn.commit()
    conn.close()
    found = bench._hostile_stored(db, absent=("alert(",))
    assert any("markup" in f for f in found) and any("formula" in f for f in found) and any("'alert(' stored" in f for f in found)


def test_the_injection_probe_runs_every_string_through_every_builder():
    from eval.bench_injection import BUILDERS, INJECTIONS

    row = bench.probe_injection()
    assert row.requests == len(BUILDERS) * len(INJECTIONS) == 56
    assert row.errors == 0 and row.leaks == 0 and len(row.targets) == 1 and row.targets[0][0] is True


def test_the_table_has_a_line_per_target(capsys):
    rows = [bench.Row("probe a", requests=3, max_wait=1.5, targets=[(True, "a holds")]),
            bench.Row("probe b", errors=1, lost=None, targets=[(False, "b holds"), (False, "(beyond #11's targets) c")])]
    bench.print_table(rows)
    out = capsys.readouterr().out
    assert "requests" in out and "1.50 s" in out
    assert "PASS  a holds" in out and "FAIL  b holds" in out and "FAIL  (beyond" in out
