"""data/sample is what the demo and tests stand on: it must be what the generator makes, and rich enough."""

import importlib.util
import json
import random
from collections import Counter
from pathlib import Path

from distill.sample import SAMPLE_DIR, seed_sample
from assistant.store import Store
from distill.scoring import fact_present

GENERATOR = Path(__file__).parents[2] / "data" / "generate_sample.py"


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_sample", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_sample_is_the_generators_output(tmp_path, monkeypatch):
    gen = load_generator()
    monkeypatch.setattr(gen, "OUT", tmp_path)
    gen.main()
    assert (tmp_path / "conversations.jsonl").read_bytes() == (SAMPLE_DIR / "conversations.jsonl").read_bytes()
    for article in (SAMPLE_DIR / "kb").glob("*.md"):
        assert (tmp_path / "kb" / article.name).read_text() == article.read_text()


def sample_rows() -> list[dict]:
    return [json.loads(l) for l in (SAMPLE_DIR / "conversations.jsonl").read_text().splitlines()]


def test_sample_is_rich_enough():
    rows = sample_rows()
    assert len(list((SAMPLE_DIR / "kb").glob("*.md"))) >= 30
    assert len(rows) >= 500
    short = [r for r in rows if "long" not in r["metadata"]["tags"]]
    assert len(short) == 560 and all(4 <= len(r["messages"]) <= 10 for r in short)
    intents = Counter(r["metadata"]["intent"] for r in rows)
    assert len(intents) >= 20
    for hard in ("prompt_injection", "out_of_scope"):
        assert intents[hard] > 5
    tags = Counter(t for r in rows for t in r["metadata"]["tags"])
    assert tags["multi_issue"] > 10 and tags["angry"] > 10 and tags["weak_agent"] > 10
    csat = Counter(r["metadata"]["csat"] for r in rows)
    assert csat[1] + csat[2] > 20  # real logs have unhappy customers too
    for r in rows:  # one list of gold facts per agent turn
        n_agent = sum(m["role"] == "assistant" for m in r["messages"])
        assert len(r["metadata"]["gold_facts"]) == n_agent


def test_seeding_scrubs_pii_and_is_idempotent(tmp_path):
    store = Store(tmp_path / "a.db")
    added = seed_sample(store)
    assert added["kb_articles"] >= 30 and added["conversations"] >= 500
    assert seed_sample(store) == {"kb_articles": 0, "conversations": 0}
    text = " ".join(m["content"] for c in store.conversations() for m in c["messages"])
    assert "@gmail.com" not in text and "[EMAIL_1]" in text
    meta = [c["metadata"] for c in store.conversations()]
    assert not any("customer_email" in m or "customer_name" in m for m in meta)


def test_long_conversations_come_after_the_short_ones_without_disturbing_them():
    gen = load_generator()
    lines = (SAMPLE_DIR / "conversations.jsonl").read_text(encoding="utf-8").splitlines()
    rng = random.Random(gen.SEED)  # the short conversations alone, as the generator made them before
    short = [json.dumps(gen.conversation(rng, i), ensure_ascii=False) for i in range(gen.N_CONVERSATIONS)]
    assert lines[:gen.N_CONVERSATIONS] == short
    assert all("long" in json.loads(l)["metadata"]["tags"] for l in lines[gen.N_CONVERSATIONS:])


def test_long_conversations_leave_the_split_of_the_others_alone():
    from distill.dataset import split_conversations

    rows = sample_rows()
    intents = {i: r["metadata"]["intent"] for i, r in enumerate(rows, start=1)}
    short = {i: intent for i, intent in intents.items() if "long" not in rows[i - 1]["metadata"]["tags"]}
    before, after = split_conversations(short, 13, 0.1, 0.1), split_conversations(intents, 13, 0.1, 0.1)
    assert all(before[i] == after[i] for i in short)
    assert Counter(after[i] for i in intents if i not in short)["test"] >= 5  # some long ones are held out to evaluate


def test_long_conversations_refer_back_to_what_the_customer_said_once():
    gen = load_generator()
    long_ = [r for r in sample_rows() if "long" in r["metadata"]["tags"]]
    assert 60 <= len(long_) <= 80
    sizes = [len(r["messages"]) for r in long_]
    assert all(20 <= n <= 60 for n in sizes) and 25 <= sum(sizes) / len(sizes) <= 35
    assert max(sizes) >= 40
    backrefs = ("as i said above", "the order i mentioned", "same account as before", "same order as before",
                "the order i gave you earlier", "the other thing", "going back to", "from before", "at the beginning")
    deep_order_turns = 0
    for r in long_:
        meta, msgs = r["metadata"], r["messages"]
        assert meta["intent"] == gen.LONG_INTENT and {"long", "multi_issue"} <= set(meta["tags"])
        assert 3 <= len(meta["issues"]) <= 6
        assert [m["role"] for m in msgs] == ["user", "assistant"] * (len(msgs) // 2)  # nothing the importer would merge
        assert len(meta["gold_facts"]) == len(msgs) // 2
        said = [m["content"] for m in msgs if m["role"] == "user"]
        customer_text = " ".join(said).lower()
        assert any(b in customer_text for b in backrefs), meta["conversation_id"]
        # name and order number: given once, early, by the customer
        order, name = meta["customer_order"], meta["customer_name"]
        assert customer_text.count(order.lower()) == 1 and customer_text.count(name.lower()) == 1
        given_at = next(i for i, text in enumerate(said) if order.lower() in text.lower())
        assert given_at <= 1
        # ...and needed again later: a reply whose gold facts hold the order number, customer messages after it was given
        replies = [m["content"] for m in msgs if m["role"] == "assistant"]
        for k, facts in enumerate(meta["gold_facts"]):  # agent reply k follows customer message k
            if order in facts and k - given_at >= 3:
                deep_order_turns += 1
            if order in facts and "weak_agent" not in meta["tags"]:
                assert fact_present(replies[k], order), replies[k]  # as the evaluation's matcher reads it
    assert deep_order_turns >= len(long_)  # at least one per conversation on average
    depths = Counter(min(k + 1, 6) for r in long_ for k, facts in enumerate(r["metadata"]["gold_facts"]) if facts)
    assert depths[6] > 300  # most of their scored turns are deep ones: what the turn-depth breakdown measures
