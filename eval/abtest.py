"""Offline A/B evaluation on a dataset's held-out test split (never trained on), or on its validation split
(`--split validation`: the outcomes the learned router trains and calibrates on, eval.router_train).

Every arm answers every evaluated assistant turn given the same history (the conversation as it really
happened up to that turn):
- teacher:   the configured teacher, or the offline case-based stand-in (its retrieval never sees the test split)
- base:      the un-distilled base student
- student:   the distilled student (the serving version, or a named one)
- routed:    the router in front of student and teacher, as Auto mode runs it (pre-score, then the draft check):
             the settings' router (or `router`) from the registry, at its calibrated threshold; every other
             available router's score is stored per turn too, for the cost-quality curves (eval.routing)
- retrieval: no model at all: the agent reply that followed the most similar state in the training split

Scores per item: gold-fact recall and completeness, ROUGE-L, BLEU, semantic similarity (the metric modules
in eval/metrics, loaded offline through `evaluate`) and, with a capable judge configured, judge grades and a
position-swapped pairwise comparison of student vs teacher. Latency, tokens and cost are measured per reply.
Everything is stored (eval_runs, eval_items) so runs can be compared over time.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from assistant.errors import InputError
from assistant.models import ChatModel, Completion, LlamaStudent, Usage, nearest_reply
from assistant.pricing import reply_cost
from assistant.router import DRAFT_TOKENS, Draft, Signals, auto_route
from assistant.store import Store, now

ARMS = ("teacher", "base", "student", "routed", "retrieval")
METRICS_DIR = Path(__file__).resolve().parent / "metrics"


SPLITS = ("test", "validation")


@dataclass
class EvalConfig:
    dataset: str | None = None
    split: str = "test"  # "validation": outcomes for training and calibrating routers, never the test split
    router: str | None = None  # the routed arm's router (default: settings.router)
    arms: tuple[str, ...] = ARMS
    student: str | None = None  # a model version; default: the serving one
    limit: int | None = None  # evaluated turns at most
    max_tokens: int = 160
    judge: str | None = None  # "teacher" (default when one is configured), "none", or "BASE_URL#MODEL"
    throughput_queries: int = 8


class RetrievalBaseline(ChatModel):
    """No model: the next agent reply of the most similar conversation state in the training split
    (`assistant.models.nearest_reply`, with no knowledge base to check replies against)."""

    role, local, generates, name, version = "baseline", True, False, "retrieval-baseline", "train-split"

    def __init__(self, case_base):
        self.cases = case_base
        self.description = f"retrieval baseline over {case_base.size} training-split agent replies"

    def _generate(self, messages, max_tokens):
        text, _ = nearest_reply(self.cases, messages, k=1)
        yield text
        yield Usage(0, len(text.split()), finish_reason="stop")


def evaluation_turns(dd, limit: int | None, version: str = "the dataset", split: str = "test") -> list[dict]:
    """The split's labelled turns (the test split by default); an InputError that says why when there are none."""
    from distill.dataset import labelled_turns

    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose from {', '.join(SPLITS)} (the train split is what the student learned)")
    if split not in dd or dd[split].num_rows == 0:
        sizes = ", ".join(f"{s} {dd[s].num_rows}" for s in dd) or "no splits"
        raise InputError(f"{version} has no {split} split to evaluate on ({sizes} conversations): the split is by "
                         f"conversation and intent, so a {split} split needs at least 3 conversations of an intent; "
                         "label more conversations and build the dataset again")
    turns = labelled_turns(dd[split])
    if not turns:
        raise InputError(f"{version} has a {split} split but no labelled turns in it (every label there was rejected)")
    return turns[:limit] if limit else turns


def _record(model: ChatModel, c: Completion, settings) -> dict:
    return {"reply": c.text, "ttft_ms": c.ttft_ms, "latency_ms": c.latency_ms, "input_tokens": c.input_tokens,
            "output_tokens": c.output_tokens, "tokens_per_s": c.tokens_per_s if model.generates else None,
            "cost": reply_cost(model, c, settings), "model": model.name, "model_version": model.version}


