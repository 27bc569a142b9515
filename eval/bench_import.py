"""Import benchmark: 50,000 conversations (the reference case study's size) in OpenAI chat JSONL.

Generates the file with the sample company's generator (varied turns, PII in the text), then imports it
into a fresh store twice in separate processes, with PII scrubbing on and off, and reports wall time,
conversations/s and peak resident memory of each import process. Targets: under 60 s and under 1 GB.

    python -m eval.bench_import [--n 50000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GENERATOR = Path(__file__).resolve().parent.parent / "data" / "generate_sample.py"


def generate(path: Path, n: int) -> None:
    spec = importlib.util.spec_from_file_location("generate_sample", GENERATOR)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    rng = random.Random(50_000)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps(gen.conversation(rng, i), ensure_ascii=False) + "\n")


def child(path: str, home: str, scrub: bool) -> None:
    from assistant.store import Store
    from distill.importer import import_file

    store = Store(Path(home) / "bench.db")
    t0 = time.perf_counter()
    summary = import_file(store, path, scrub=scrub)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"wall_s": wall, "imported": summary.imported, "near_duplicates": summary.near_duplicates,
                      "rejected": len(summary.rejected), "pii": dict(summary.pii), "peak_rss_mb": peak_kb / 1024}))


def run(path: Path, scrub: bool) -> dict:
    with tempfile.TemporaryDirectory() as home:
        out = subprocess.run([sys.executable, "-m", "eval.bench_import", "--child", str(path), home, str(int(scrub))],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2] == "1")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conversations.jsonl"
        t0 = time.perf_counter()
        generate(path, args.n)
        print(f"generated {args.n} conversations ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")
        on, off = run(path, True), run(path, False)
    for name, r in (("PII scrubbing on ", on), ("PII scrubbing off", off)):
        print(f"{name}: {r['wall_s']:.1f} s, {r['imported'] / r['wall_s']:,.0f} conversations/s, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB, imported {r['imported']}, near-duplicates {r['near_duplicates']}")
    print(f"scrubbing costs {on['wall_s'] / off['wall_s']:.2f}x the time of an import without it "
          f"(PII replaced: {', '.join(f'{k} {v}' for k, v in sorted(on['pii'].items()))})")
    print(f"targets: under 60 s -> {'met' if on['wall_s'] < 60 else 'MISSED'}, "
          f"under 1 GB peak RSS -> {'met' if on['peak_rss_mb'] < 1024 else 'MISSED'}")


if __name__ == "__main__":
    main()
