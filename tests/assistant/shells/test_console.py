"""The console: its tabs driven through gradio_client on loopback, as the support team reaches them, and
the plain functions behind them called directly."""

import json
import time

import pytest
from gradio_client import Client, handle_file

from assistant.errors import AssistantError
from assistant.shells.console import import_tab, label_tab, models_tab, report_tab, retrain_tab
from assistant.shells.console.shared import job_view, progress_bar
from distill.formats import ALIASES, FORMATS
from distill.importer import import_file
from tests.importing import FIXTURES


def add_rejected(store, job_id: int, conversation_id: int, reasons: list[str]) -> None:
    for n, reason in enumerate(reasons):
        store.insert("labels", {"job_id": job_id, "conversation_id": conversation_id, "message_index": n,
                                "source": "logged", "reply": f"reply {n}", "status": "rejected", "reason": reason})


def test_import_tab_imports_a_file_and_reports(console):
    services, client = console
    summary = client.predict(handle_file(str(FIXTURES / "sharegpt.json")), "auto-detect", False, True,
                             api_name="/import_transcripts")
    assert "imported 2" in summary and "rejected 2" in summary
    assert services.store.count("conversations") == 2
    bad = client.predict(handle_file(str(FIXTURES / "openai_chat.jsonl")), "auto-detect", True, True,
                         api_name="/import_transcripts")
    assert "Nothing imported" in bad and services.store.count("conversations") == 2


def test_import_tab_offers_the_formats_the_importer_reads(console):
    _, client = console
    dropdowns = [c["props"] for c in client.config["components"] if c["props"].get("label") == "Format"]
    offered = ["auto-detect", "hf", "csv", "openai", "intercom", "zendesk", "freshdesk", "sharegpt", "tsv"]
    assert [choice[0] for choice in dropdowns[0]["choices"]] == offered == import_tab.format_choices()
    assert set(offered[1:]) == set(FORMATS) | set(ALIASES)


def test_label_tab_runs_a_job_and_builds_a_dataset(console):
    services, client = console
    import_file(services.store, FIXTURES / "sharegpt.json")
    status, rejected = client.predict("logged", 2, None, False, False, None, None, False, api_name="/label")
    assert "Label job 1: done" in status and "Dataset **ds-" in status
    assert status.startswith("labelling 3 turns with the agents' logged replies")  # the plan, shown first
    assert services.store.count("datasets") == 1
    assert rejected["data"] == []  # the agents' own replies pass the checks


def test_label_tab_lists_the_jobs_rejected_labels_and_no_other_jobs(settings, fake_embedder):
    from tests.assistant.shells.conftest import make_services

    services = make_services(settings, fake_embedder)
    import_file(services.store, FIXTURES / "sharegpt.json")
    for job in (1, 2):
        services.store.insert("label_jobs", {"id": job, "source": "logged", "status": "done"})
    add_rejected(services.store, 1, 1, ["too short", "placeholder left"])
    add_rejected(services.store, 2, 1, ["other job"])
    assert label_tab.rejected_rows(services.store, 1) == [[1, 0, "too short", "reply 0"], [1, 1, "placeholder left", "reply 1"]]


def test_label_options_treat_empty_and_zero_as_no_limit_but_an_empty_budget_as_the_default(settings):
    from distill.label import job_budget

    options = label_tab.label_options("logged", 4.0, 0, False, True, None, 0)
    assert (options.limit, options.min_csat, options.budget, options.concurrency) == (None, None, 0.0, 4)
    assert job_budget(options, settings) is None  # 0: no job budget
    options = label_tab.label_options("teacher", 2, 10, True, False, 4, 1.5)
    assert (options.limit, options.min_csat, options.budget, options.final_turn_only) == (10, 4.0, 1.5, True)
    empty = label_tab.label_options("teacher", 2, None, False, False, None, None)
    assert empty.budget is None and job_budget(empty, settings) == settings.label_budget == 2.0


