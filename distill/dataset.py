"""Build a versioned train / validation / test dataset from a labelling job's accepted labels.

One row per (conversation, label source): the conversation with its labelled assistant turns replaced
by the labels, `train_turns` naming the message indices to learn (accepted labels only; rejected
turns stay as context), and the gold facts per turn where the source provides them. The split is by
conversation (no conversation in two splits), stratified by intent, with a fixed seed. The test split
is reserved for evaluation: training reads only train and validation.

Saved under $ASSISTANT_HOME/datasets/<version>/ as a Hugging Face DatasetDict with manifest.json
(content hash, teacher, prompt version, counts, filters) and exports, per split: OpenAI fine-tuning JSONL
(one conversation a line, `weight` 1 on the labelled assistant turns, 0 on the others) and ShareGPT (the
same weight on each "gpt" turn: Axolotl reads it with `message_field_training: weight`). Registered in the
`datasets` table. The same content gives the same version.

`export_turns` adds per-turn rows laid out exactly as the student is trained and served (with its inline
grounding when retrieval-augmented): TRL's conversational prompt-completion JSONL and OpenAI fine-tuning
JSONL, so the same student can be trained with TRL's SFTTrainer, LLaMA-Factory or a hosted fine-tune.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import InputError
from assistant.store import Store, now

SPLITS = ("train", "validation", "test")


@dataclass
class DatasetVersion:
    version: str
    path: Path
    manifest: dict
    created: bool


def split_conversations(conv_intents: dict[int, str | None], seed: int, val_frac: float, test_frac: float) -> dict[int, str]:
    """Conversation id -> split, stratified by intent, deterministic for a seed."""
    by_intent: dict[str, list[int]] = defaultdict(list)
    for cid, intent in sorted(conv_intents.items()):
        by_intent[intent or "(none)"].append(cid)
    # intents too rare to stratify on their own are pooled, so small datasets still get all three splits
    rare = [i for i, ids in by_intent.items() if len(ids) < 3]
    if len(rare) > 1:
        by_intent["(rare intents)"] = [cid for i in rare for cid in by_intent.pop(i)]
    rng = random.Random(seed)
    out = {}
    for intent in sorted(by_intent):
        ids = by_intent[intent]
        rng.shuffle(ids)
        n = len(ids)
        n_test = round(n * test_frac) if n >= 3 else 0
        n_val = round(n * val_frac) if n >= 3 else 0
        for i, cid in enumerate(ids):
            out[cid] = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
    return out


def _rows(store: Store, job_id: int) -> list[dict]:
    labels = list(store.db.query(
        "SELECT conversation_id, message_index, source, teacher, reply, status FROM labels WHERE job_id = ? "
        "ORDER BY conversation_id, source, message_index", [job_id]))
    if not labels:
        raise InputError(f"label job {job_id} has no labels")
    convs = {c["id"]: c for c in store.conversations() if c["id"] in {l["conversation_id"] for l in labels}}
    grouped: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for l in labels:
        grouped[(l["conversation_id"], l["source"])].append(l)
    rows = []
    for (cid, source), ls in sorted(grouped.items()):
        conv = convs[cid]
        messages = [dict(m) for m in conv["messages"]]
        train_turns = []
        for l in ls:
            if l["status"] == "accepted":
                messages[l["message_index"]]["content"] = l["reply"]
                train_turns.append(l["message_index"])
        gold = conv["metadata"].get("gold_facts") or []
        agent_indices = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        gold_by_index = {i: list(g) for i, g in zip(agent_indices, gold)} if isinstance(gold, list) else {}
        rows.append({
            "conversation_id": cid,
            "label_source": source,
            "teacher": ls[0]["teacher"],
            "intent": conv.get("intent") or "",
            "system": conv.get("system") or "",
            "messages": messages,
            "original_messages": conv["messages"],
            "train_turns": train_turns,
            "gold_facts": [gold_by_index.get(i, []) for i in range(len(messages))],
        })
    return rows


def content_hash(rows: list[dict]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r["conversation_id"], r["label_source"], r["messages"], r["train_turns"]],
                            ensure_ascii=False, sort_keys=True).encode("utf-8"))
    return h.hexdigest()


def _export(rows: list[dict], folder: Path, split: str) -> None:
    with open(folder / f"{split}.openai.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            msgs = ([{"role": "system", "content": r["system"]}] if r["system"] else []) + [
                {"role": m["role"], "content": m["content"],
                 **({"weight": 1 if i in r["train_turns"] else 0} if m["role"] == "assistant" else {})}
                for i, m in enumerate(r["messages"])]
            fh.write(json.dumps({"messages": msgs}, ensure_ascii=False) + "\n")
    sharegpt = [{"id": f"{r['conversation_id']}-{r['label_source']}",
                 **({"system": r["system"]} if r["system"] else {}),
                 "conversations": [{"from": "human" if m["role"] == "user" else "gpt", "value": m["content"],
                                    **({"weight": 1 if i in r["train_turns"] else 0} if m["role"] == "assistant" else {})}
                                   for i, m in enumerate(r["messages"])]} for r in rows]
    (folder / f"{split}.sharegpt.json").write_text(json.dumps(sharegpt, ensure_ascii=False, indent=1), encoding="utf-8")


def check_job(job: dict, allow_failed: bool = False) -> None:
    """Refuse to build from a job that did not label everything it was asked to, unless `allow_failed`.

    A job "done with N failed turns" (or stopped at a budget) has holes: trained on, the student would
    learn the logged context around them without their labels. Running the job again labels only what
    is missing (nothing stored is paid twice); `allow_failed` builds from what there is anyway.
    """
    status = job.get("status") or ""
    if status == "done":
        return
    if status in ("running", "") or status.startswith("failed"):
        raise InputError(f"label job {job['id']} is {status or 'unfinished'}: no dataset is built from it")
    if not allow_failed:
        raise InputError(f"label job {job['id']} ended '{status}': no dataset built. Run the job again to label what is "
                         "missing (stored calls are reused), or build from it anyway with allow_failed (--allow-failed)")


def build_dataset(store: Store, settings, job_id: int | None = None, *, seed: int = 13, val_frac: float = 0.1,
                  test_frac: float = 0.1, allow_failed: bool = False) -> DatasetVersion:
    """Build (or find) the dataset version of a labelling job (default: the latest complete one).

    Refused, with the reason, for a job that failed, is running, or left turns unlabelled (unless
    `allow_failed`), and for labels that leave nothing to train on: no dataset with 0 training turns
    is ever registered.
    """
    import datasets

    datasets.disable_progress_bars()
    if job_id is None:
        pattern = "status = 'done' OR status LIKE 'done with %' OR status LIKE 'stopped%'" if allow_failed else "status = 'done'"
        row = next(store.db.query(f"SELECT max(id) AS id FROM label_jobs WHERE {pattern}"), None)
        job_id = row["id"] if row else None
        if job_id is None:
            raise InputError("no complete labelling job: run `assistant label` first (a job with failed turns "
                             "builds a dataset only with allow_failed / --allow-failed)")
    job = store.db["label_jobs"].get(job_id)
    check_job(job, allow_failed)
    rows = _rows(store, job_id)
    chash = content_hash(rows)
    config = {"seed": seed, "val_frac": val_frac, "test_frac": test_frac}
    version = f"ds-{hashlib.sha256((chash + json.dumps(config, sort_keys=True)).encode()).hexdigest()[:10]}"
    existing = next(store.db.query("SELECT * FROM datasets WHERE version = ?", [version]), None)
    if existing and Path(existing["path"]).exists():
        return DatasetVersion(version, Path(existing["path"]), json.loads(existing["manifest"]), created=False)

    assignment = split_conversations({r["conversation_id"]: r["intent"] for r in rows}, seed, val_frac, test_frac)
    by_split = {s: [r for r in rows if assignment[r["conversation_id"]] == s] for s in SPLITS}
    trainable = sum(len(r["train_turns"]) for r in by_split["train"])
    if not trainable:
        n_rejected = sum(1 for _ in store.db.query("SELECT 1 FROM labels WHERE job_id = ? AND status = 'rejected'", [job_id]))
        raise InputError(f"label job {job_id} leaves no turn to train on ({n_rejected} labels rejected; review them with "
                         f"`assistant labels rejected --job {job_id}`): no dataset registered")
    folder = settings.home / "datasets" / version
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    features = datasets.Features({
        "conversation_id": datasets.Value("int64"), "label_source": datasets.Value("string"),
        "teacher": datasets.Value("string"), "intent": datasets.Value("string"), "system": datasets.Value("string"),
        "messages": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
        "original_messages": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
        "train_turns": datasets.Sequence(datasets.Value("int32")),
        "gold_facts": datasets.Sequence(datasets.Sequence(datasets.Value("string"))),
    })
    dd = datasets.DatasetDict({
        s: datasets.Dataset.from_list(by_split[s], features=features) if by_split[s]
        else datasets.Dataset.from_dict({k: [] for k in features}, features=features)  # a small job can leave a split empty
        for s in SPLITS})
    # one shard for an empty split: with none, load_from_disk fails on it ("list index out of range")
    dd.save_to_disk(str(tmp / "hf"), num_shards={s: 1 for s in SPLITS if not by_split[s]} or None)
    for s in SPLITS:
        _export(by_split[s], tmp, s)
    options = json.loads(job["options"] or "{}")
    manifest = {
        "version": version,
        "content_hash": chash,
        "created_at": now(),
        "label_job_id": job_id,
        "label_source": job["source"],
        "teacher": job["teacher"],
        "prompt": {"id": job["prompt_id"], "hash": job["prompt_hash"]} if job["source"] != "logged" else None,
        "split": {**config, "by": "conversation", "stratified_by": "intent"},
        "counts": {s: {"rows": len(by_split[s]), "conversations": len({r["conversation_id"] for r in by_split[s]}),
                       "train_turns": sum(len(r["train_turns"]) for r in by_split[s])} for s in SPLITS},
        "filters": {"quality": "distill.quality.QualityFilter", "rejected_labels": job["n_rejected"],
                    "resolved_only": options.get("resolved_only"), "min_csat": options.get("min_csat"),
                    "final_turn_only": options.get("final_turn_only")},
        "note": "The test split is reserved for evaluation and is never trained on.",
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)  # a dataset folder is either complete or absent
    store.insert("datasets", {
        "version": version, "path": str(folder), "content_hash": chash, "label_job_id": job_id, "teacher": job["teacher"],
        "n_train": len(by_split["train"]), "n_validation": len(by_split["validation"]), "n_test": len(by_split["test"]),
        "manifest": json.dumps(manifest), "created_at": now()}, replace=True)
    return DatasetVersion(version, folder, manifest, created=True)


def load_dataset(store: Store, version: str | None = None):
    """The DatasetDict and manifest of a dataset version (the newest by default)."""
    import datasets

    if version is None:
        row = next(store.db.query("SELECT * FROM datasets ORDER BY id DESC LIMIT 1"), None)
    else:
        row = next(store.db.query("SELECT * FROM datasets WHERE version = ?", [version]), None)
    if row is None:
        raise InputError(f"no dataset {version or ''}: run `assistant label` first".replace("  ", " "))
    manifest = json.loads(row["manifest"])
    try:
        dd = datasets.load_from_disk(str(Path(row["path"]) / "hf"))
    except IndexError as exc:  # an empty split saved without a shard (by an older version of this module)
        empty = [s for s, c in manifest.get("counts", {}).items() if not c.get("rows")]
        raise InputError(f"dataset {row['version']} cannot be read: its {', '.join(empty) or 'some'} split is empty and "
                         "was saved without data; build it again (assistant label) or label more conversations") from exc
    except FileNotFoundError as exc:
        raise InputError(f"dataset {row['version']} is missing its files at {row['path']}; build it again") from exc
    return dd, manifest


def turn_rows(rows, layout) -> list[dict]:
    """One row per labelled turn: the prompt as the student reads it for that turn, and the label.

    `layout(messages, conversation_id)` lays a conversation out for the student (`student_layout`, grounded or
    plain); a turn's prompt is the layout of the conversation up to it, labels in place of earlier replies."""
    out = []
    for row in rows:
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        if row.get("system"):
            messages = [{"role": "system", "content": row["system"]}] + messages
        offset = 1 if row.get("system") else 0
        for i in row["train_turns"]:
            prompt = layout(messages[: i + offset], row["conversation_id"])
            out.append({"prompt": prompt, "completion": [{"role": "assistant", "content": row["messages"][i]["content"]}],
                        "conversation_id": row["conversation_id"], "turn": i})
    return out


