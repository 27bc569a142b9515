"""The console: Import, Label, Retrain, Report and Models, for the support team, never for customers.

It is its own Gradio app, served by assistant.web behind sign-in (or on loopback only when no user is
configured), so none of its functions exists in the public chat's API. Each tab is a thin edge over the
same functions the CLI calls. Uploaded exports are deleted once read: they hold the customers' personal
data that only the scrubbed store should keep, and Gradio serves its temporary files by URL.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import gradio as gr

from assistant.errors import AssistantError, Cancelled

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


def models_table(store) -> list[list]:
    from assistant import students
    from distill import registry

    return [[r["version"], r["status"], registry.describe(r)] for r in students.versions(store)]


def build_console_app(services) -> gr.Blocks:
    store = services.store

    def import_transcripts(file, fmt: str, strict: bool, scrub: bool):
        if file is None:
            return "Choose an export file first."
        from distill.importer import import_file

        try:
            summary = import_file(store, file, None if fmt == "auto-detect" else fmt, strict=strict, scrub=scrub)
        except AssistantError as exc:
            return f"⚠️ **Nothing imported.** {exc}"
        finally:
            discard_upload(file)
        services.reload_retrieval()
        return "```\n" + "\n".join(summary.lines()) + "\n```"

    def import_knowledge(files):
        if not files:
            return "Choose article files (.md, .txt, .html) or a Zendesk Guide / Intercom JSON export."
        import shutil
        import tempfile
        from pathlib import Path

        from distill.kb import import_kb

        files = files if isinstance(files, list) else [files]
        try:
            if len(files) == 1 and str(files[0]).lower().endswith(".json"):
                result = import_kb(store, files[0], services.retriever.kb.embedder)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    for f in files:
                        shutil.copy(f, Path(tmp) / Path(f).name)
                    result = import_kb(store, tmp, services.retriever.kb.embedder)
        except AssistantError as exc:
            return f"⚠️ **Nothing imported.** {exc}"
        finally:
            for f in files:
                discard_upload(f)
        services.reload_retrieval()
        if result.unchanged:
            return f"Unchanged: KB version {result.version} already has exactly these {result.articles} articles."
        return f"KB version {result.version}: {result.articles} articles, {result.chunks} passages embedded. The teacher uses it now."

    def run_labelling(source, concurrency, limit, final_turn_only, resolved_only, min_csat, budget, allow_failed=False):
        import threading

        from distill.dataset import build_dataset
        from distill.label import LabelOptions, label

        options = LabelOptions(source=source, concurrency=int(concurrency), limit=int(limit) if limit else None,
                               final_turn_only=final_turn_only, resolved_only=resolved_only,
                               min_csat=float(min_csat) if min_csat else None, budget=float(budget) if budget else None)
        state: dict = {}

        def work():
            try:
                state["result"] = label(store, services.settings, options, retriever=services.retriever,
                                        progress=lambda p: state.__setitem__("progress", p))
                status = state["result"].status
                if status.startswith("done") or (allow_failed and status.startswith("stopped")):
                    state["dataset"] = build_dataset(store, services.settings, state["result"].job_id,
                                                     allow_failed=bool(allow_failed))
            except AssistantError as exc:
                state["error"] = str(exc)
            except Exception as exc:  # shown as a message, logged with its traceback
                log.exception("labelling failed")
                state["error"] = f"labelling failed: {exc}"

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.5)
            p = state.get("progress")
            bar = ""
            if p and p.total:
                filled = int(30 * p.done / p.total)
                bar = f"`[{'█' * filled}{'·' * (30 - filled)}]` {p.line()}"
            yield bar or "Starting…", gr.update()
        if "error" in state and "result" not in state:
            yield f"⚠️ {state['error']}", gr.update()
            return
        r, ds = state["result"], state.get("dataset")
        lines = [f"**Label job {r.job_id}: {r.status}.** Labels written by **{r.teacher}** (source: {r.source}).",
                 r.progress.line(), f"Accepted {r.progress.accepted}, rejected {r.progress.rejected}."]
        if ds:
            counts = ", ".join(f"{s} {c['rows']}" for s, c in ds.manifest["counts"].items())
            lines.append(f"Dataset **{ds.version}** ({'new' if ds.created else 'unchanged'}): {counts}.")
        elif "error" in state:  # the job ran, but its labels do not make a dataset (failed turns, none to train on)
            lines.append(f"⚠️ No dataset built: {state['error']}")
        rejected = [[x["conversation_id"], x["message_index"], x["reason"], x["reply"][:160]] for x in store.db.query(
            "SELECT conversation_id, message_index, reason, reply FROM labels WHERE job_id = ? AND status = 'rejected' "
            "ORDER BY id LIMIT 200", [r.job_id])]
        yield "\n\n".join(lines), rejected

    from assistant.jobs import JobRunner

    runner = JobRunner(store)

    def start_retrain(file, epochs, retrieval_augmented):
        if file is None:
            return "Choose a transcript export first."
        import shutil
        from pathlib import Path

        from distill.pipeline import retrain_from_file
        from distill.train import TrainConfig

        uploads = services.settings.home / "uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        # A private copy for the job (Gradio's temporary one is deleted now: it is reachable by URL while it
        # exists); the copy is deleted when the job ends, however it ends.
        kept = uploads / uuid.uuid4().hex / Path(file).name
        kept.parent.mkdir()
        shutil.copy(file, kept)
        discard_upload(file)

        config = TrainConfig(epochs=int(epochs), retrieval_augmented=bool(retrieval_augmented))

        def work(log, progress, should_stop):
            try:
                outcome = retrain_from_file(store, services.settings, kept, config=config, log=log,
                                            progress=lambda p: progress({"line": p.line(), "step": p.step, "total": p.total_steps}),
                                            should_stop=should_stop, retriever=services.retriever)
            finally:
                discard_upload(kept)
            services.reload_retrieval()
            return {"version": outcome.version, "promoted": outcome.promoted, "evaluation": outcome.evaluation}

        try:
            job_id = runner.start("retrain", work)
        except AssistantError as exc:
            return f"⚠️ {exc}"
        return f"Started job {job_id}."

    def cancel_retrain():
        return "Cancelling: the job stops at the next step and registers nothing." if runner.cancel() else "No job is running."

    def job_view():
        import json

        job = runner.latest()
        if job is None:
            return "No background job yet.", ""
        progress = json.loads(job["progress"] or "{}")
        head = f"**Job {job['id']} ({job['kind']}): {job['status']}**"
        if progress.get("total"):
            filled = int(30 * progress["step"] / max(1, progress["total"]))
            head += f"\n\n`[{'█' * filled}{'·' * (30 - filled)}]` {progress['line']}"
        result = json.loads(job["result"] or "{}") if job["status"] == "done" else {}
        if result.get("version"):
            head += (f"\n\n**{result['version']}** "
                     + ("was promoted and now serves the chat." if result.get("promoted") else "was registered but not promoted."))
        elif result.get("report"):
            head += "\n\nThe report is written: press **Show latest report**."
        if job["error"]:
            head += f"\n\n⚠️ {job['error']}"
        return head, job["log"] or ""

    def job_views():
        """One poll a second serves both tabs' views of the job (Retrain: status and log; Report: status)."""
        head, log = job_view()
        return head, log, head

    def report_frame():
        import html as html_lib

        latest = services.settings.home / "reports" / "latest.html"
        if not latest.exists():
            return "<p>No report yet: run an evaluation below (it needs a trained student: see the Retrain tab).</p>"
        page = html_lib.escape(latest.read_text(encoding="utf-8"), quote=True)
        return f'<iframe style="width:100%;height:900px;border:1px solid #e3e8ee" srcdoc="{page}"></iframe>'

    def start_eval(limit):
        from eval.abtest import EvalConfig, run_eval
        from eval.report import build_report

        def work(log, progress, should_stop):
            def show(arm, done, total):
                if should_stop():
                    raise Cancelled("evaluation cancelled")
                progress({"line": f"{arm}: {done}/{total} replies", "step": done, "total": total})

            run_id = run_eval(store, services.settings, EvalConfig(limit=int(limit) if limit else None), progress=show,
                              retriever=services.retriever)
            log(f"evaluation run {run_id} stored; measuring memory and throughput")
            from eval.measure import measure_run

            measure_run(store, services.settings, run_id)
            path, _ = build_report(store, services.settings, run_id)
            log(f"report written: {path}")
            return {"run": run_id, "report": str(path)}

        try:
            return f"Started job {runner.start('evaluation', work)}; progress shows on the Retrain tab and below."
        except AssistantError as exc:
            return f"⚠️ {exc}"

    def rollback():
        from distill import registry

        try:
            now = registry.rollback(store)
        except AssistantError as exc:
            return f"⚠️ {exc}", models_table(store)
        return f"Now serving **{now}**; the chat picks it up within a second.", models_table(store)

    from distill.train import TrainConfig

    train_defaults = TrainConfig()
    with gr.Blocks(title="Support Assistant console", fill_height=True) as console:
        gr.Markdown("# Support Assistant: console\nImport transcripts and articles, label, retrain, evaluate and "
                    "choose the serving student. Customers use the chat, which has none of this.")
        with gr.Tab("Import"):
            gr.Markdown("### Support transcripts\nOpenAI chat JSONL, ShareGPT, Hugging Face (parquet/JSON), CSV/TSV "
                        "(one row per message), Zendesk, Intercom or Freshdesk exports. PII is replaced with placeholders "
                        "before anything is stored; re-importing a file adds nothing.")
            with gr.Row():
                upload = gr.File(label="Export file", file_count="single", scale=2)
                with gr.Column(scale=1):
                    fmt = gr.Dropdown(["auto-detect", "openai", "sharegpt", "hf", "csv", "tsv", "zendesk", "intercom",
                                       "freshdesk"], value="auto-detect", label="Format")
                    strict = gr.Checkbox(False, label="Strict: import nothing if any record is bad")
                    scrub = gr.Checkbox(True, label="Scrub PII (recommended)")
                    import_btn = gr.Button("Import transcripts", variant="primary")
            import_summary = gr.Markdown()
            gr.Markdown("### Help-center knowledge base\nMarkdown / text / HTML articles, or a Zendesk Guide / "
                        "Intercom articles JSON export. Each import is a new KB version.")
            kb_upload = gr.File(label="Articles", file_count="multiple")
            kb_btn = gr.Button("Import knowledge base")
            kb_summary = gr.Markdown()
        with gr.Tab("Label"):
            default_source = "teacher" if services.settings.teacher_configured else "logged"
            gr.Markdown(
                "### Label conversations and build a dataset\nThe teacher writes the reply the student will learn for "
                "every agent turn (or use your agents' own replies). Stored results are reused: rerunning never pays "
                "twice. " + ("" if services.settings.teacher_configured else
                             "**No teacher API is configured**: the default source is your agents' logged replies; "
                             "*teacher* uses the offline case-based stand-in."))
            with gr.Row():
                source = gr.Radio(["teacher", "logged", "both"], value=default_source, label="Label source")
                concurrency = gr.Slider(1, 32, value=4, step=1, label="Concurrency")
                limit = gr.Number(None, label="Max conversations (0 = all)", precision=0)
            with gr.Row():
                final_only = gr.Checkbox(False, label="Final agent turn only")
                resolved_only = gr.Checkbox(False, label="Resolved conversations only")
                min_csat = gr.Number(None, label="Min CSAT (1-5; 0 = any)")
                budget = gr.Number(None, label="Budget cap in US$ (0 = none)")
                allow_failed = gr.Checkbox(False, label="Build the dataset even with failed turns")
            label_btn = gr.Button("Label and build dataset", variant="primary")
            label_status = gr.Markdown(elem_id="label-status")
            rejected_table = gr.Dataframe(headers=["conversation", "turn", "reason", "reply"], label="Rejected labels (for review)",
                                          interactive=False, wrap=True)
        with gr.Tab("Retrain"):
            gr.Markdown("### Retrain the student from a transcript export\nImport → label → train (LoRA) → evaluate on "
                        "the validation split → promote only if it beats the serving student. Runs in the background; "
                        "reloading the page keeps the job. An epoch over the sample's 446 training conversations is "
                        "about 191k tokens retrieval-augmented (the default) and 68k plain: on a 2-core CPU, at about "
                        "45 tokens/s, roughly 70 and 25 minutes.")
            with gr.Row():
                retrain_file = gr.File(label="Transcript export", file_count="single", scale=2)
                with gr.Column(scale=1):
                    retrain_epochs = gr.Slider(1, 5, value=3, step=1, label="Epochs")
                    retrain_rag = gr.Checkbox(value=train_defaults.retrieval_augmented, label="Retrieval-augmented",
                                              info="Train and serve with the KB passage and similar cases in the prompt: "
                                                   "far more accurate on the sample, about three times as long to train.")
                    retrain_btn = gr.Button("Start retraining", variant="primary")
                    cancel_btn = gr.Button("Cancel", variant="stop")
            retrain_msg = gr.Markdown()
            job_status = gr.Markdown(elem_id="job-status")
            job_log = gr.Textbox(label="Log", lines=12, max_lines=30, autoscroll=True, interactive=False)
            timer = gr.Timer(1.0)
        with gr.Tab("Report"):
            with gr.Row():
                eval_limit = gr.Number(None, label="Evaluate at most N test turns (0 = all)", precision=0)
                eval_btn = gr.Button("Run evaluation", variant="primary")
                refresh_btn = gr.Button("Show latest report")
            eval_msg = gr.Markdown()
            eval_status = gr.Markdown()
            report_html = gr.HTML(report_frame())
        with gr.Tab("Models"):
            models = gr.Dataframe(models_table(store), headers=["version", "status", "details"],
                                  label="Student versions", interactive=False, wrap=True)
            with gr.Row():
                models_refresh = gr.Button("Refresh")
                rollback_btn = gr.Button("Roll back to the previous version", variant="stop")
            models_msg = gr.Markdown()
        eval_btn.click(start_eval, [eval_limit], [eval_msg], api_name="evaluate", api_visibility=UNDOCUMENTED)
        refresh_btn.click(report_frame, None, [report_html], api_name=False)
        retrain_btn.click(start_retrain, [retrain_file, retrain_epochs, retrain_rag], [retrain_msg], api_name="retrain", api_visibility=UNDOCUMENTED)
        cancel_btn.click(cancel_retrain, None, [retrain_msg], api_name="cancel_retrain", api_visibility=UNDOCUMENTED)
        timer.tick(job_views, None, [job_status, job_log, eval_status], api_name=False)
        console.load(job_view, None, [job_status, job_log], api_name="job_status", api_visibility=UNDOCUMENTED)
        label_btn.click(run_labelling, [source, concurrency, limit, final_only, resolved_only, min_csat, budget, allow_failed],
                        [label_status, rejected_table], api_name="label", api_visibility=UNDOCUMENTED)
        import_btn.click(import_transcripts, [upload, fmt, strict, scrub], [import_summary], api_name="import_transcripts", api_visibility=UNDOCUMENTED)
        kb_btn.click(import_knowledge, [kb_upload], [kb_summary], api_name="import_kb", api_visibility=UNDOCUMENTED)
        models_refresh.click(lambda: models_table(store), None, [models], api_name="models", api_visibility=UNDOCUMENTED)
        rollback_btn.click(rollback, None, [models_msg, models], api_name="rollback", api_visibility=UNDOCUMENTED)
    console.queue(default_concurrency_limit=2)
    return console
