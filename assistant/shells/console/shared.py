"""What the console's tabs share: upload clean-up, the progress bar, the background job's view, and
the API visibility of their functions."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# Signed-in users call the console's functions, but none is described in its API page: Gradio 6 renders
# the API description into the page it serves anonymous visitors too (its sign-in page).
UNDOCUMENTED = "undocumented"


def discard_upload(path) -> None:
    """Delete an uploaded file (Gradio's temporary copy or ours); a file already gone is fine."""
    try:
        Path(path).unlink(missing_ok=True)
        if Path(path).parent.parent.name == "uploads":  # our private copy's folder
            Path(path).parent.rmdir()
    except (OSError, TypeError):
        log.warning("could not delete upload %s", path)


def progress_bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / max(1, total))
    return f"`[{'█' * filled}{'·' * (width - filled)}]`"


def job_view(runner) -> tuple[str, str]:
    """(status, log) of the latest background job (retrain or evaluation), as Markdown and plain text."""
    job = runner.latest()
    if job is None:
        return "No background job yet.", ""
    progress = json.loads(job["progress"] or "{}")
    head = f"**Job {job['id']} ({job['kind']}): {job['status']}**"
    if progress.get("total"):
        head += f"\n\n{progress_bar(progress['step'], progress['total'])} {progress['line']}"
    result = json.loads(job["result"] or "{}") if job["status"] == "done" else {}
    if result.get("version"):
        head += (f"\n\n**{result['version']}** "
                 + ("was promoted and now serves the chat." if result.get("promoted") else "was registered but not promoted."))
    elif result.get("report"):
        head += "\n\nThe report is written: press **Show latest report**."
    if job["error"]:
        head += f"\n\n⚠️ {job['error']}"
    return head, job["log"] or ""