def export_turns(dd, folder: Path, layout, grounded: bool) -> list[Path]:
    """Write `<split>.<kind>.prompt_completion.jsonl` (TRL) and `<split>.<kind>.openai.jsonl` (OpenAI fine-tuning,
    the reply weighted 1, earlier replies 0) per split, kind "grounded" or "plain"; returns the files."""
    kind, written = "grounded" if grounded else "plain", []
    for split in dd:
        turns = turn_rows(dd[split], layout)
        trl, openai = folder / f"{split}.{kind}.prompt_completion.jsonl", folder / f"{split}.{kind}.openai.jsonl"
        with open(trl, "w", encoding="utf-8") as fh_trl, open(openai, "w", encoding="utf-8") as fh_openai:
            for t in turns:
                fh_trl.write(json.dumps({"prompt": t["prompt"], "completion": t["completion"]}, ensure_ascii=False) + "\n")
                history = [{**m, "weight": 0} if m["role"] == "assistant" else m for m in t["prompt"]]
                fh_openai.write(json.dumps({"messages": history + [{**t["completion"][0], "weight": 1}]},
                                           ensure_ascii=False) + "\n")
        written += [trl, openai]
    return written


def labelled_turns(rows) -> list[dict]:
    """Every trained turn of the rows as it really happened: the history before it, the label, its gold facts."""
    turns = []
    for row in rows:
        history = [{"role": m["role"], "content": m["content"]} for m in row["original_messages"]]
        for i in row["train_turns"]:
            turns.append({"conversation_id": row.get("conversation_id"), "turn": i, "intent": row.get("intent") or "(none)",
                          "history": history[:i], "reference": row["messages"][i]["content"],
                          "gold_facts": list(row["gold_facts"][i]) if i < len(row["gold_facts"]) else []})
    return turns
