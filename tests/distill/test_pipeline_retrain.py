"""The retrain loop labels with the job's cancel event and a budget (fast: import and label are faked)."""

import threading
import time
from types import SimpleNamespace

import pytest

import distill.importer
import distill.label
from assistant.errors import Cancelled, InputError
from distill.pipeline import retrain_from_file, stop_event


@pytest.fixture
def fake_label(monkeypatch):
    seen = {}
    monkeypatch.setattr(distill.importer, "import_file", lambda store, path: SimpleNamespace(lines=lambda max_rejected: []))

    def label(store, settings, options, *, retriever=None, stop=None, **kw):
        seen.update(options=options, stop=stop)
        if seen.get("cancel_during"):
            seen["cancel_during"]()
        status = "stopped" if stop.is_set() else seen.get("status", "done with 1 failed turns")
        return SimpleNamespace(job_id=1, status=status, progress=SimpleNamespace(line=lambda: ""))

    monkeypatch.setattr(distill.label, "label", label)
    return seen


def test_retrain_labels_with_the_jobs_cancel_event_and_budget(fake_label, settings):
    cancel = threading.Event()  # what JobRunner hands over as should_stop=cancel.is_set
    fake_label["cancel_during"] = cancel.set  # the user presses Cancel while labelling runs
    with pytest.raises(Cancelled, match="while labelling"):
        retrain_from_file(None, settings, "x.jsonl", should_stop=cancel.is_set, budget=2.5)
    assert fake_label["stop"] is cancel and fake_label["options"].budget == 2.5


def test_retrain_builds_no_dataset_from_a_job_with_failed_turns(fake_label, settings, monkeypatch):
    import distill.dataset

    calls = []

    def refuse(store, settings, job_id, **kw):
        calls.append(kw)
        raise InputError("label job 1 ended 'done with 1 failed turns': no dataset built")

    monkeypatch.setattr(distill.dataset, "build_dataset", refuse)
    with pytest.raises(InputError, match="no dataset built"):
        retrain_from_file(None, settings, "x.jsonl")
    assert calls == [{"allow_failed": False}]
    fake_label["status"] = "stopped: daily teacher budget reached"
    with pytest.raises(InputError, match="labelling did not finish: stopped: daily teacher budget reached"):
        retrain_from_file(None, settings, "x.jsonl")


def test_any_should_stop_callable_becomes_a_stop_event():
    flag = {"stop": False}
    event, release = stop_event(lambda: flag["stop"])
    assert not event.is_set()
    flag["stop"] = True
    assert event.wait(5)  # the watcher noticed
    release()
    idle, release_idle = stop_event(None)
    release_idle()
    time.sleep(0.01)
    assert not idle.is_set()
