"""The chat UI launched on 127.0.0.1 and driven with gradio_client, as a remote user would."""

import sqlite3
from dataclasses import replace

import pytest
from gradio_client import Client

from assistant.models import FakeModel
from assistant.retrieval import CaseBase, KnowledgeBase, Retriever
from assistant.router import RuleRouter
from assistant.services import Services
from assistant.store import open_store
from assistant.ui import build_app, panel_markdown
from tests.conftest import free_port


@pytest.fixture
def running(settings, fake_embedder):
    settings = replace(settings, port=free_port())
    retriever = Retriever(KnowledgeBase([], fake_embedder), CaseBase([], fake_embedder))
    services = Services(settings=settings, store=open_store(settings), retriever=retriever,
                        student=FakeModel("student-fake", "student", delay_s=0.01),
                        teacher=FakeModel("teacher-fake", "teacher"), router=RuleRouter())
    demo = build_app(services)
    demo.launch(server_name="127.0.0.1", server_port=settings.port, prevent_thread_lock=True, quiet=True)
    yield services, Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
    demo.close()


def test_message_gets_a_streamed_reply_and_a_logged_exchange(running):
    services, client = running
    services.student.enqueue("Orders ship within one business day.")
    job = client.submit("where is my order", [], "Student", api_name="/send")
    updates = list(job)  # every streamed update of the chat
    history, panel = job.result()[0], job.result()[1]
    assert history[-1]["role"] == "assistant"
    assert "one business day" in str(history[-1]["content"])
    assert len(updates) > 3  # streamed word by word, not in one piece
    assert "Student" in panel and "Total latency" in panel
    conn = sqlite3.connect(services.settings.db_path)
    row = conn.execute("select routed_to, latency_ms, output_tokens, reply from exchanges").fetchone()
    assert row[0] == "student" and row[1] > 0 and row[2] == 6 and "one business day" in row[3]


def test_thumbs_are_stored_against_the_exchange(running):
    services, client = running
    client.predict("hello", [], "Teacher", api_name="/send")
    msg = client.predict("", api_name="/thumbs_down")
    assert "saved" in msg
    conn = sqlite3.connect(services.settings.db_path)
    assert conn.execute("select thumbs from feedback").fetchall() == [(-1,)]


def test_side_panel_never_shows_raw_errors():
    ex = {"routed_to": "student", "model_name": "m", "model_version": "v", "route": "Teacher", "route_score": 1.0,
          "route_reason": "Teacher picked by the user", "ttft_ms": None, "latency_ms": 10.0, "input_tokens": 1,
          "output_tokens": 2, "cost": None, "id": 3, "notice": "The teacher model is unavailable right now."}
    md = panel_markdown(ex)
    assert "unavailable" in md and "Traceback" not in md


def test_import_tab_imports_a_file_and_reports(running):
    from gradio_client import handle_file

    from tests.importing import FIXTURES

    services, client = running
    summary = client.predict(handle_file(str(FIXTURES / "sharegpt.json")), "auto-detect", False, True,
                             api_name="/import_transcripts")
    assert "imported 2" in summary and "rejected 2" in summary
    assert services.store.count("conversations") == 2
    bad = client.predict(handle_file(str(FIXTURES / "openai_chat.jsonl")), "auto-detect", True, True,
                         api_name="/import_transcripts")
    assert "Nothing imported" in bad and services.store.count("conversations") == 2


def test_label_tab_runs_a_job_and_builds_a_dataset(running):
    services, client = running
    from tests.importing import FIXTURES

    from distill.importer import import_file

    import_file(services.store, FIXTURES / "sharegpt.json")
    status, rejected = client.predict("logged", 2, None, False, False, None, None, api_name="/label")
    assert "Label job 1: done" in status and "Dataset **ds-" in status
    assert services.store.count("datasets") == 1


def test_retrain_tab_runs_a_background_job_that_survives_a_reload(running, monkeypatch):
    import time

    from gradio_client import handle_file

    import distill.pipeline
    from tests.importing import FIXTURES

    services, client = running

    class Outcome:
        version, promoted, evaluation = "student-001-abc", True, {}

    def fake_retrain(store, settings, path, config, log, progress, should_stop, retriever):
        log(f"imported {path.name}; retrieval-augmented: {config.retrieval_augmented}")
        progress(type("P", (), {"line": lambda self: "step 1/1", "step": 1, "total_steps": 1})())
        return Outcome()

    monkeypatch.setattr(distill.pipeline, "retrain_from_file", fake_retrain)
    assert "Started job" in client.predict(handle_file(str(FIXTURES / "sharegpt.json")), 1, True, api_name="/retrain")
    for _ in range(50):
        status, log = Client(client.src, verbose=False).predict(api_name="/job_status")  # a fresh page load
        if "done" in status:
            break
        time.sleep(0.1)
    assert "student-001-abc" in status and "promoted" in status and "imported sharegpt.json; retrieval-augmented: True" in log


def test_job_status_describes_a_finished_evaluation(running):
    import json

    services, client = running
    services.store._write(lambda db: db["jobs"].insert({
        "kind": "evaluation", "status": "done", "progress": "{}", "log": "", "error": "",
        "result": json.dumps({"run": 1, "report": "latest.html"})}))
    status, _ = Client(client.src, verbose=False).predict(api_name="/job_status")
    assert "evaluation): done" in status and "report is written" in status and "None" not in status
