"""Fixtures for the shells: services with fake models and embeddings, and the web server started on loopback."""

from dataclasses import replace

import pytest
from gradio_client import Client

from assistant.models import FakeModel
from assistant.retrieval import CaseBase, KnowledgeBase, Retriever
from assistant.router import RuleRouter
from assistant.services import Services
from assistant.shells.web import serve
from assistant.store import open_store
from eval.product import free_port


def make_services(settings, embedder, student_delay_s: float = 0.0, **overrides) -> Services:
    """Services on a free port with fake student and teacher, an empty KB and no cases."""
    settings = replace(settings, port=free_port(), **overrides)
    retriever = Retriever(KnowledgeBase([], embedder), CaseBase([], embedder))
    return Services(settings=settings, store=open_store(settings), retriever=retriever,
                    student=FakeModel("student-fake", "student", delay_s=student_delay_s),
                    teacher=FakeModel("teacher-fake", "teacher"), router=RuleRouter())


@pytest.fixture
def running(settings, fake_embedder):
    """The chat with its internals shown (the Student / Teacher / Auto switch), and a client for it."""
    services = make_services(settings, fake_embedder, student_delay_s=0.01, show_internals=True)
    running = serve(services, block=False)
    yield services, Client(running.chat_url, verbose=False)
    running.close()


@pytest.fixture
def console(running):
    """The console on loopback (no users configured), as the support team reaches it."""
    services, client = running
    return services, Client(client.src.rstrip("/") + "/console/", verbose=False)
