"""data/sample is what the demo and tests stand on: it must be what the generator makes, and rich enough."""

import importlib.util
import json
from collections import Counter
from pathlib import Path

from assistant.services import SAMPLE_DIR, seed_sample
from assistant.store import Store

GENERATOR = Path(__file__).parent.parent / "data" / "generate_sample.py"


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


def test_sample_is_rich_enough():
    rows = [json.loads(l) for l in (SAMPLE_DIR / "conversations.jsonl").read_text().splitlines()]
    assert len(list((SAMPLE_DIR / "kb").glob("*.md"))) >= 30
    assert len(rows) >= 500
    assert all(4 <= len(r["messages"]) <= 10 for r in rows)
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
