"""The A/B report a support lead reviews before trusting the student: one self-contained HTML file
(plots embedded, opens with no server) and the same content as Markdown.

Built from the store alone (the latest evaluation run, its measurements, and the chat logs), so it can be
re-rendered any time without loading a model.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections import defaultdict
from pathlib import Path

from assistant.store import Store, now
from eval.abtest import load_run
from eval.online import online_stats, router_stats
from eval.stats import bootstrap_ci, percentile

ARM_LABELS = {"teacher": "Teacher", "student": "Distilled student", "base": "Base student", "routed": "Routed",
              "retrieval": "Retrieval baseline (no model)"}
COLORS = {"teacher": "#1f4e79", "student": "#2e8b57", "base": "#9aa5b1", "routed": "#d08c2b", "retrieval": "#8e6bb5"}


def accuracy_definition(items: list[dict]) -> tuple[str, str]:
    """(key, sentence): which per-item score is 'accuracy' for this run."""
    if any(it.get("gold_complete") is not None for it in items):
        return "gold_complete", ("**Accuracy** = share of evaluated agent turns whose reply states *all* the gold facts of "
                                 "that turn (numbers, steps, names; matched on normalised text). Turns without gold facts "
                                 "are not counted. 95% confidence intervals by bootstrap (2,000 resamples).")
    if any(it.get("judge") for it in items):
        return "judge_accurate", ("**Accuracy** = share of replies the judge graded correct, complete and safe against the "
                                  "reference. 95% confidence intervals by bootstrap.")
    return "semantic_match", ("**Accuracy** = share of replies whose meaning matches the reference (all-MiniLM cosine "
                              "similarity ≥ 0.75); there are no gold facts and no judge for this run. 95% CIs by bootstrap.")


def _value(it: dict, key: str):
    if key == "judge_accurate":
        return (it.get("judge") or {}).get("accurate")
    if key == "semantic_match":
        return float((it.get("semantic_similarity") or 0) >= 0.75)
    return it.get(key)


def summarise(items: list[dict], measurements: dict) -> tuple[dict, str, str]:
    key, definition = accuracy_definition(items)
    by_arm: dict[str, list[dict]] = defaultdict(list)
    for it in items:
        by_arm[it["arm"]].append(it)
    summary = {}
    for arm, rows in by_arm.items():
        acc = [_value(r, key) for r in rows if _value(r, key) is not None]
        lat = [r["latency_ms"] for r in rows if r.get("latency_ms") is not None]
        costs = [r["cost"] for r in rows if r.get("cost") is not None]
        judged = [r["judge"]["accurate"] for r in rows if r.get("judge")]
        m = measurements.get(arm, {})
        summary[arm] = {
            "n": len(rows), "accuracy": bootstrap_ci(acc), "gold_recall": _mean(r.get("gold_recall") for r in rows),
            "rouge_l": _mean(r.get("rouge_l") for r in rows), **corpus_bleu(rows),
            "semantic_similarity": _mean(r.get("semantic_similarity") for r in rows),
            "judge_accuracy": bootstrap_ci(judged) if judged else None,
            "p50_ms": percentile(lat, 0.5), "p95_ms": percentile(lat, 0.95),
            "ttft_ms": percentile([r["ttft_ms"] for r in rows if r.get("ttft_ms") is not None], 0.5),
            "tokens_per_s": percentile([r["tokens_per_s"] for r in rows if r.get("tokens_per_s")], 0.5),
            "cost_per_1000": 1000 * sum(costs) / len(costs) if costs else None,
            "teacher_share": (sum(r.get("routed_to") == "teacher" for r in rows) / len(rows)) if arm == "routed" else None,
            **{k: m.get(k) for k in ("parameters", "file_mb", "peak_rss_mb", "throughput_c1_qph", "throughput_c8_qph")},
        }
    return summary, key, definition


def corpus_bleu(rows: list[dict]) -> dict:
    """{"bleu": the arm's corpus BLEU by sacrebleu, "bleu_signature": how it was computed}; None without replies."""
    pairs = [(r["reply"], r["reference"]) for r in rows if r.get("reply") is not None and r.get("reference") is not None]
    if not pairs:
        return {"bleu": None, "bleu_signature": None}
    import evaluate

    from eval.abtest import METRICS_DIR

    out = evaluate.load(str(METRICS_DIR / "bleu")).compute(predictions=[p for p, _ in pairs], references=[r for _, r in pairs])
    return {"bleu": out["bleu"], "bleu_signature": out["signature"]}


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


# Turn depth: a model that loses a long conversation's context (a name, an order number given once,
# "as I said above") answers the first turns well and the deep ones badly; the breakdown shows it as a number.
DEPTH_BUCKETS = (("1-2", 1, 2), ("3-5", 3, 5), ("6+", 6, None))


def turn_depth(item: dict) -> int:
    """The agent turn's number in its conversation, 1-based: how many customer messages came before it."""
    history = item.get("history")
    if history:
        return max(1, sum(m.get("role") == "user" for m in history))
    # no history stored: `turn` is the message index in a transcript that opens with the customer and alternates
    return max(1, (int(item.get("turn") or 0) + 1) // 2)


def depth_bucket(depth: int) -> str:
    return next(label for label, lo, hi in DEPTH_BUCKETS if depth >= lo and (hi is None or depth <= hi))


def depth_breakdown(items: list[dict], key: str | None = None) -> dict[str, dict[str, dict]]:
    """Per arm and turn-depth bucket: {"n": turns counted, "accuracy": (mean, low, high) or None}.

    The same accuracy as everywhere in the report (see accuracy_definition), counted over the same turns
    (a turn without gold facts is not counted when accuracy is gold-fact accuracy)."""
    if key is None:
        key, _ = accuracy_definition(items)
    values: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for it in items:
        arm_values = values[it["arm"]]  # an arm with nothing to count still gets its row
        v = _value(it, key)
        if v is not None:
            arm_values[depth_bucket(turn_depth(it))].append(v)
    arms = [a for a in ARM_LABELS if a in values] + sorted(a for a in values if a not in ARM_LABELS)
    return {arm: {label: {"n": len(values[arm][label]), "accuracy": bootstrap_ci(values[arm][label])}
                  for label, _, _ in DEPTH_BUCKETS} for arm in arms}


def depth_gap(by_depth: dict[str, dict]) -> float | None:
    """Accuracy at turns 6+ minus turns 1-2, in points (negative: worse deep in the conversation)."""
    deep, first = by_depth["6+"]["accuracy"], by_depth["1-2"]["accuracy"]
    return None if deep is None or first is None else (deep[0] - first[0]) * 100


def depth_notes(breakdown: dict[str, dict[str, dict]], tolerance: float = 10.0) -> list[str]:
    """Plain sentences for the arms whose deep turns fall more than `tolerance` points behind their first ones."""
    out = []
    for arm, by_depth in breakdown.items():
        gap = depth_gap(by_depth)
        if gap is not None and gap < -tolerance:
            deep, first = by_depth["6+"], by_depth["1-2"]
            beyond = " (beyond the confidence intervals)" if deep["accuracy"][2] < first["accuracy"][1] else ""
            out.append(f"⚠️ {ARM_LABELS.get(arm, arm)}: accuracy at turns 6+ is **{-gap:.0f} points below** turns 1-2"
                       f"{beyond}, {deep['accuracy'][0]:.1%} of {deep['n']} vs {first['accuracy'][0]:.1%} of {first['n']}: "
                       "it loses what was said earlier in long conversations.")
    return out


def _pct_change(new, old):
    if new is None or old in (None, 0):
        return "–"
    ratio = new / old
    if ratio >= 10 or (0 < ratio <= 0.1):
        return f"×{ratio:,.0f}" if ratio >= 10 else f"÷{1 / ratio:,.0f}"  # "+166015%" reads worse than "×1,660"
    return f"{(ratio - 1) * 100:+.0f}%"


def _fmt(v, kind):
    if v is None:
        return "–"
    if kind == "acc":
        return f"{v[0]:.1%} ({v[1]:.0%}–{v[2]:.0%})"
    if kind == "params":
        return f"{v / 1e6:,.0f}M" if v < 1e9 else f"{v / 1e9:,.1f}B"
    if kind == "mb":
        return f"{v:,.0f} MB"
    if kind == "ms":
        return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms"
    if kind == "qph":
        return f"{v:,.0f}/h"
    if kind == "usd":
        return f"${v:.4f}"
    return f"{v:.3f}"


HEADLINE = [("Parameters", "parameters", "params"), ("Peak memory (serving process)", "peak_rss_mb", "mb"),
            ("Model file", "file_mb", "mb"), ("Latency p50", "p50_ms", "ms"), ("Latency p95", "p95_ms", "ms"),
            ("Time to first token (p50)", "ttft_ms", "ms"), ("Accuracy", "accuracy", "acc"),
            ("Throughput, 1 at a time", "throughput_c1_qph", "qph"), ("Throughput, 8 in parallel", "throughput_c8_qph", "qph"),
            ("Cost per 1,000 queries", "cost_per_1000", "usd")]


def _headline_rows(summary, left, right):
    rows = []
    for label, key, kind in HEADLINE:
        a, b = summary.get(left, {}).get(key), summary.get(right, {}).get(key)
        change = _pct_change(b[0] if isinstance(b, tuple) else b, a[0] if isinstance(a, tuple) else a)
        rows.append((label, _fmt(a, kind), _fmt(b, kind), change))
    return rows


def _plot_png(draw) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 3.6), dpi=110)
    draw(ax)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _draw_latency(ax, arms: list[str], by_arm: dict) -> None:
    data = [[r["latency_ms"] / 1000 for r in by_arm[a] if r.get("latency_ms") is not None] for a in arms]
    box = ax.boxplot(data, vert=False, patch_artist=True, showfliers=True)
    for patch, a in zip(box["boxes"], arms):
        patch.set_facecolor(COLORS[a])
        patch.set_alpha(0.6)
    ax.set_yticks(range(1, len(arms) + 1), [ARM_LABELS[a] for a in arms])
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlabel("seconds per reply (log scale)")
    ax.set_title("Reply latency")