def score_items(items: list[dict]) -> None:
    """Add the metric scores to each item, through the evaluate modules kept in the repo."""
    import evaluate

    if not items:
        return
    preds = [it["reply"] for it in items]
    refs = [it["reference"] for it in items]
    gold = evaluate.load(str(METRICS_DIR / "gold_fact"))
    rouge = evaluate.load(str(METRICS_DIR / "rouge_l")).compute(predictions=preds, references=refs)["per_item"]
    bleu = evaluate.load(str(METRICS_DIR / "bleu")).compute(predictions=preds, references=refs)["per_item"]
    sem = evaluate.load(str(METRICS_DIR / "semantic_similarity")).compute(predictions=preds, references=refs)["per_item"]
    for it, r, b, s in zip(items, rouge, bleu, sem):
        it.update(rouge_l=r, bleu=b, semantic_similarity=s, gold_recall=None, gold_complete=None)
    # one call for all items that have gold facts (the metric scores exactly those, in order)
    with_facts = [it for it in items if any(f and f.strip() for f in it["gold_facts"])]
    if with_facts:
        recalls = gold.compute(predictions=[it["reply"] for it in with_facts],
                               references=[it["gold_facts"] for it in with_facts])["per_item_recall"]
        for it, recall in zip(with_facts, recalls):
            it["gold_recall"], it["gold_complete"] = recall, float(recall == 1.0)


def build_models(store: Store, settings, config: EvalConfig, *, exclude: frozenset, models: dict | None = None,
                 retriever=None, dd=None) -> dict[str, ChatModel]:
    """The model behind each arm. The teacher's retrieval never sees the `exclude` conversations (the test split)."""
    from assistant.retrieval import CaseBase, Retriever, build_retriever, embedder_for
    from assistant import students
    from distill.dataset import load_dataset

    models = dict(models or {})
    if dd is None:
        dd, _ = load_dataset(store, config.dataset)
    if retriever is None and ({"teacher", "routed", "retrieval", "student"} & set(config.arms)):
        retriever = build_retriever(store, embedder_for(settings))
    if ("teacher" in config.arms or "routed" in config.arms) and "teacher" not in models:
        from assistant.services import make_teacher

        models["teacher"] = make_teacher(settings, Retriever(retriever.kb, retriever.cases, exclude=exclude))
    if "base" in config.arms and "base" not in models:
        models["base"] = LlamaStudent(settings.student_path, name="base " + Path(settings.student_path).stem,
                                      version="base", n_ctx=settings.student_context, max_tokens=config.max_tokens)
    if ("student" in config.arms or "routed" in config.arms) and "student" not in models:
        row = students.resolve(store, config.student)
        if row is None:
            raise InputError("no distilled student to evaluate yet: train one (assistant train) or leave out the student and routed arms")
        models["student"] = students.student_for(row, settings, Retriever(retriever.kb, retriever.cases, exclude=exclude),
                                                 max_tokens=config.max_tokens)
    if "retrieval" in config.arms and "retrieval" not in models:
        train_convs = [{"id": r["conversation_id"], "messages": r["original_messages"], "resolution": "resolved", "csat": None}
                       for r in dd["train"]]
        models["retrieval"] = RetrievalBaseline(CaseBase(train_convs, retriever.kb.embedder))
    return models


def _judge_label(judge) -> str | None:
    """The judge model and the versions of its prompts, as stored with the run."""
    if judge is None:
        return None
    from eval.judge import GRADE_V2, PAIRWISE_V2

    return (f"{judge.model.name} (prompts {GRADE_V2.id}@{GRADE_V2.hash[:8]}, "
            f"{PAIRWISE_V2.id}@{PAIRWISE_V2.hash[:8]})")


def run_eval(store: Store, settings, config: EvalConfig, *, models: dict[str, ChatModel] | None = None, router=None,
             retriever=None, judge=None, progress: Callable[[str, int, int], None] | None = None) -> int:
    """Run the offline A/B and store it; returns the eval run id."""
    from distill.dataset import load_dataset
    from eval.judge import make_judge

    unknown = set(config.arms) - set(ARMS)
    if unknown:
        raise InputError(f"unknown arms {', '.join(sorted(unknown))}; choose from {', '.join(ARMS)}")
    dd, manifest = load_dataset(store, config.dataset)
    turns = evaluation_turns(dd, config.limit, f"dataset {manifest['version']}", config.split)
    test_ids = frozenset(t["conversation_id"] for t in turns)
    if retriever is None and "routed" in config.arms:
        from assistant.retrieval import build_retriever, embedder_for

        retriever = build_retriever(store, embedder_for(settings))
    models = build_models(store, settings, config, exclude=test_ids, models=models, retriever=retriever, dd=dd)
    routers = build_routers(store, settings, config, test_ids, retriever, router) if "routed" in config.arms else {}
    judge = judge if judge is not None else make_judge(settings, config.judge)

    run_id = store.insert("eval_runs", {
        "dataset_version": manifest["version"], "config": json.dumps(asdict(config)), "status": "running",
        "models": json.dumps({**{arm: {"name": m.name, "version": m.version, "description": m.description}
                                 for arm, m in models.items()},
                              **({"routed": {"name": f"router {routers['routed'].name}",
                                             "version": routers["routed"].version,
                                             "description": "the router in front of student and teacher"}}
                                 if routers else {})}),
        "judge": _judge_label(judge), "started_at": now()})
    items = answer_turns(models, turns, [a for a in config.arms if a != "routed"], config, settings, progress)
    if "routed" in config.arms:
        items += route_turns(models, turns, items, routers, config, settings, store)
    score_items(items)
    if judge is not None:
        judge_items(judge, items, turns, config)
        from eval.online import judge_shadows

        judge_shadows(store, judge)  # the online shadow answers collected since the last run
    with store.transaction() as db:
        db["eval_items"].insert_all({"run_id": run_id, "arm": it["arm"], "conversation_id": it["conversation_id"],
                                     "turn": it["turn"], "intent": it["intent"], "data": json.dumps(it, default=str)}
                                    for it in items)
        db["eval_runs"].update(run_id, {"status": "done", "finished_at": now(), "n_turns": len(turns)})
    return run_id


