"""The console's Report tab: run the offline evaluation as a background job, and show the latest report."""

from __future__ import annotations

import html

import gradio as gr

from assistant.errors import AssistantError, Cancelled
from assistant.shells.console.shared import UNDOCUMENTED
from eval.abtest import EvalConfig, run_eval
from eval.measure import measure_run
from eval.report import build_report


def report_frame(settings) -> str:
    """The latest HTML report in an iframe (its own document, so its styles stay inside it)."""
    latest = settings.home / "reports" / "latest.html"
    if not latest.exists():
        return "<p>No report yet: run an evaluation below (it needs a trained student: see the Retrain tab).</p>"
    page = html.escape(latest.read_text(encoding="utf-8"), quote=True)
    return f'<iframe style="width:100%;height:900px;border:1px solid #e3e8ee" srcdoc="{page}"></iframe>'


def evaluation_work(services, limit: int | None):
    """The job's work (called by JobRunner with log, progress and should_stop): evaluate, measure, report."""

    def work(log, progress, should_stop):
        def show(arm, done, total):
            if should_stop():
                raise Cancelled("evaluation cancelled")
            progress({"line": f"{arm}: {done}/{total} replies", "step": done, "total": total})

        run_id = run_eval(services.store, services.settings, EvalConfig(limit=limit), progress=show,
                          retriever=services.retriever)
        log(f"evaluation run {run_id} stored; measuring memory and throughput")
        measure_run(services.store, services.settings, run_id)
        path, _ = build_report(services.store, services.settings, run_id)
        log(f"report written: {path}")
        return {"run": run_id, "report": str(path)}

    return work


def start_eval(services, runner, limit) -> str:
    try:
        job_id = runner.start("evaluation", evaluation_work(services, int(limit) if limit else None))
    except AssistantError as exc:
        return f"⚠️ {exc}"
    return f"Started job {job_id}; progress shows on the Retrain tab and below."


def build(services, runner):
    """The tab; returns its view of the job's status, which the console refreshes."""
    with gr.Tab("Report"):
        with gr.Row():
            eval_limit = gr.Number(None, label="Evaluate at most N test turns (0 = all)", precision=0)
            eval_btn = gr.Button("Run evaluation", variant="primary")
            refresh_btn = gr.Button("Show latest report")
        eval_msg = gr.Markdown()
        eval_status = gr.Markdown()
        report_html = gr.HTML(report_frame(services.settings))
    eval_btn.click(lambda limit: start_eval(services, runner, limit), [eval_limit], [eval_msg],
                   api_name="evaluate", api_visibility=UNDOCUMENTED)
    refresh_btn.click(lambda: report_frame(services.settings), None, [report_html], api_name=False)
    return eval_status
