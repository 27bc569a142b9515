"""Fixtures of the distill tests: a store holding six short resolved conversations, and retrieval over it."""

import pytest

from assistant.retrieval import CaseBase, KnowledgeBase, Retriever
from assistant.store import Store
from tests.distill.labelling import conv


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "a.db")
    s.db["conversations"].insert_all([conv(i) for i in range(6)])
    return s


@pytest.fixture
def retriever(store, fake_embedder):
    return Retriever(KnowledgeBase([{"id": 1, "title": "Shipping", "body": "Orders ship within 1 business day."}], fake_embedder),
                     CaseBase(list(store.conversations()), fake_embedder))