_TURN_KEYS = ("conversation_id", "turn", "intent", "history", "reference", "gold_facts")


def answer_turns(models: dict[str, ChatModel], turns: list[dict], arms: list[str], config: EvalConfig, settings,
                 progress: Callable[[str, int, int], None] | None = None) -> list[dict]:
    """Every arm answers every turn, given the history as it really happened. The student's held-back opening is
    kept too (`draft`: its text, token scores and the time it took), for the routers to judge as the chat does."""
    items: list[dict] = []
    total, done = len(turns) * len(arms), 0
    for arm in arms:
        model = models[arm]
        for t in turns:
            c, draft = answer_with_draft(model, t["history"], config.max_tokens)
            items.append({"arm": arm, **{k: t[k] for k in _TURN_KEYS}, **_record(model, c, settings),
                          **({"draft": draft} if arm == "student" else {})})
            done += 1
            if progress:
                progress(arm, done, total)
    return items


def answer_with_draft(model: ChatModel, history: list[dict], max_tokens: int) -> tuple[Completion, dict]:
    """A reply, and its first DRAFT_TOKENS pieces as Auto mode holds them back: text, summed log-probability,
    mean entropy, scored tokens (none for a model without token scores) and the time until the last of them."""
    pieces: list[str] = []
    draft_ms = None
    started = time.perf_counter()
    for item in model.stream(history, max_tokens):
        if isinstance(item, Completion):
            draft = Draft.join(pieces)
            return item, {"text": str(draft), "logprob": draft.logprob, "entropy": draft.entropy,
                          "tokens": draft.tokens, "ms": draft_ms if draft_ms is not None else item.latency_ms}
        if len(pieces) < DRAFT_TOKENS:
            pieces.append(item)
            if len(pieces) == DRAFT_TOKENS:
                draft_ms = (time.perf_counter() - started) * 1000
    raise AssertionError("stream ended without a Completion")  # pragma: no cover


def draft_of(student_item: dict) -> Draft:
    """The held-back opening of a recorded student reply (its first words when the run kept no draft)."""
    d = student_item.get("draft")
    if d is None:
        return Draft(" ".join(student_item["reply"].split()[:DRAFT_TOKENS]))
    return Draft.of(d["text"], d["logprob"], d["entropy"], d["tokens"])


def build_routers(store: Store, settings, config: EvalConfig, exclude: frozenset, retriever, router=None) -> dict:
    """{"routed": the routed arm's router, name: every available router} over one `Signals` whose retrieval never
    sees the evaluated conversations (`exclude`), as the chat never sees its own. A learned router trained on any
    evaluated conversation is refused for the routed arm and left out of the curves."""
    from assistant.retrieval import Retriever
    from assistant.router import build_router
    from assistant.services import available_routers

    signals = Signals(Retriever(retriever.kb, retriever.cases, exclude=exclude) if retriever is not None else None)
    chosen = config.router or settings.router
    routers: dict = {}
    for name in available_routers(store):
        learned = store.serving_router() if name == "learned" else None
        overlap = trained_on_overlap(learned, exclude)
        if overlap:
            if router is None and name == chosen:
                raise InputError(f"learned router {learned['version']} was trained on {overlap} of the evaluated "
                                 "conversations: it cannot be scored on them (train it on another split)")
            continue
        routers[name] = build_router(name, signals.retriever, learned, signals)
    routers["routed"] = router or routers.get(chosen) or build_router(chosen, signals.retriever, None, signals)
    return routers


def trained_on_overlap(learned: dict | None, conversation_ids: frozenset) -> int:
    """How many of these conversations a learned router version learned from (0 for any other router)."""
    if not learned:
        return 0
    return len(set(learned["trained_on"].get("conversations", [])) & set(conversation_ids))


