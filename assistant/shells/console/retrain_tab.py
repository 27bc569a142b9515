"""The console's Retrain tab: a transcript export through import, label, train, evaluate and promote,
as one background job that outlives the page (its status and log are shown from the store)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from assistant.errors import AssistantError
from assistant.shells.console.shared import UNDOCUMENTED, discard_upload
from distill.pipeline import retrain_from_file
from distill.train import TrainConfig


def keep_upload(settings, file) -> Path:
    """A private copy of an upload for a background job; Gradio's temporary copy is deleted now, as it is
    reachable by URL while it exists. The job deletes the copy when it ends, however it ends."""
    kept = settings.home / "uploads" / uuid.uuid4().hex / Path(file).name
    kept.parent.mkdir(parents=True)
    shutil.copy(file, kept)
    discard_upload(file)
    return kept


def retrain_work(services, path: Path, config: TrainConfig):
    """The job's work (called by JobRunner with log, progress and should_stop)."""

    def work(log, progress, should_stop):
        try:
            outcome = retrain_from_file(services.store, services.settings, path, config=config, log=log,
                                        progress=lambda p: progress({"line": p.line(), "step": p.step, "total": p.total_steps}),
                                        should_stop=should_stop, retriever=services.retriever)
        finally:
            discard_upload(path)
        services.reload_retrieval()
        return {"version": outcome.version, "promoted": outcome.promoted, "evaluation": outcome.evaluation}

    return work


def start_retrain(services, runner, file, epochs, retrieval_augmented) -> str:
    if file is None:
        return "Choose a transcript export first."
    kept = keep_upload(services.settings, file)
    config = TrainConfig(epochs=int(epochs), retrieval_augmented=bool(retrieval_augmented))
    try:
        job_id = runner.start("retrain", retrain_work(services, kept, config))
    except AssistantError as exc:
        discard_upload(kept)
        return f"⚠️ {exc}"
    return f"Started job {job_id}."


def cancel_retrain(runner) -> str:
    return "Cancelling: the job stops at the next step and registers nothing." if runner.cancel() else "No job is running."


def build(services, runner) -> SimpleNamespace:
    """The tab; returns the job's status and log views, which the console refreshes."""
    defaults = TrainConfig()
    with gr.Tab("Retrain"):
        gr.Markdown("### Retrain the student from a transcript export\nImport → label → train (LoRA) → evaluate on "
                    "the validation split → promote only if it beats the serving student. Runs in the background; "
                    "reloading the page keeps the job. An epoch over the sample's 446 training conversations is "
                    "about 191k tokens retrieval-augmented (the default) and 68k plain: on a 2-core CPU, at about "
                    "45 tokens/s, roughly 70 and 25 minutes.")
        with gr.Row():
            retrain_file = gr.File(label="Transcript export", file_count="single", scale=2)
            with gr.Column(scale=1):
                epochs = gr.Slider(1, 5, value=3, step=1, label="Epochs")
                rag = gr.Checkbox(value=defaults.retrieval_augmented, label="Retrieval-augmented",
                                  info="Train and serve with the KB passage and similar cases in the prompt: "
                                       "far more accurate on the sample, about three times as long to train.")
                retrain_btn = gr.Button("Start retraining", variant="primary")
                cancel_btn = gr.Button("Cancel", variant="stop")
        retrain_msg = gr.Markdown()
        views = SimpleNamespace(status=gr.Markdown(elem_id="job-status"),
                                log=gr.Textbox(label="Log", lines=12, max_lines=30, autoscroll=True, interactive=False))
    retrain_btn.click(lambda *form: start_retrain(services, runner, *form), [retrain_file, epochs, rag], [retrain_msg],
                      api_name="retrain", api_visibility=UNDOCUMENTED)
    cancel_btn.click(lambda: cancel_retrain(runner), None, [retrain_msg], api_name="cancel_retrain",
                     api_visibility=UNDOCUMENTED)
    return views
