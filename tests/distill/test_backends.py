"""Labelling backends (distill.backends): the case-based stand-in and the configured endpoint."""

from dataclasses import replace

from assistant.retrieval import CaseBase, KnowledgeBase, Retriever
from distill.backends import CaseBackend, LabelRequest, make_backend
from tests.assistant.models.test_cases import POISONED, case_teacher, conv


def test_case_backend_never_labels_with_a_poisoned_reply(fake_embedder):
    retriever = case_teacher(fake_embedder, conv(70, "where is my refund", POISONED[0]),
                             conv(71, "where is my refund now", "Refunds take 5-7 business days.")).retriever
    history = [{"role": "user", "content": "where is my refund"}]
    result = CaseBackend(retriever).call(LabelRequest(history, history, 99, 100, 0.0))
    assert result.text == "Refunds take 5-7 business days."


def test_case_backend_never_answers_from_the_conversation_it_labels(fake_embedder):
    retriever = Retriever(KnowledgeBase([], fake_embedder),
                          CaseBase([conv(72, "where is my refund", "Refunds take 5-7 business days.")], fake_embedder))
    history = [{"role": "user", "content": "where is my refund"}]
    backend = CaseBackend(retriever)
    assert backend.call(LabelRequest(history, history, 99, 100, 0.0)).text == "Refunds take 5-7 business days."
    own = backend.call(LabelRequest(history, history, 72, 100, 0.0))
    assert own.text == "" and own.output_tokens == 0  # nothing else to answer from: an empty (rejected) label


def test_make_backend_uses_the_labelling_timeout_or_the_offline_stand_in(settings, fake_embedder):
    backend = make_backend(replace(settings, teacher_api_key="k", label_timeout=7.5), retriever=None)
    assert backend.client.timeout == 7.5 and not backend.local
    retriever = Retriever(KnowledgeBase([], fake_embedder), CaseBase([], fake_embedder))
    offline = make_backend(settings, retriever)
    assert isinstance(offline, CaseBackend) and offline.local