def route_turns(models: dict[str, ChatModel], turns: list[dict], items: list[dict], routers: dict, config: EvalConfig,
                settings, store: Store | None = None) -> list[dict]:
    """The routed arm: per turn, the reply Auto mode would have served (`assistant.router.auto_route`) with the
    routed router at its threshold, reusing the student's and the teacher's answers in `items` when those arms
    ran. A turn sent to the teacher after the draft (a cascade) counts the draft's time and cost too. Each turn
    also keeps every router's scores before and after the draft and the signals read, for curves and training."""
    from assistant.services import router_threshold

    router = routers["routed"]
    signals = next((r.signals for r in routers.values() if isinstance(getattr(r, "signals", None), Signals)), None)
    threshold = router_threshold(store, settings, router) if store is not None else settings.router_threshold
    by_key = {(it["arm"], it["conversation_id"], it["turn"]): it for it in items}
    routed = []
    for t in turns:
        s = by_key.get(("student", t["conversation_id"], t["turn"]))
        te = by_key.get(("teacher", t["conversation_id"], t["turn"]))
        if s is None or te is None:
            if s is None:
                c, d = answer_with_draft(models["student"], t["history"], config.max_tokens)
                s = {**_record(models["student"], c, settings), "draft": d}
            te = te or _record(models["teacher"], models["teacher"].complete(t["history"], config.max_tokens), settings)
        draft = draft_of(s)
        target, decision = auto_route(router, t["history"], threshold, lambda: draft)
        chosen = dict(te if target == "teacher" else s)
        if target == "teacher" and decision.stage == "draft":
            chosen["latency_ms"], chosen["cost"] = cascade_cost(s, te)
        features = signals.features(t["history"], draft) if signals is not None else {}
        routed.append({"arm": "routed", **{k: t[k] for k in _TURN_KEYS},
                       **{k: chosen[k] for k in ("reply", "ttft_ms", "latency_ms", "input_tokens", "output_tokens",
                                                 "tokens_per_s", "cost", "model", "model_version")},
                       "routed_to": target, "route_score": decision.score, "route_reason": decision.reason,
                       "route_stage": decision.stage, "router": router.name, "router_version": router.version,
                       "threshold": threshold, "route_features": features,
                       "router_scores": {name: [r.score(t["history"]).score, r.score(t["history"], draft).score]
                                         for name, r in routers.items() if name != "routed"}})
    return routed


def cascade_cost(student: dict, teacher: dict) -> tuple[float | None, float | None]:
    """(latency, cost) of a turn the teacher answered after the student's draft was judged: the draft's measured
    time plus the teacher's latency, and the student's cost for that share of its reply plus the teacher's."""
    d = student.get("draft") or {}
    draft_ms = d.get("ms")
    if draft_ms is None:  # an old run without drafts: time to the first token plus DRAFT_TOKENS at its speed
        draft_ms = (student.get("ttft_ms") or 0) + (DRAFT_TOKENS / student["tokens_per_s"] * 1000
                                                    if student.get("tokens_per_s") else 0)
    latency = (teacher["latency_ms"] or 0) + draft_ms
    share = min(1.0, draft_ms / student["latency_ms"]) if student.get("latency_ms") else 1.0
    cost = None if teacher.get("cost") is None else teacher["cost"] + (student.get("cost") or 0) * share
    return latency, cost


def judge_items(judge, items: list[dict], turns: list[dict], config: EvalConfig) -> None:
    """Judge grades for every item and, with both arms run, the pairwise student-vs-teacher comparison."""
    for it in items:
        it["judge"] = judge.grade(it["history"], it["reference"], it["reply"])
    if "student" in config.arms and "teacher" in config.arms:
        by_key = {(it["arm"], it["conversation_id"], it["turn"]): it for it in items}
        for t in turns:
            s, te = by_key[("student", t["conversation_id"], t["turn"])], by_key[("teacher", t["conversation_id"], t["turn"])]
            s["pairwise_vs_teacher"] = judge.pairwise(t["history"], t["reference"], s["reply"], te["reply"])


def load_run(store: Store, run_id: int | None = None) -> tuple[dict, list[dict]]:
    row = (store.db["eval_runs"].get(run_id) if run_id else
           next(store.db.query("SELECT * FROM eval_runs WHERE status = 'done' ORDER BY id DESC LIMIT 1"), None))
    if row is None:
        raise InputError("no finished evaluation run: run `assistant eval` first")
    items = [json.loads(r["data"]) for r in store.db.query("SELECT data FROM eval_items WHERE run_id = ? ORDER BY id", [row["id"]])]
    return row, items
