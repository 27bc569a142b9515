"""Serving speed of the student, in one run: raw llama.cpp vs the app's own student path vs 1, 4 and 8 chats at once.

    assistant bench serve [--conversations 12] [--sessions 1,4,8] [--seconds 60] [--student VERSION] [--quick]

Arms, all on the same GGUF and the same held-out conversations (the newest dataset's test split, conversations
with 3+ customer turns; without a dataset, the imported conversations), replayed turn by turn with the
student's own earlier replies, as in a real chat:

- **raw**: llama-cpp-python's `create_completion` on the exact token prompt the app builds for that turn (the
  grounded layout, windowed and tokenized by the student), in one plain `Llama`: the ceiling.
- **app**: what the chat calls, `chat.respond` in Student mode: retrieval and grounding, the routing decision,
  the batched engine, logging. Time to first token is counted from the message's arrival. **app, Auto**: the
  same in Auto mode (what public visitors get), the student's turns only: their first text is shown after the
  router has judged the held-back draft (router.DRAFT_TOKENS).
- **served N**: `assistant serve` in a subprocess, driven through its HTTP API with gradio_client by N sessions
  at once on loopback, each a customer playing conversations for `--seconds`; time to first token is the first
  reply text the client receives (a place-in-line notice is not a reply). gradio_client polls its incoming
  messages every 50 ms (gradio_client/utils.py), which a browser does not, so each level also prints the same
  turns as the server logged them ("as logged": from the message's arrival to the first / last text sent).

Printed per arm: tokens/s (generated tokens over generation time, all turns), time to first token and reply
time p50 / p95 on turns 3+ (and all turns), replies per hour, errors; then app/raw ratios, the cost of retrieval
and of logging per turn, and a kill -9 right after a reply was shown (its row must be stored).

State: the bench works on a scratch copy of the store (the models and caches linked, not copied), so the
exchanges it logs never mix with real ones. The served arm needs the student under test to be the serving one.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from assistant import students
from assistant.chat import respond
from assistant.errors import InputError
from assistant.grounding import DEFAULT_BUDGET, LayoutMemo, student_layout
from assistant.settings import Settings
from distill.sample import open_services
from eval.product import reply_text, served
from eval.stats import percentile

DEFAULTS = {"conversations": 12, "sessions": "1,4,8", "seconds": 60.0}
QUICK = {"conversations": 4, "sessions": "1,8", "seconds": 20.0}


@dataclass
class Reply:
    turn: int  # the customer turn it answers (1 = the opening message)
    ttft_ms: float | None
    latency_ms: float
    output_tokens: int
    prompt_tokens: int = 0
    error: str = ""


def summary(replies: list[Reply], wall_s: float | None = None) -> dict:
    ok = [r for r in replies if not r.error]
    deep = [r for r in ok if r.turn >= 3]
    gen_s = sum((r.latency_ms - (r.ttft_ms or 0)) / 1000 for r in ok if r.output_tokens > 1)
    gen_tokens = sum(r.output_tokens - 1 for r in ok if r.output_tokens > 1)  # the first token is in the TTFT
    return {
        "replies": len(ok), "errors": len(replies) - len(ok),
        "tokens_per_s": gen_tokens / gen_s if gen_s else None,
        "ttft_p50": percentile([r.ttft_ms for r in deep], 0.5), "ttft_p95": percentile([r.ttft_ms for r in deep], 0.95),
        "reply_p50": percentile([r.latency_ms for r in deep], 0.5),
        "reply_p95": percentile([r.latency_ms for r in deep], 0.95),
        "ttft_p50_all": percentile([r.ttft_ms for r in ok], 0.5), "reply_p50_all": percentile([r.latency_ms for r in ok], 0.5),
        "tokens_p50": percentile([r.output_tokens for r in ok], 0.5),
        "per_hour": len(ok) / wall_s * 3600 if wall_s else None,
    }


# ---- the conversations and the state --------------------------------------------------------------------

def scratch_home(home: Path, into: Path) -> Path:
    """A copy of the store (consistent, via SQLite's backup) beside links to the models, datasets and caches."""
    into.mkdir(parents=True, exist_ok=True)
    for entry in home.iterdir():
        if entry.name.startswith("assistant.db"):
            continue
        (into / entry.name).symlink_to(entry.resolve())
    source = sqlite3.connect(home / "assistant.db")
    target = sqlite3.connect(into / "assistant.db")
    with target:
        source.backup(target)
    source.close()
    target.close()
    return into


def test_conversations(services, settings, n: int) -> tuple[str, list[list[dict]]]:
    """(where they come from, conversations with 3+ customer turns); the retriever then leaves them out."""
    from distill.dataset import load_dataset
    from distill.pipeline import held_out_retriever

    deep = lambda messages: sum(m["role"] == "user" for m in messages) >= 3  # noqa: E731
    try:
        dd, manifest = load_dataset(services.store)
    except InputError:
        convs = [c["messages"] for c in services.store.conversations() if deep(c["messages"])][:n]
        return "imported conversations (no dataset yet)", convs
    services.retriever = held_out_retriever(services.store, settings, dd, services.retriever)
    convs = [r["original_messages"] for r in dd["test"] if deep(r["original_messages"])][:n]
    return f"dataset {manifest['version']}, test split", convs


def customer_turns(conversation: list[dict]) -> list[str]:
    return [m["content"] for m in conversation if m["role"] == "user"]


# ---- arm 1: raw llama.cpp on the app's prompts -----------------------------------------------------------

def raw_arm(student, retriever, conversations: list[list[dict]], max_tokens: int) -> list[Reply]:
    """Each turn's prompt built exactly as the app builds it (untimed), then only llama.cpp is timed."""
    from llama_cpp import Llama

    inner = getattr(student, "inner", student)
    grounded = inner is not student
    threads = inner.n_threads or os.cpu_count() or 1
    llm = Llama(model_path=str(inner.path), n_ctx=inner.n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
    memo, out = LayoutMemo(), []
    try:
        for conversation in conversations:
            history = []
            for turn, message in enumerate(customer_turns(conversation), 1):
                history.append({"role": "user", "content": message})
                layout = student_layout(history, retriever, memo=memo) if grounded else history
                tokens, stop = inner.prompt_tokens(layout)
                text, reply = _raw_reply(llm, tokens, stop, max_tokens, inner.repeat_penalty, turn)
                out.append(reply)
                history.append({"role": "assistant", "content": text})
    finally:
        llm.close()
    return out


def _raw_reply(llm, tokens, stop, max_tokens, repeat_penalty, turn) -> tuple[str, Reply]:
    start, first, parts = time.perf_counter(), None, []
    for chunk in llm.create_completion(tokens, max_tokens=max_tokens, temperature=0.0, repeat_penalty=repeat_penalty,
                                       stop=stop, stream=True, seed=0):
        text = chunk["choices"][0].get("text") or ""
        if text:
            first = first or time.perf_counter()
            parts.append(text)
    end = time.perf_counter()
    ttft = (first - start) * 1000 if first else None
    return "".join(parts), Reply(turn, ttft, (end - start) * 1000, len(parts), len(tokens))


# ---- arm 2: the app's own student path ---------------------------------------------------------------------

def app_arm(services, conversations: list[list[dict]], tag: str, mode: str = "Student") -> list[Reply]:
    """The chat's own path, turn by turn. In Auto, turns the router gave the teacher are left out (their reply
    continues the history) and the student's are timed as the customer sees them: after the held-back draft."""
    out = []
    for i, conversation in enumerate(conversations):
        history = []
        for turn, message in enumerate(customer_turns(conversation), 1):
            history.append({"role": "user", "content": message})
            exchange = next(e.exchange for e in respond(services, history, mode, f"{tag}-{i}", turn - 1)
                            if e.kind == "done")
            if exchange["routed_to"] == "student":
                out.append(Reply(turn, exchange["ttft_ms"], exchange["latency_ms"], exchange["output_tokens"] or 0,
                                 exchange["input_tokens"] or 0))
            history.append({"role": "assistant", "content": exchange["reply"]})
    return out


def retrieval_ms(services, conversations: list[list[dict]]) -> list[float]:
    """The grounding step of each customer turn as the chat runs it, on text the embedder has not seen (a fresh
    embedding cache over the same model): the new message is embedded on the customer's wait, the context was
    embedded after the previous reply (`Retriever.prefetch`, untimed here as in the chat)."""
    from assistant.retrieval import Embedder, Retriever

    shared = services.retriever
    fresh = shared.kb.embedder
    if isinstance(fresh, Embedder):  # the hashing embedder caches nothing anyway
        fresh = fresh.uncached()
    kb, cases = shared.kb, shared.cases
    saved = kb.embedder, cases.embedder
    kb.embedder = cases.embedder = fresh
    retriever, times = Retriever(kb, cases, exclude=shared.exclude), []
    try:
        for conversation in conversations:
            memo, history = LayoutMemo(), []
            for message in conversation:
                history.append({"role": message["role"], "content": message["content"]})
                if message["role"] == "user":
                    t0 = time.perf_counter()
                    student_layout(history, retriever, memo=memo, budget=getattr(services.student, "budget", None)
                                   or DEFAULT_BUDGET)
                    times.append((time.perf_counter() - t0) * 1000)
                else:
                    retriever.prefetch(history)
    finally:
        kb.embedder, cases.embedder = saved
    return times


def logging_ms(services, n: int = 50) -> list[float]:
    """Writing one exchange row (committed, WAL) as the chat does after a reply: not part of the time to first
    token, since the row is written once the last token is out."""
    row = services.store.exchanges()[-1]
    record = {k: v for k, v in row.items() if k != "id"}
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        services.store.log_exchange(dict(record, session_id="bench-logging"))
        times.append((time.perf_counter() - t0) * 1000)
    return times


# ---- arm 3: the running app, N sessions at once -------------------------------------------------------------

def _session(url: str, conversations: list[list[dict]], end: float, count, out: list[Reply]) -> None:
    """One customer: plays conversations in turn through the chat's API until `end`, a new chat for each."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    for conversation in conversations * 1000:
        client.predict(api_name="/new_conversation")
        for turn, message in enumerate(customer_turns(conversation), 1):
            if time.time() >= end:
                return
            out.append(_served_reply(client, message, turn, count))


def _served_reply(client, message: str, turn: int, count) -> Reply:
    start, first = time.perf_counter(), None
    try:
        job = client.submit(message, [], "Student", api_name="/send")
        for update in job:
            text = reply_text(update[0]) if update and update[0] else ""
            if first is None and text and not text.startswith("⏳"):
                first = time.perf_counter()
        text = reply_text(job.result()[0])
    except Exception as exc:  # counted, never fatal: the point is to see errors under load
        return Reply(turn, None, (time.perf_counter() - start) * 1000, 0, error=f"{type(exc).__name__}: {exc}")
    end = time.perf_counter()
    return Reply(turn, (first - start) * 1000 if first else None, (end - start) * 1000, count(text))


def served_arm(url: str, conversations: list[list[dict]], sessions: int, seconds: float, count) -> tuple[list[Reply], float]:
    """`sessions` customers at once for `seconds` (turns under way then finish); (replies, wall seconds)."""
    out: list[Reply] = []
    start, end = time.perf_counter(), time.time() + seconds
    threads = [threading.Thread(target=_session, args=(url, conversations[i::sessions] or conversations, end, count, out),
                                daemon=True) for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 600)
    return out, time.perf_counter() - start


def logged_since(db: Path, after_id: int) -> tuple[list[Reply], int]:
    """The exchanges the served app logged after `after_id`, as the server timed them (from the message's arrival
    in the handler to the first / last text it sent): the app's own figures, free of the client's polling."""
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT id, turn_index, ttft_ms, latency_ms, output_tokens, input_tokens FROM exchanges "
                        "WHERE id > ? AND routed_to = 'student' ORDER BY id", [after_id]).fetchall()
    last = conn.execute("SELECT coalesce(max(id), 0) FROM exchanges").fetchone()[0]
    conn.close()
    return [Reply(r[1] + 1, r[2], r[3], r[4] or 0, r[5] or 0) for r in rows], last


def peak_rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")), None)


def kill_after_reply(app, db: Path) -> tuple[bool, str]:
    """Send one message, SIGKILL the server the moment the client has the finished reply: is its row stored?"""
    from gradio_client import Client

    client = Client(app.chat_url, verbose=False)
    history = client.predict("Hello, is my order on its way?", [], "Student", api_name="/send")[0]
    os.kill(app.pid, signal.SIGKILL)
    shown = reply_text(history)
    conn = sqlite3.connect(db)
    stored = [r[0] for r in conn.execute("SELECT reply FROM exchanges ORDER BY id DESC LIMIT 5")]
    conn.close()
    return shown in stored, shown


# ---- the run ------------------------------------------------------------------------------------------------

def _row(label: str, s: dict) -> str:
    f = lambda v, d=0: "-" if v is None else f"{v:,.{d}f}"  # noqa: E731
    return (f"{label:14}{s['replies']:>8}{s['errors']:>7}{f(s['tokens_per_s'], 1):>10}{f(s['ttft_p50']):>10}"
            f"{f(s['ttft_p95']):>10}{f(s['reply_p50']):>10}{f(s['reply_p95']):>10}{f(s['ttft_p50_all']):>10}"
            f"{f(s['reply_p50_all']):>10}{f(s['tokens_p50']):>8}{f(s['per_hour']):>9}")


HEADER = (f"{'arm':14}{'replies':>8}{'errors':>7}{'tok/s':>10}{'TTFT p50':>10}{'TTFT p95':>10}{'reply p50':>10}"
          f"{'reply p95':>10}{'TTFT all':>10}{'reply all':>10}{'tokens':>8}{'per hour':>9}")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="assistant bench serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, help=f"test conversations to replay (default {DEFAULTS['conversations']})")
    parser.add_argument("--sessions", help=f"concurrent sessions of the served arm, comma-separated (default {DEFAULTS['sessions']})")
    parser.add_argument("--seconds", type=float, help=f"how long each served level runs (default {DEFAULTS['seconds']:g})")
    parser.add_argument("--student", help="model version (default: the serving one); the served arm needs it serving")
    parser.add_argument("--quick", action="store_true", help=f"a smaller run: {QUICK}")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.sessions = [int(s) for s in str(args.sessions).split(",") if s.strip()]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        home = scratch_home(settings.ensure_home(), Path(tmp) / "state")
        settings = replace(settings, home=home)
        services = open_services(settings)
        source, conversations = test_conversations(services, settings, args.conversations)
        if not conversations:
            raise SystemExit(f"no conversation with 3+ customer turns in {source}")
        row = students.resolve(services.store, args.student)
        services.student = students.student_for(row, settings, services.retriever)
        services.follow_registry = False
        results = _in_process(services, conversations)
        served_rows = _served(args, settings, services, row, conversations)
        _report(args, services, source, conversations, results, served_rows)


def _in_process(services, conversations) -> dict:
    app_arm(services, conversations[:1], "warmup")  # load and warm everything once
    raw = raw_arm(services.student, services.retriever, conversations, services.settings.max_new_tokens)
    app = app_arm(services, conversations, "bench-app")
    auto = app_arm(services, conversations, "bench-auto", "Auto")
    grounded = hasattr(services.student, "retriever")  # a plain student reads no retrieval
    return {"raw": raw, "app": app, "auto": auto, "retrieval": retrieval_ms(services, conversations) if grounded else [],
            "logging": logging_ms(services)}


def _served(args, settings, services, row, conversations) -> dict:
    serving = students.serving(services.store)
    if (serving or {}).get("version") != (row or {}).get("version"):
        print(f"served arm skipped: {row['version']} is not the serving version (promote it to measure it served)")
        return {}
    out = {}
    env = {"ASSISTANT_CHAT_RATE_LIMIT": 0, "ASSISTANT_SHOW_INTERNALS": "true", "ASSISTANT_EMBEDDER": settings.embedder,
           "ASSISTANT_STUDENT_SLOTS": settings.student_slots, "ASSISTANT_STUDENT_THREADS": settings.student_threads,
           "ASSISTANT_CONCURRENCY": settings.concurrency}
    count = getattr(services.student, "inner", services.student).count_tokens
    with served(settings.home, **env) as app:
        served_arm(app.chat_url, conversations[:1], 1, 0.1, count)  # warm the server's models
        _, last = logged_since(settings.db_path, 0)
        for n in args.sessions:
            print(f"served: {n} session(s) for {args.seconds:g} s ...", flush=True)
            out[n] = served_arm(app.chat_url, conversations, n, args.seconds, count)
            out[("server", n)], last = logged_since(settings.db_path, last)
        out["rss_mb"] = peak_rss_mb(app.pid)
        out["kill"] = kill_after_reply(app, settings.db_path)
    return out


def _report(args, services, source, conversations, results, served_rows) -> None:
    student = services.student
    print(f"\nstudent {student.name} ({student.description}); {source}: {len(conversations)} conversations with 3+ "
          f"customer turns, {sum(len(customer_turns(c)) for c in conversations)} turns; slots "
          f"{services.settings.student_slots}, threads {services.settings.student_threads or os.cpu_count()}")
    print("TTFT / reply p50 and p95 in ms on turns 3+; 'all' columns over every turn; tokens = reply tokens p50\n")
    print(HEADER)
    raw, app = summary(results["raw"]), summary(results["app"])
    print(_row("raw", raw))
    print(_row("app", app))
    print(_row("app, Auto", dict(summary(results["auto"]), tokens_per_s=None)))  # the draft arrives at once
    levels = {n: summary(*served_rows[n]) for n in args.sessions if n in served_rows}
    for n, s in levels.items():
        print(_row(f"served x{n}", s))
        print(_row("  as logged", summary(served_rows[("server", n)])))
    ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"  # noqa: E731
    print(f"\napp / raw tokens/s: {ratio(app['tokens_per_s'], raw['tokens_per_s'])}; TTFT p50 turns 3+: app "
          f"{app['ttft_p50']:.0f} ms, raw {raw['ttft_p50']:.0f} ms")
    ret, lg = results["retrieval"], results["logging"]
    grounding = (f"retrieval + grounding per turn: p50 {statistics.median(ret):.1f} ms, p95 {percentile(ret, 0.95):.1f} "
                 f"ms (inside the app's TTFT)" if ret else "no retrieval on this student's path (a plain student)")
    print(f"{grounding}; logging one exchange: p50 {statistics.median(lg):.1f} ms, p95 {percentile(lg, 0.95):.1f} ms "
          f"(after the last token, outside the TTFT)")
    if levels:
        one, most = levels.get(min(levels)), levels.get(max(levels))
        print(f"throughput x{max(levels)} / x{min(levels)}: {ratio(most['per_hour'], one['per_hour'])}; errors at "
              f"x{max(levels)}: {most['errors']}; served app peak RSS: {served_rows.get('rss_mb') or 0:.0f} MB")
        stored, shown = served_rows["kill"]
        print(f"kill -9 right after a reply was shown: its row {'IS' if stored else 'is NOT'} stored ({shown[:60]!r})")
    for n in levels:
        errors = [r.error for r in served_rows[n][0] if r.error]
        if errors:
            print(f"errors at x{n}: {sorted(set(errors))[:3]}")


if __name__ == "__main__":
    main()
