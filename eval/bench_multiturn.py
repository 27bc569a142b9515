"""Time to first token of the served student in multi-turn conversations, with and without the session's prefix.

The student's layout is append-only (`assistant.grounding`): a follow-up turn's prompt extends the last
one, so llama.cpp, which keeps the previous prompt's KV cache, prefills only the new turn. This replays
held-out conversations turn by turn through the application's own chat path (`chat.respond`, Student
mode, grounding and logging on), the earlier turns being the student's own replies as in a real chat,
once as served ("warm") and once with llama.cpp's cache cleared before every turn ("cold", the cost of
re-reading the whole prompt, which the old layout with the grounding in the system message paid on every
turn). Both in one run, interleaved conversation by conversation.

    python -m eval.bench_multiturn [--conversations 12] [--student VERSION]

Uses the serving student (or --student) and the newest dataset's test split; conversations need 3+
customer turns.
"""

from __future__ import annotations

import argparse
import statistics

from assistant.chat import respond
from distill.sample import open_services
from assistant.settings import Settings


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


def replay(services, conversation: list[dict], session: str, cold: bool) -> list[tuple[int, float, int]]:
    """(customer turn number, TTFT ms, prompt tokens) for each customer turn, answered by the student."""
    engine = getattr(services.student, "inner", services.student).engine
    history, out, turn = [], [], 0
    for m in conversation:
        if m["role"] != "user":
            continue
        turn += 1
        history.append({"role": "user", "content": m["content"]})
        if cold:
            engine.clear_cache()  # forget every KV cache: the whole prompt is prefilled again
        exchange = None
        for event in respond(services, history, "Student", session, turn - 1):
            if event.kind == "done":
                exchange = event.exchange
        history.append({"role": "assistant", "content": exchange["reply"]})
        out.append((turn, exchange["ttft_ms"], exchange["input_tokens"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=12)
    parser.add_argument("--student", help="model version to serve (default: the serving one)")
    args = parser.parse_args()
    from assistant import students
    from distill.dataset import load_dataset
    from distill.pipeline import held_out_retriever

    settings = Settings.from_env()
    services = open_services(settings)
    dd, manifest = load_dataset(services.store)
    services.retriever = held_out_retriever(services.store, settings, dd, services.retriever)
    row = students.resolve(services.store, args.student)
    services.student = students.student_for(row, settings, services.retriever)
    services.follow_registry = False
    conversations = [r["original_messages"] for r in dd["test"]
                     if sum(m["role"] == "user" for m in r["original_messages"]) >= 3][: args.conversations]
    if not conversations:
        raise SystemExit(f"dataset {manifest['version']} has no test conversation with 3+ customer turns")
    replay(services, conversations[0][:3], "bench-warmup", cold=False)  # load and warm everything once
    results = {"warm": [], "cold": []}
    for i, conv in enumerate(conversations):
        for arm in ("warm", "cold"):
            results[arm] += replay(services, conv, f"bench-{arm}-{i}", cold=arm == "cold")
    print(f"student {services.student.name} ({services.student.description}); dataset {manifest['version']}, "
          f"{len(conversations)} test conversations with 3+ customer turns, replayed through chat.respond")
    print(f"{'':24}{'turns':>6}{'TTFT p50 ms':>13}{'TTFT p95 ms':>13}{'prompt tokens':>15}")
    summary = {}
    for arm in ("warm", "cold"):
        for label, keep in (("turns 1-2", lambda t: t <= 2), ("turns 3+", lambda t: t >= 3)):
            rows = [r for r in results[arm] if keep(r[0])]
            ttft = [r[1] for r in rows if r[1] is not None]
            summary[(arm, label)] = statistics.median(ttft)
            print(f"{arm + ', ' + label:24}{len(rows):>6}{statistics.median(ttft):>13.0f}{percentile(ttft, 0.95):>13.0f}"
                  f"{statistics.median(r[2] for r in rows):>15.0f}")
    warm, cold = summary[("warm", "turns 3+")], summary[("cold", "turns 3+")]
    print(f"turns 3+: TTFT p50 cold / warm = {cold / warm:.1f}x; warm p50 {warm:.0f} ms vs 671 ms measured for the "
          f"previous layout (target at most {671 / 3:.0f} ms, 3x lower)")


if __name__ == "__main__":
    main()
