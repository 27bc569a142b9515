"""Benchmark of the chat path: cold start to first reply, and student vs teacher on sample questions.

Everything goes through the application's own code (`open_services` and `chat.respond`), so the
figures are what a user of the UI gets. Ratios are measured in one run, since these machines are noisy.

    python -m eval.bench_chat [--questions 20]

The teacher is whatever the settings configure: the offline case-based stand-in by default, or an
OpenAI-compatible endpoint once ASSISTANT_TEACHER_MODEL (or ASSISTANT_TEACHER_BASE_URL) names one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from assistant.chat import respond
from distill.sample import SAMPLE_DIR, open_services
from assistant.settings import Settings


def sample_questions(n: int) -> list[str]:
    """First customer messages of every k-th sample conversation: deterministic, spread over intents."""
    rows = [json.loads(line) for line in (SAMPLE_DIR / "conversations.jsonl").read_text().splitlines()]
    step = max(1, len(rows) // n)
    return [rows[i]["messages"][0]["content"] for i in range(0, step * n, step)][:n]


def cold_start_child() -> None:
    t0 = time.perf_counter()
    services = open_services(Settings.from_env())
    t_ready = time.perf_counter()
    exchange = None
    for event in respond(services, [{"role": "user", "content": "How do I reset my password?"}], "Student", "bench"):
        if event.kind == "done":
            exchange = event.exchange
    t_done = time.perf_counter()
    print(json.dumps({"ready_s": t_ready - t0, "first_reply_s": t_done - t0, "ttft_ms": exchange["ttft_ms"]}))


def cold_start() -> dict:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "ASSISTANT_HOME": home}
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "eval.bench_chat", "--cold-start-child"], env=env,
                             capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        child = json.loads(out.stdout.strip().splitlines()[-1])
        return {"process_to_first_reply_s": wall, **child}


def run_mode(services, questions: list[str], mode: str) -> list[dict]:
    results = []
    for i, q in enumerate(questions):
        for event in respond(services, [{"role": "user", "content": q}], mode, f"bench-{mode}", i):
            if event.kind == "done":
                results.append(event.exchange)
    return results


def summarise(rows: list[dict]) -> dict:
    lat = [r["latency_ms"] for r in rows]
    ttft = [r["ttft_ms"] for r in rows if r["ttft_ms"] is not None]
    tps = [r["tokens_per_s"] for r in rows if r.get("tokens_per_s")]
    return {
        "model": rows[0]["model_name"],
        "p50_latency_ms": statistics.median(lat),
        "p95_latency_ms": sorted(lat)[max(0, round(0.95 * len(lat)) - 1)],
        "mean_ttft_ms": statistics.mean(ttft) if ttft else None,
        "mean_output_tokens": statistics.mean(r["output_tokens"] or 0 for r in rows),
        "tokens_per_s": statistics.median(tps) if tps else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--cold-start-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold_start_child:
        cold_start_child()
        return

    print("cold start (fresh state directory, new process)...", flush=True)
    cold = cold_start()
    print(f"  process start -> services ready: {cold['ready_s']:.1f} s")
    print(f"  process start -> first reply done: {cold['process_to_first_reply_s']:.1f} s "
          f"(first reply TTFT {cold['ttft_ms']:.0f} ms)")

    with tempfile.TemporaryDirectory() as home:
        services = open_services(replace(Settings.from_env(), home=Path(home)))
        questions = sample_questions(args.questions)
        run_mode(services, questions[:2], "Student")  # warm caches so the first question is not penalised
        student = summarise(run_mode(services, questions, "Student"))
        teacher = summarise(run_mode(services, questions, "Teacher"))
        auto_rows = run_mode(services, questions, "Auto")
    print(f"\n{len(questions)} sample questions through chat.respond, one run:")
    print(f"{'':22}{'student':>14}{'teacher':>14}{'student/teacher':>18}")
    print(f"{'model':22}{student['model'][:13]:>14}{teacher['model'][:13]:>14}")
    for key in ("p50_latency_ms", "p95_latency_ms", "mean_ttft_ms", "mean_output_tokens", "tokens_per_s"):
        s, t = student[key], teacher[key]
        ratio = f"{s / t:.2f}x" if s and t else "–"
        fmt = lambda v: f"{v:>14.1f}" if v is not None else f"{'–':>14}"
        print(f"{key:22}{fmt(s)}{fmt(t)}{ratio:>18}")
    share = sum(r["routed_to"] == "teacher" for r in auto_rows) / len(auto_rows)
    print(f"\nAuto mode sent {share:.0%} of these questions to the teacher (threshold {services.settings.router_threshold}).")
    if services.teacher_is_standin:
        print("Note: the teacher is the offline case-based stand-in (retrieval, no generation), so it is faster than "
              "any generating model; configure a teacher endpoint to measure a real one.")


if __name__ == "__main__":
    main()