def _draw_per_intent(ax, arms: list[str], by_arm: dict, items: list[dict], acc_key: str) -> None:
    intents = sorted({it["intent"] for it in items})
    width = 0.8 / max(1, len(arms))
    for k, a in enumerate(arms):
        vals = []
        for intent in intents:
            v = [_value(r, acc_key) for r in by_arm[a] if r["intent"] == intent and _value(r, acc_key) is not None]
            vals.append(sum(v) / len(v) if v else 0)
        ax.bar([i + k * width for i in range(len(intents))], vals, width, label=ARM_LABELS[a], color=COLORS[a])
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(intents))], intents, rotation=70, fontsize=6)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy per intent")
    ax.legend(fontsize=6, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.08), frameon=False)


def _draw_accuracy_latency(ax, arms: list[str], summary: dict) -> None:
    for a in arms:
        s = summary[a]
        if s["accuracy"] and s["p50_ms"] is not None:
            ax.scatter(s["p50_ms"] / 1000, s["accuracy"][0], s=80, color=COLORS[a], label=ARM_LABELS[a])
            ax.errorbar(s["p50_ms"] / 1000, s["accuracy"][0],
                        yerr=[[s["accuracy"][0] - s["accuracy"][1]], [s["accuracy"][2] - s["accuracy"][0]]], color=COLORS[a])
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlabel("median latency, seconds (log scale)")
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_title("Accuracy vs latency")
    ax.legend(fontsize=7)