def test_retrain_tab_runs_a_background_job_that_survives_a_reload(console, monkeypatch):
    services, client = console

    class Outcome:
        version, promoted, evaluation = "student-001-abc", True, {}

    def fake_retrain(store, settings, path, config, log, progress, should_stop, retriever):
        log(f"imported {path.name}; retrieval-augmented: {config.retrieval_augmented}")
        progress(type("P", (), {"line": lambda self: "step 1/1", "step": 1, "total_steps": 1})())
        return Outcome()

    monkeypatch.setattr(retrain_tab, "retrain_from_file", fake_retrain)
    assert "Started job" in client.predict(handle_file(str(FIXTURES / "sharegpt.json")), 1, True, api_name="/retrain")
    for _ in range(50):
        status, log = Client(client.src, verbose=False).predict(api_name="/job_status")  # a fresh page load
        if "done" in status:
            break
        time.sleep(0.1)
    assert "student-001-abc" in status and "promoted" in status and "imported sharegpt.json; retrieval-augmented: True" in log
    assert not list((services.settings.home / "uploads").rglob("*.json"))  # the job's private copy is gone


def test_a_retrain_refused_while_a_job_runs_keeps_no_copy_of_the_upload(settings, fake_embedder, tmp_path):
    from tests.assistant.shells.conftest import make_services

    class Busy:
        def start(self, kind, work):
            raise AssistantError("job 1 is still running; wait for it or cancel it")

    services = make_services(settings, fake_embedder)
    upload = tmp_path / "export.json"
    upload.write_text((FIXTURES / "sharegpt.json").read_text())
    assert retrain_tab.start_retrain(services, Busy(), str(upload), 1, False) == "⚠️ job 1 is still running; wait for it or cancel it"
    assert not upload.exists()  # Gradio's temporary copy: deleted once read
    assert not any(p.is_file() for p in (services.settings.home / "uploads").rglob("*"))


def test_job_status_describes_a_finished_evaluation(console):
    services, client = console
    services.store.insert("jobs", {
        "kind": "evaluation", "status": "done", "progress": "{}", "log": "", "error": "",
        "result": json.dumps({"run": 1, "report": "latest.html"})})
    status, _ = Client(client.src, verbose=False).predict(api_name="/job_status")
    assert "evaluation): done" in status and "report is written" in status and "None" not in status


def test_job_view_shows_progress_and_the_error_of_a_failed_job():
    class Runner:
        def latest(self):
            return {"id": 3, "kind": "retrain", "status": "failed", "progress": json.dumps(
                {"line": "step 5/20", "step": 5, "total": 20}), "result": None, "error": "out of memory", "log": "x\n"}

    head, log = job_view(Runner())
    assert head.startswith("**Job 3 (retrain): failed**")
    assert f"{progress_bar(5, 20)} step 5/20" in head and "⚠️ out of memory" in head and log == "x\n"
    assert progress_bar(5, 20, width=4) == "`[█···]`" and progress_bar(0, 0, width=2) == "`[··]`"


def test_report_frame_escapes_the_report_into_its_own_document(settings):
    assert report_tab.report_frame(settings).startswith("<p>No report yet")
    (settings.home / "reports").mkdir(parents=True)
    (settings.home / "reports" / "latest.html").write_text('<h1 title="A/B">Report</h1>', encoding="utf-8")
    frame = report_tab.report_frame(settings)
    assert 'srcdoc="&lt;h1 title=&quot;A/B&quot;&gt;Report&lt;/h1&gt;"' in frame


def test_models_tab_rollback_with_nothing_to_roll_back_says_so(settings):
    from assistant.store import open_store

    store = open_store(settings)
    message, table = models_tab.rollback(store)
    assert message.startswith("⚠️") and "nothing to roll back" in message and table == []


@pytest.mark.parametrize("files", [None, []])
def test_import_tab_without_a_file_asks_for_one(files):
    assert import_tab.import_transcripts(None, None, "auto-detect", False, True) == "Choose an export file first."
    assert import_tab.import_knowledge(None, files).startswith("Choose article files")
