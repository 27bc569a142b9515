"""The console: Import, Label, Retrain, Report and Models, for the support team, never for customers.

It is its own Gradio app, served by assistant.shells.web behind sign-in (or on loopback only when no
user is configured), so none of its functions exists in the public chat's API. Each tab is a module
here that builds its tab and registers its handlers, thin edges over the same functions the CLI calls;
a new tab is a new module with a `build(services, ...)` called below. Uploaded exports are deleted
once read: they hold the customers' personal data that only the scrubbed store should keep, and
Gradio serves its temporary files by URL.
"""

from __future__ import annotations

import gradio as gr

from assistant.jobs import JobRunner
from assistant.shells.console import import_tab, label_tab, models_tab, report_tab, retrain_tab
from assistant.shells.console.shared import UNDOCUMENTED, job_view


def build_console_app(services) -> gr.Blocks:
    runner = JobRunner(services.store)  # one background job at a time, shared by Retrain and Report
    with gr.Blocks(title="Support Assistant console", fill_height=True) as console:
        gr.Markdown("# Support Assistant: console\nImport transcripts and articles, label, retrain, evaluate and "
                    "choose the serving student. Customers use the chat, which has none of this.")
        import_tab.build(services)
        label_tab.build(services)
        job = retrain_tab.build(services, runner)
        eval_status = report_tab.build(services, runner)
        models_tab.build(services)

        def job_views():
            """One poll a second serves both tabs' views of the job (Retrain: status and log; Report: status)."""
            head, log = job_view(runner)
            return head, log, head

        gr.Timer(1.0).tick(job_views, None, [job.status, job.log, eval_status], api_name=False)
        console.load(lambda: job_view(runner), None, [job.status, job.log], api_name="job_status",
                     api_visibility=UNDOCUMENTED)
    console.queue(default_concurrency_limit=2)
    return console