def _draw_cost_quality(ax, arms: list[str], summary: dict) -> None:
    for a in arms:
        s = summary[a]
        if s["accuracy"] and s["cost_per_1000"] is not None:
            ax.scatter(s["cost_per_1000"], s["accuracy"][0], s=80, color=COLORS[a], label=ARM_LABELS[a])
    ax.set_xlabel("US$ per 1,000 queries")
    ax.set_ylabel("accuracy")
    ax.set_title("Cost vs quality")
    ax.legend(fontsize=7)


def _draw_per_depth(ax, arms: list[str], by_depth: dict) -> None:
    labels = [label for label, _, _ in DEPTH_BUCKETS]
    shown = [a for a in arms if a in by_depth]
    width = 0.8 / max(1, len(shown))
    for k, a in enumerate(shown):
        xs, ys, err = [], [], [[], []]
        for i, label in enumerate(labels):
            acc = by_depth[a][label]["accuracy"]
            if acc is None:
                continue
            xs.append(i + k * width)
            ys.append(acc[0])
            err[0].append(acc[0] - acc[1])
            err[1].append(acc[2] - acc[0])
        ax.bar(xs, ys, width, yerr=err, capsize=2, label=ARM_LABELS[a], color=COLORS[a], error_kw={"elinewidth": 0.8})
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))],
                  [f"turns {label}" for label in labels])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_title("Accuracy by turn depth")
    ax.legend(fontsize=6, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.08), frameon=False)


