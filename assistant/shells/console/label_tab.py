"""The console's Label tab: a label job (teacher, agents' replies, or both), then the dataset it makes.

The job runs in a thread so the tab can show its progress while it works; the labels rejected by the
quality checks are listed for review. Before the first call the tab shows the job's plan: what a paid teacher
will be asked, about what it costs and under which budget (ASSISTANT_LABEL_BUDGET unless the form says)."""

from __future__ import annotations

import logging
import threading

import gradio as gr

from assistant.errors import AssistantError
from assistant.shells.console.shared import UNDOCUMENTED, progress_bar
from distill.dataset import build_dataset
from distill.label import LabelOptions, label, label_plan

log = logging.getLogger(__name__)

REJECTED_SHOWN = 200


def label_options(source, concurrency, limit, final_turn_only, resolved_only, min_csat, budget) -> LabelOptions:
    """The form's values as options; an empty field or 0 means no limit, except the budget: empty is the
    default budget (ASSISTANT_LABEL_BUDGET), 0 none."""
    return LabelOptions(source=source, concurrency=int(concurrency), limit=int(limit) if limit else None,
                        final_turn_only=final_turn_only, resolved_only=resolved_only,
                        min_csat=float(min_csat) if min_csat else None,
                        budget=None if budget in (None, "") else float(budget))


def label_and_build(services, options: LabelOptions, allow_failed: bool, state: dict) -> None:
    """Label, then build the dataset when the job's outcome allows it. Writes into `state`: progress,
    result, dataset, error (a job that ran but made no dataset has both result and error)."""
    try:
        state["result"] = label(services.store, services.settings, options, retriever=services.retriever,
                                progress=lambda p: state.__setitem__("progress", p))
        status = state["result"].status
        if status.startswith("done") or (allow_failed and status.startswith("stopped")):
            state["dataset"] = build_dataset(services.store, services.settings, state["result"].job_id,
                                             allow_failed=bool(allow_failed))
    except AssistantError as exc:
        state["error"] = str(exc)
    except Exception as exc:  # shown as a message, logged with its traceback
        log.exception("labelling failed")
        state["error"] = f"labelling failed: {exc}"


def label_summary(state: dict) -> str:
    r, ds = state["result"], state.get("dataset")
    lines = [*([state["plan"]] if state.get("plan") else []),
             f"**Label job {r.job_id}: {r.status}.** Labels written by **{r.teacher}** (source: {r.source}).",
             r.progress.line(), f"Accepted {r.progress.accepted}, rejected {r.progress.rejected}."]
    if ds:
        counts = ", ".join(f"{s} {c['rows']}" for s, c in ds.manifest["counts"].items())
        lines.append(f"Dataset **{ds.version}** ({'new' if ds.created else 'unchanged'}): {counts}.")
    elif "error" in state:  # the job ran, but its labels do not make a dataset (failed turns, none to train on)
        lines.append(f"⚠️ No dataset built: {state['error']}")
    return "\n\n".join(lines)


def rejected_rows(store, job_id: int) -> list[list]:
    return [[x["conversation_id"], x["message_index"], x["reason"], x["reply"][:160]]
            for x in store.rejected_labels(job_id, limit=REJECTED_SHOWN)]


def run_labelling(services, source, concurrency, limit, final_turn_only, resolved_only, min_csat, budget,
                  allow_failed=False):
    """The Label button: yields (status, rejected table) while the job runs, then its summary."""
    options = label_options(source, concurrency, limit, final_turn_only, resolved_only, min_csat, budget)
    try:
        plan = label_plan(services.store, services.settings, options).line()
    except AssistantError as exc:
        yield f"⚠️ {exc}", gr.update()
        return
    state: dict = {"plan": plan}
    thread = threading.Thread(target=label_and_build, args=(services, options, allow_failed, state), daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
        p = state.get("progress")
        yield (f"{plan}\n\n{progress_bar(p.done, p.total)} {p.line()}" if p and p.total else f"{plan}\n\nStarting…"), gr.update()
    if "error" in state and "result" not in state:
        yield f"⚠️ {state['error']}", gr.update()
        return
    yield label_summary(state), rejected_rows(services.store, state["result"].job_id)


def build(services) -> None:
    configured = services.settings.teacher_configured
    with gr.Tab("Label"):
        gr.Markdown(
            "### Label conversations and build a dataset\nThe teacher writes the reply the student will learn for "
            "every agent turn (or use your agents' own replies). Stored results are reused: rerunning never pays "
            "twice. The job's plan (what it will call, about what it costs, its budget) is shown before anything is "
            "paid. " + ("" if configured else
                         "**No teacher API is configured**: the default source is your agents' logged replies; "
                         "*teacher* uses the offline case-based stand-in."))
        with gr.Row():
            source = gr.Radio(["teacher", "logged", "both"], value="teacher" if configured else "logged",
                              label="Label source")
            concurrency = gr.Slider(1, 32, value=4, step=1, label="Concurrency")
            limit = gr.Number(None, label="Max conversations (0 = all)", precision=0)
        with gr.Row():
            final_only = gr.Checkbox(False, label="Final agent turn only")
            resolved_only = gr.Checkbox(False, label="Resolved conversations only")
            min_csat = gr.Number(None, label="Min CSAT (1-5; 0 = any)")
            budget = gr.Number(None, label=f"Budget cap in US$ (empty: {services.settings.label_budget:g}; 0 = none)")
            allow_failed = gr.Checkbox(False, label="Build the dataset even with failed turns")
        label_btn = gr.Button("Label and build dataset", variant="primary")
        label_status = gr.Markdown(elem_id="label-status")
        rejected_table = gr.Dataframe(headers=["conversation", "turn", "reason", "reply"],
                                      label="Rejected labels (for review)", interactive=False, wrap=True)

    def run(*form):  # a generator itself, so Gradio streams its updates
        yield from run_labelling(services, *form)

    label_btn.click(run, [source, concurrency, limit, final_only, resolved_only, min_csat, budget, allow_failed],
                    [label_status, rejected_table], api_name="label", api_visibility=UNDOCUMENTED)
