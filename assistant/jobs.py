"""One background job at a time (the Retrain loop), with its progress and log kept in the store.

The UI starts a job, polls `latest()` to show progress and the log, and can `cancel()` it. Because the
state lives in SQLite, reloading the page (or opening it elsewhere) shows the same job. A job found
"running" when the application starts belonged to a process that died: it is marked interrupted.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from typing import Callable

from assistant.errors import AssistantError, Cancelled
from assistant.store import Store, now

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._job_id: int | None = None
        store.execute(
            "UPDATE jobs SET status = 'interrupted', finished_at = ? WHERE status IN ('running', 'cancelling')", [now()])

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, kind: str, work: Callable[..., dict]) -> int:
        """Run work(log=..., progress=..., should_stop=...) in the background; refuse if a job runs."""
        with self._lock:
            if self.busy:
                raise AssistantError(f"job {self._job_id} is still running; wait for it or cancel it")
            self._cancel = threading.Event()
            job_id = self.store.insert("jobs",
                {"kind": kind, "status": "running", "progress": "{}", "log": "", "started_at": now()})
            self._job_id = job_id
            self._thread = threading.Thread(target=self._run, args=(job_id, work), daemon=True, name=f"job-{job_id}")
            self._thread.start()
            return job_id

    def _append(self, job_id: int, line: str) -> None:
        self.store.execute("UPDATE jobs SET log = log || ? WHERE id = ?", [line.rstrip() + "\n", job_id])

    def _progress(self, job_id: int, progress: dict) -> None:
        self.store.update("jobs", job_id, {"progress": json.dumps(progress)})

    def _run(self, job_id: int, work) -> None:
        try:
            result = work(log=lambda line: self._append(job_id, line),
                          progress=lambda p: self._progress(job_id, p),
                          should_stop=self._cancel.is_set)
            status, error, result_json = "done", "", json.dumps(result, default=str)
        except Exception as exc:  # every failure ends the job visibly; a traceback goes to the log file only
            cancelled = self._cancel.is_set() or isinstance(exc, Cancelled)
            status = "cancelled" if cancelled else "failed"
            error = "cancelled by the user; nothing was registered" if cancelled else _plain(exc)
            result_json = "{}"
            if not cancelled and not isinstance(exc, AssistantError):
                log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        self.store.update("jobs", job_id, {
            "status": status, "error": error, "result": result_json, "finished_at": now()})

    def cancel(self) -> bool:
        if not self.busy:
            return False
        self._cancel.set()
        self.store.update("jobs", self._job_id, {"status": "cancelling"})
        return True

    def latest(self) -> dict | None:
        return next(self.store.db.query("SELECT * FROM jobs ORDER BY id DESC LIMIT 1"), None)

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def _plain(exc: Exception) -> str:
    """What the console shows for a failed job: for an optional package a serving-only install lacks, the one line
    saying which extra to install (the Retrain and Report tabs need [train] / [eval])."""
    if isinstance(exc, ModuleNotFoundError):
        from assistant.settings import missing_extra

        return missing_extra(exc) or str(exc)
    return str(exc)