def plots(items: list[dict], summary: dict, acc_key: str, by_depth: dict | None = None) -> dict[str, str]:
    """The report's figures as base64 PNGs, by caption."""
    arms = [a for a in ARM_LABELS if a in summary]
    by_depth = by_depth if by_depth is not None else depth_breakdown(items, acc_key)
    by_arm = defaultdict(list)
    for it in items:
        by_arm[it["arm"]].append(it)
    return {"Reply latency": _plot_png(lambda ax: _draw_latency(ax, arms, by_arm)),
            "Accuracy per intent": _plot_png(lambda ax: _draw_per_intent(ax, arms, by_arm, items, acc_key)),
            "Accuracy vs latency": _plot_png(lambda ax: _draw_accuracy_latency(ax, arms, summary)),
            "Cost vs quality": _plot_png(lambda ax: _draw_cost_quality(ax, arms, summary)),
            "Accuracy by turn depth": _plot_png(lambda ax: _draw_per_depth(ax, arms, by_depth))}


def worst_student_answers(items: list[dict], n: int = 8) -> list[dict]:
    teacher = {(it["conversation_id"], it["turn"]): it for it in items if it["arm"] == "teacher"}
    student = [it for it in items if it["arm"] == "student"]
    student.sort(key=lambda it: ((it.get("gold_recall") if it.get("gold_recall") is not None else 1.0),
                                 it.get("semantic_similarity") or 0))
    out = []
    for it in student[:n]:
        t = teacher.get((it["conversation_id"], it["turn"]), {})
        out.append({"customer": next((m["content"] for m in reversed(it["history"]) if m["role"] == "user"), ""),
                    "student": it["reply"], "teacher": t.get("reply", "–"), "reference": it["reference"],
                    "gold_facts": it.get("gold_facts") or [], "intent": it["intent"]})
    return out


def verdicts(summary: dict) -> list[str]:
    out = []
    s, t, r, b = (summary.get(k) for k in ("student", "teacher", "retrieval", "base"))
    if s and t and s["accuracy"] and t["accuracy"] and t["accuracy"][0]:
        out.append(f"The distilled student keeps **{s['accuracy'][0] / t['accuracy'][0]:.0%} of the teacher's accuracy** "
                   f"({s['accuracy'][0]:.1%} vs {t['accuracy'][0]:.1%}; the reference case study kept 92%).")
    if s and r and s["accuracy"] and r["accuracy"]:
        if s["accuracy"][1] > r["accuracy"][2]:
            out.append("The student **beats the no-model retrieval baseline** beyond the confidence intervals: it is worth serving.")
        elif s["accuracy"][0] > r["accuracy"][0]:
            out.append("The student scores above the no-model retrieval baseline, but the confidence intervals overlap: "
                       "the advantage is not established on this test set.")
        else:
            out.append("⚠️ **The student does not beat the no-model retrieval baseline** (returning the agent reply of the most "
                       "similar past conversation). It is not worth serving as it is: train longer or on more data.")
    if s and b and s["accuracy"] and b["accuracy"]:
        out.append(f"Distillation moved accuracy from {b['accuracy'][0]:.1%} (base student) to {s['accuracy'][0]:.1%}.")
    if s and t and s.get("p50_ms") and t.get("p50_ms"):
        out.append(f"Median latency {_fmt(t['p50_ms'], 'ms')} (teacher) → {_fmt(s['p50_ms'], 'ms')} (student), "
                   f"{_pct_change(s['p50_ms'], t['p50_ms'])}.")
    return out


