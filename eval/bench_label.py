"""Labelling benchmark: concurrency against a teacher that takes 500 ms per reply, and data/sample end to end.

1. A local OpenAI-compatible fake teacher (eval/fake_teacher.py) answers every request after a fixed
   500 ms. The labeller labels the final turn of N sample conversations at concurrency 1, 4, 8 and 16
   (a fresh store each time, so nothing is reused); throughput is reported as a ratio to concurrency 1.
   Target: at least 7x at concurrency 8.
2. Wall time to label all of data/sample (every agent turn) with the local teacher: the offline
   case-based stand-in, or the configured endpoint once ASSISTANT_TEACHER_MODEL (or ..._BASE_URL) names one.

    python -m eval.bench_label
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

from assistant.retrieval import build_retriever, embedder_for
from assistant.settings import Settings
from assistant.store import Store
from distill.backends import OpenAIBackend
from distill.label import LabelOptions, label
from distill.sample import seed_sample
from eval.fake_teacher import FakeTeacher

DELAY_S = 0.5
CALLS = {1: 12, 4: 48, 8: 96, 16: 160}


def main() -> None:
    settings = Settings.from_env()
    embedder = embedder_for(settings)
    results = {}
    with FakeTeacher(delay_s=DELAY_S) as fake:
        for concurrency, n in CALLS.items():
            with tempfile.TemporaryDirectory() as home:
                store = Store(Path(home) / "bench.db")
                seed_sample(store)
                retriever = build_retriever(store, embedder)
                backend = OpenAIBackend(base_url=fake.url, api_key="k", model="fake-teacher")
                before = fake.calls
                t0 = time.perf_counter()
                r = label(store, replace(settings, home=Path(home)), LabelOptions(
                    source="teacher", concurrency=concurrency, limit=n, final_turn_only=True), backend=backend,
                    retriever=retriever)
                wall = time.perf_counter() - t0
                calls = fake.calls - before
                results[concurrency] = calls / wall
                print(f"concurrency {concurrency:>2}: {calls} calls in {wall:5.1f} s = {calls / wall:5.2f} labels/s "
                      f"({r.status})", flush=True)
    base = results[1]
    print("throughput vs concurrency 1: " + ", ".join(f"{c}: {v / base:.1f}x" for c, v in results.items()))
    print(f"target at least 7x at concurrency 8: {'met' if results[8] / base >= 7 else 'MISSED'}")

    with tempfile.TemporaryDirectory() as home:
        local = replace(settings, home=Path(home))
        store = Store(Path(home) / "bench.db")
        seed_sample(store)
        t0 = time.perf_counter()
        r = label(store, local, LabelOptions(source="teacher", concurrency=4))
        wall = time.perf_counter() - t0
        print(f"\nlabelled all of data/sample ({r.progress.total} agent turns) with the local teacher ({r.teacher}) "
              f"in {wall:.1f} s: {r.progress.accepted} accepted, {r.progress.rejected} rejected")


if __name__ == "__main__":
    main()
