"""Accuracy of the served student against how much grounding its prompt carries, to choose the default budget.

    python -m eval.bench_grounding [--student VERSION] [--limit N]

The retrieval-augmented student reads, after each customer message, up to `kb` help-center passages and `cases`
past agent replies, each clipped (`assistant.grounding.Budget`). More grounding means more prompt tokens to
prefill (time to first token) and, for a 135M model, more text to get lost in. For each budget below, the
serving student answers every labelled test turn that has gold facts (the history as it really happened, its
own test conversation never retrieved), and the table gives:

- prompt tokens (mean) and the turns whose grounding holds all the turn's gold facts (what the prompt makes
  available: an upper bound for a student that copies well);
- gold-fact accuracy (share of turns whose reply states all gold facts, as the A/B report counts it) with its
  95% interval.

The student was trained with the default budget; the other rows serve it a budget it was not trained on, so
they show what each piece of grounding is worth to *this* student, not what a student trained on that budget
would reach (a training run per budget takes about 45 minutes here). Also `served_accuracy`, used by
`eval.bench_quant`.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from assistant import students
from assistant.grounding import DEFAULT_BUDGET, Budget, student_layout
from assistant.models import GroundedStudent
from assistant.settings import Settings
from distill.scoring import gold_fact_recall
from distill.sample import open_services
from eval.stats import bootstrap_ci

BUDGETS = [
    ("no grounding", Budget(kb=0, cases=0)),
    ("1 reply", Budget(kb=0, cases=1)),
    ("1 passage", Budget(kb=1, cases=0)),
    ("1 passage + 1 reply", Budget(kb=1, cases=1)),
    ("default: 1 passage + 2 replies", DEFAULT_BUDGET),
    ("default, clipped to 200", replace(DEFAULT_BUDGET, passage_chars=200, case_chars=200, first_chars=450)),
    ("default, clipped to 300", replace(DEFAULT_BUDGET, passage_chars=300, case_chars=300, first_chars=650)),
]


def gold_turns(services, settings, limit: int | None = None) -> tuple[str, list[dict]]:
    """(dataset version, the test split's labelled turns that have gold facts); retrieval then leaves the
    validation and test conversations out."""
    from distill.dataset import load_dataset
    from distill.pipeline import held_out_retriever
    from eval.abtest import evaluation_turns

    dd, manifest = load_dataset(services.store)
    services.retriever = held_out_retriever(services.store, settings, dd, services.retriever)
    turns = [t for t in evaluation_turns(dd, None, manifest["version"]) if any(f.strip() for f in t["gold_facts"])]
    return manifest["version"], turns[:limit] if limit else turns


def served_accuracy(model, turns: list[dict], max_tokens: int, workers: int = 8) -> dict:
    """Every turn answered by `model` (several at once, as the engine serves chats); accuracy with its interval."""
    with ThreadPoolExecutor(workers) as pool:
        replies = list(pool.map(lambda t: model.complete(t["history"], max_tokens), turns))
    complete = [float(gold_fact_recall(r.text, t["gold_facts"]) == 1.0) for r, t in zip(replies, turns)]
    mean, low, high = bootstrap_ci(complete)
    return {"accuracy": mean, "low": low, "high": high, "n": len(turns),
            "prompt_tokens": sum(r.input_tokens or 0 for r in replies) / len(replies),
            "reply_tokens": sum(r.output_tokens or 0 for r in replies) / len(replies)}


def available(retriever, turns: list[dict], budget: Budget) -> float:
    """Share of turns whose grounded prompt holds every gold fact of the turn."""
    held = 0
    for t in turns:
        layout = student_layout(t["history"], retriever, t["conversation_id"], budget=budget)
        held += gold_fact_recall("\n".join(m["content"] for m in layout if m["role"] == "user"), t["gold_facts"]) == 1.0
    return held / len(turns)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", help="model version (default: the serving one)")
    parser.add_argument("--limit", type=int, help="at most this many turns")
    args = parser.parse_args(argv)
    settings = replace(Settings.from_env(), seed_sample=False)
    services = open_services(settings)
    version, turns = gold_turns(services, settings, args.limit)
    row = students.resolve(services.store, args.student)
    student = students.student_for(row, settings, services.retriever)
    if not isinstance(student, GroundedStudent):
        raise SystemExit(f"{student.name} is not retrieval-augmented: it reads no grounding")
    print(f"student {student.name}; dataset {version}: {len(turns)} test turns with gold facts\n")
    print(f"{'grounding':34}{'prompt tokens':>14}{'facts in prompt':>16}{'accuracy':>10}{'95% interval':>16}")
    for label, budget in BUDGETS:
        model = GroundedStudent(student.inner, services.retriever, budget)
        result = served_accuracy(model, turns, settings.max_new_tokens)
        print(f"{label:34}{result['prompt_tokens']:>14.0f}{available(services.retriever, turns, budget):>16.1%}"
              f"{result['accuracy']:>10.1%}{'':>4}{result['low']:.1%}-{result['high']:.1%}", flush=True)


if __name__ == "__main__":
    main()