class Page:
    """The report being written: every piece goes to the Markdown and to the HTML side by side."""

    def __init__(self) -> None:
        self.md: list[str] = []
        self.body: list[str] = []

    def add(self, md: str, body: str) -> None:
        self.md.append(md)
        self.body.append(body)

    def paragraph(self, text: str, *, md_prefix: str = "", markup: bool = True) -> None:
        """A paragraph; its **bold**, *italic* and `code` become HTML unless markup is False (shown as written)."""
        self.add(f"{md_prefix}{text}\n", f"<p>{_md_inline(text) if markup else html.escape(text)}</p>")

    def table(self, title: str, header: list[str], rows: list[list[str]]) -> None:
        self.add(f"\n## {title}\n\n| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n" +
                 "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n",
                 f"<h2>{html.escape(title)}</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) +
                 "</tr>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                 + "</table>")


def _judge_note(run: dict) -> str:
    if run["judge"]:
        return (f"Judge: **{run['judge']}** graded correctness, completeness and safety against the reference; student "
                "vs teacher was also compared pairwise, asked in both orders to cancel position bias.")
    return ("**Judge skipped**: no capable judge model is configured (the offline stand-ins are not judges). "
            "Set a teacher endpoint, or `assistant eval --judge BASE_URL#MODEL`, to add judge accuracy.")


def _head(page: Page, run: dict, title: str, summary: dict, definition: str, models: dict) -> None:
    """Title, verdicts, what accuracy means here, and whether the teacher was the offline stand-in."""
    page.add(f"# {title}\n\nGenerated {now()} from dataset `{run['dataset_version']}`, {run['n_turns']} held-out agent turns.\n",
             f"<h1>{html.escape(title)}</h1><p class='muted'>Generated {now()} · dataset <code>{run['dataset_version']}</code> · "
             f"{run['n_turns']} held-out agent turns (test split, never trained on)</p>")
    v = verdicts(summary)
    if v:
        page.add("\n".join(f"- {x}" for x in v) + "\n",
                 "<div class='verdict'><ul>" + "".join(f"<li>{_md_inline(x)}</li>" for x in v) + "</ul></div>")
    page.paragraph(definition)
    if models.get("teacher", {}).get("name") == "case-based":
        note = ("The teacher here is the offline case-based stand-in (no teacher API configured): it answers with "
                "agents' replies from similar resolved conversations, never from the test conversations.")
        page.add(f"> {note}\n", f"<p class='note'>{html.escape(note)}</p>")


def _arm_row(arm: str, s: dict, models: dict) -> list[str]:
    model = models.get(arm, {}).get("name") or ("router: student + teacher" if arm == "routed" else "–")
    return [ARM_LABELS[arm], model, _fmt(s["accuracy"], "acc"), _fmt(s["gold_recall"], "x"), _fmt(s["rouge_l"], "x"),
            "–" if s["bleu"] is None else f"{s['bleu']:.1f}", _fmt(s["semantic_similarity"], "x"),
            _fmt(s["judge_accuracy"], "acc"), _fmt(s["p50_ms"], "ms"), _fmt(s["p95_ms"], "ms"),
            "–" if not s["tokens_per_s"] else f"{s['tokens_per_s']:.0f}", _fmt(s["cost_per_1000"], "usd"),
            "–" if s["teacher_share"] is None else f"{s['teacher_share']:.0%}"]


def _arm_tables(page: Page, summary: dict, models: dict) -> None:
    if "teacher" in summary and "student" in summary:
        page.table("Headline: teacher vs distilled student", ["", "Teacher", "Distilled student", "Change"],
                   _headline_rows(summary, "teacher", "student"))
    if "base" in summary and "student" in summary:
        page.table("Base vs distilled student", ["", "Base student", "Distilled student", "Change"],
                   _headline_rows(summary, "base", "student"))
    page.table("All arms", ["Arm", "Model", "Accuracy (95% CI)", "Gold-fact recall", "ROUGE-L", "BLEU", "Semantic sim.",
                            "Judge accuracy", "p50", "p95", "Tokens/s", "Cost / 1k", "To teacher"],
               [_arm_row(a, summary[a], models) for a in ARM_LABELS if a in summary])
    signature = next((s["bleu_signature"] for s in summary.values() if s.get("bleu_signature")), None)
    if signature:
        page.paragraph(f"BLEU is each arm's corpus BLEU by sacrebleu, signature `{signature}`; ROUGE-L by rouge-score.")


def _depth_section(page: Page, by_depth: dict, items: list[dict]) -> None:
    """Accuracy by turn depth, warnings for arms that lose the context, and the pairwise tally."""
    def cell(d):
        return "–" if d["accuracy"] is None else f"{_fmt(d['accuracy'], 'acc')}, n={d['n']}"

    page.table("Accuracy by turn depth", ["Arm"] + [f"Turns {label}" for label, _, _ in DEPTH_BUCKETS] + ["6+ vs 1-2"],
               [[ARM_LABELS.get(a, a)] + [cell(d[label]) for label, _, _ in DEPTH_BUCKETS]
                + ["–" if depth_gap(d) is None else f"{depth_gap(d):+.0f} points"] for a, d in by_depth.items()])
    depth_text = ("Depth = the agent turn's number in its conversation (how many customer messages came before it); "
                  "n = turns counted. A model that loses earlier context (a name or an order number given once, "
                  "\"as I said above\") scores lower on deep turns than on the first ones.")
    for line in [depth_text] + depth_notes(by_depth):
        page.paragraph(line)
    pair = [it.get("pairwise_vs_teacher") for it in items if it["arm"] == "student" and it.get("pairwise_vs_teacher")]
    if pair:
        page.paragraph(f"Pairwise (student vs teacher, both orders): student better {pair.count('first')}, teacher better "
                       f"{pair.count('second')}, tie or inconsistent {pair.count('tie')}.", markup=False)


def _calibrated_thresholds(store: Store) -> dict:
    """Router name -> the threshold its current version was calibrated to (`assistant router calibrate`)."""
    from assistant.router import ROUTERS, build_router

    shares = {}
    for name in ROUTERS:
        serving = store.serving_router() if name == "learned" else None
        if name == "learned" and serving is None:
            continue
        version = serving["version"] if serving else build_router(name).version
        calibration = store.router_calibration(name, version)
        if calibration:
            shares[name] = calibration["threshold"]
    return shares


def _share_cell(p: dict, teacher: float) -> str:
    ci = p.get("vs_random_ci")
    vs = f"{p['vs_random'] * 100:+.1f} pts" + (f" ({ci[1] * 100:+.1f}…{ci[2] * 100:+.1f})" if ci else "")
    return f"{p['accuracy']:.1%} ({p['accuracy'] / teacher:.0%} of teacher), {vs} vs random" if teacher else "–"


def _draw_router_curves(ax, curves: dict) -> None:
    from eval.routing import KEEP

    for name, c in curves["routers"].items():
        ax.plot([p["share"] for p in c["points"]], [p["accuracy"] for p in c["points"]], label=name)
        op = c["operating"]
        ax.scatter([op["share"]], [op["accuracy"]], s=30)
    s, t = curves["student"], curves["teacher"]
    ax.plot([0, 1], [s, t], linestyle="--", color="#888", label="random routing")
    ax.axhline(KEEP * t, linestyle=":", color="#1f4e79", linewidth=0.8, label=f"{KEEP:.0%} of teacher")
    ax.set_xlabel("share of turns sent to the teacher")
    ax.set_ylabel("accuracy")
    ax.set_title("Routers: accuracy vs teacher share")
    ax.legend(fontsize=6)


def _tier_table(page: Page, items: list[dict], acc_key: str, router: str) -> None:
    """What a third tier in front (a verbatim past answer where the nearest case is this close) does to a router."""
    from eval.routing import tier_effect

    rows = tier_effect(items, lambda it: _value(it, acc_key), router)
    if not rows:
        return

    def share(v):
        return "never" if v is None else f"{v:.0%}"

    page.table(f"A third tier in front of {router}: a verbatim past answer when retrieval is near-certain",
               ["Case similarity ≥", "Answered verbatim", "Accuracy at 25% to the teacher (two tiers → three)",
                "Keeps 98% of teacher at (two tiers → three)"],
               [[f"{r['cutoff']:.2f}", f"{r['verbatim_share']:.0%}", f"{r['at_25_two_tiers']:.1%} → {r['at_25']:.1%}",
                 f"{share(r['keeps_98_at_two_tiers'])} → {share(r['keeps_98_at'])}"] for r in rows])


def _routing_section(page: Page, items: list[dict], acc_key: str, store: Store) -> None:
    """Cost-quality curve per router against random routing, APGR and the operating point (eval.routing)."""
    from eval.routing import router_curves

    curves = router_curves(items, lambda it: _value(it, acc_key), _calibrated_thresholds(store))
    if not curves["routers"]:
        return
    t = curves["teacher"]
    rows = []
    for name, c in sorted(curves["routers"].items(), key=lambda kv: -(kv[1]["apgr"] or 0)):
        op = c["operating"]
        rows.append([name, "–" if c["apgr"] is None else f"{c['apgr']:.2f}", _share_cell(c["at_25"], t),
                     "never" if c["keeps_98_at"] is None else f"{c['keeps_98_at']:.0%}",
                     f"{op['share']:.0%}: " + _share_cell(op, t), _fmt(op["p50_ms"], "ms"), _fmt(op["cost_per_1000"], "usd")])
    page.table("Routing: accuracy per share of teacher calls", ["Router", "APGR", "At 25% to the teacher",
               "Keeps 98% of teacher at", "Operating point (share: accuracy)", "p50 there", "Cost / 1k there"], rows)
    page.paragraph(f"Over {curves['n']} turns with both replies scored: student {curves['student']:.1%}, teacher {t:.1%}. "
                   "Each router sends its highest-scoring turns to the teacher; random routing at the same share is the "
                   "student's accuracy plus that share of the gap. *vs random* is the difference in points with its 95% "
                   "paired bootstrap interval: a router beats random where the interval stays above 0. APGR = the mean "
                   "share of the teacher-student gap recovered over shares 0-100% (random: 0.50). The operating point is "
                   "the calibrated threshold (`assistant router calibrate`) applied here, else the smallest share keeping 98% of the "
                   "teacher; latency and cost there count a cascade's spent draft. Shares here are of the turns counted "
                   "(those with both replies scored); the routed arm's *To teacher* above is of all turns.")
    _tier_table(page, items, acc_key, max(curves["routers"], key=lambda n: curves["routers"][n]["apgr"] or 0))
    figure = _plot_png(lambda ax: _draw_router_curves(ax, curves))
    page.add("", f"<figure><img alt='router curves' src='data:image/png;base64,{figure}'/><figcaption>Routers: "
                 "accuracy vs teacher share</figcaption></figure>")


def _plots_section(page: Page, figures: dict[str, str]) -> None:
    page.add("\n## Plots\n\nSee the HTML report (plots are embedded there).\n",
             "<h2>Plots</h2><div class='grid'>" + "".join(
                 f"<figure><img alt='{html.escape(k)}' src='data:image/png;base64,{b}'/><figcaption>{html.escape(k)}"
                 "</figcaption></figure>" for k, b in figures.items()) + "</div>")


def _online_section(page: Page, online: dict) -> None:
    """What the chat logs say per arm: exchanges, thumbs, latency, cost; and the shadow answers."""
    rows = [[arm, str(s["exchanges"]), str(s["rated"]),
             "–" if s["thumbs_up_rate"] is None else f"{s['thumbs_up_rate']:.0%}", _fmt(s["p50_latency_ms"], "ms"),
             _fmt(s["p95_latency_ms"], "ms"), _fmt(s["cost_per_1000"], "usd")] for arm, s in sorted(online["arms"].items())]
    if not rows:
        page.add("\n## Online\n\nNo chat exchanges logged yet.\n",
                 "<h2>Online: from the chat logs</h2><p>No chat exchanges logged yet.</p>")
        return
    page.table("Online: from the chat logs", ["Arm", "Exchanges", "Rated", "Thumbs up", "p50", "p95", "Cost / 1k"], rows)
    comp, sh = online["student_vs_teacher_thumbs"], online["shadow"]
    sentence = comp["plain"] if comp else "Not enough rated student and teacher replies to compare thumbs-up rates yet."
    sentence += (f" Shadow answers: {sh['answers']} stored, {sh['judged']} judged"
                 + (f"; the judge found the student accurate on {sh['student_accuracy']:.0%} of shadowed turns."
                    if sh["student_accuracy"] is not None else "."))
    page.paragraph(sentence, markup=False)
    routers = online.get("routers") or []
    if routers:
        page.table("Online: Auto mode per router", ["Router", "Version", "Exchanges", "To teacher", "Rated", "Thumbs up",
                                                    "p50", "Cost / 1k", "Student past a teacher limit"],
                   [[r["router"], r["version"] or "–", str(r["exchanges"]), f"{r['teacher_share']:.0%}", str(r["rated"]),
                     "–" if r["thumbs_up_rate"] is None else f"{r['thumbs_up_rate']:.0%}", _fmt(r["p50_latency_ms"], "ms"),
                     _fmt(r["cost_per_1000"], "usd"), str(r["limited"])] for r in routers])


def _worst_section(page: Page, worst: list[dict]) -> None:
    if not worst:
        return
    page.add("\n## Worst student answers, for review\n", "<h2>Worst student answers, for review</h2>")
    for w in worst:
        facts = ", ".join(w["gold_facts"]) or "none"
        page.add(f"\n**Customer ({w['intent']}):** {w['customer']}\n\n- Student: {w['student']}\n- Teacher: {w['teacher']}\n"
                 f"- Reference: {w['reference']}\n- Gold facts: {facts}\n",
                 f"<div class='case'><p><b>Customer</b> <span class='muted'>({html.escape(w['intent'])})</span>: "
                 f"{html.escape(w['customer'])}</p><table class='side'><tr><th>Student</th><th>Teacher</th><th>Reference</th></tr>"
                 f"<tr><td>{html.escape(w['student'])}</td><td>{html.escape(w['teacher'])}</td><td>{html.escape(w['reference'])}</td></tr>"
                 f"</table><p class='muted'>Gold facts: {html.escape(facts)}</p></div>")


def _provenance(page: Page, run: dict, models: dict, config: dict) -> None:
    """The dataset, models and run behind the numbers, and the command that produces them again."""
    reproduce = (f"assistant eval --dataset {run['dataset_version']} --arms {','.join(config.get('arms', []))}"
                 + (f" --student {config['student']}" if config.get("student") else "") + " && assistant report")
    prov = [f"Dataset: {run['dataset_version']}",
            "Models: " + "; ".join(f"{a}: {m['name']} ({m['version']}; {m.get('description') or 'no description'})"
                                   for a, m in models.items()),
            f"Evaluation run {run['id']}, started {run['started_at']}, finished {run['finished_at']}",
            f"Reproduce: {reproduce}"]
    page.add("\n## What produced this report\n\n" + "\n".join(f"- {p}" for p in prov) + "\n",
             "<h2>What produced this report</h2><ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in prov) + "</ul>")


def _write(page: Page, title: str, run_id: int, out_dir: Path) -> tuple[Path, Path]:
    """report-<run>.html and .md, and the same as latest.*; the HTML is self-contained."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
            f"</head><body>{''.join(page.body)}</body></html>")
    md = "\n".join(page.md)
    html_path, md_path = out_dir / f"report-{run_id}.html", out_dir / f"report-{run_id}.md"
    for path, content in ((html_path, text), (md_path, md), (out_dir / "latest.html", text), (out_dir / "latest.md", md)):
        path.write_text(content, encoding="utf-8")
    return html_path, md_path


def build_report(store: Store, settings, run_id: int | None = None) -> tuple[Path, Path]:
    """Render an evaluation run (default: the latest) and the chat logs into $ASSISTANT_HOME/reports."""
    run, items = load_run(store, run_id)
    summary, acc_key, definition = summarise(items, json.loads(run["measurements"] or "{}"))
    models = json.loads(run["models"] or "{}")
    by_depth = depth_breakdown(items, acc_key)
    title = f"Distillation A/B report — run {run['id']}"
    page = Page()
    _head(page, run, title, summary, definition, models)
    _arm_tables(page, summary, models)
    page.paragraph(_judge_note(run), md_prefix="\n")
    _depth_section(page, by_depth, items)
    _routing_section(page, items, acc_key, store)
    _plots_section(page, plots(items, summary, acc_key, by_depth))
    _online_section(page, {**online_stats(store), "routers": router_stats(store)})
    _worst_section(page, worst_student_answers(items))
    _provenance(page, run, models, json.loads(run["config"] or "{}"))
    return _write(page, title, run["id"], settings.home / "reports")


def _md_inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    escaped = re.sub(r"\*(.+?)\*", r"<i>\1</i>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#1b2733;line-height:1.45}
h1{font-size:1.6em;margin-bottom:4px} h2{margin-top:1.6em;border-bottom:1px solid #e3e8ee;padding-bottom:4px}
.muted{color:#6b7785} .note{background:#fff8e6;border-left:4px solid #d08c2b;padding:8px 12px}
.verdict{background:#eef6f1;border-left:4px solid #2e8b57;padding:4px 12px;font-size:1.05em}
table{border-collapse:collapse;margin:8px 0;font-size:.92em} th,td{border:1px solid #e3e8ee;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f5f7fa} .grid{display:grid;grid-template-columns:1fr 1fr;gap:12px} figure{margin:0} img{width:100%}
figcaption{color:#6b7785;font-size:.85em} .case{margin:12px 0;padding:8px 12px;background:#fafbfc;border:1px solid #e3e8ee}
.side td{width:33%} code{background:#f1f3f5;padding:1px 4px;border-radius:3px}
"""
