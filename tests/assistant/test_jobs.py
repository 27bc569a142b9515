import time

import pytest

from assistant.errors import AssistantError
from assistant.jobs import JobRunner
from assistant.store import Store


def test_one_job_at_a_time_with_progress_log_and_cancel(tmp_path):
    store = Store(tmp_path / "a.db")
    runner = JobRunner(store)

    def work(log, progress, should_stop):
        for step in range(200):
            if should_stop():
                raise RuntimeError("stopped")
            log(f"step {step}")
            progress({"step": step, "total": 200, "line": f"step {step}"})
            time.sleep(0.01)
        return {"ok": True}

    runner.start("retrain", work)
    with pytest.raises(AssistantError, match="still running"):
        runner.start("retrain", work)
    time.sleep(0.1)
    assert runner.cancel()
    runner.wait(5)
    job = runner.latest()
    assert job["status"] == "cancelled" and "nothing was registered" in job["error"] and "step 0" in job["log"]
    runner.start("retrain", lambda log, progress, should_stop: {"answer": 42})
    runner.wait(5)
    assert runner.latest()["status"] == "done" and '"answer": 42' in runner.latest()["result"]


def test_a_job_left_running_by_a_dead_process_is_marked_interrupted(tmp_path):
    store = Store(tmp_path / "a.db")
    store.db["jobs"].insert({"kind": "retrain", "status": "running", "progress": "{}", "log": ""})
    JobRunner(store)  # a new process starts
    assert store.db["jobs"].get(1)["status"] == "interrupted"


def test_a_job_needing_an_extra_the_install_lacks_says_which_to_install(tmp_path):
    runner = JobRunner(Store(tmp_path / "a.db"))

    def work(log, progress, should_stop):
        raise ModuleNotFoundError("No module named 'peft'", name="peft")

    runner.start("retrain", work)
    runner.wait(5)
    job = runner.latest()
    assert job["status"] == "failed" and "support-assistant[train]" in job["error"]
