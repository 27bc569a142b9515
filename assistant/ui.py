"""The Gradio 6 chat UI: a thin edge over `assistant.chat.converse` and the store.

Left: the conversation, streamed. Right: the Student / Teacher / Auto switch and a panel with the
facts of the last reply (who answered and why, version, TTFT, latency, tokens, cost), kept out of
the reply text. Thumbs on each reply (and buttons for the last one) are stored against its exchange.
Errors become a visible message, never a stack trace.

The conversation the model sees lives on the server (see `chat.converse`); the chatbot value a client
sends back is only redrawn. The session id is a gr.State: Gradio keeps it per browser session on the
server and never reads it from a request, so an API caller cannot pick another visitor's session.
"""

from __future__ import annotations

import logging
import uuid

import gradio as gr

from assistant.chat import MODES, converse
from assistant.errors import AssistantError, Cancelled

log = logging.getLogger(__name__)

CSS = """
#side-panel {font-size: 0.92em}
#notice {color: #9a3412}
footer {display: none !important}
"""


def _fmt(value, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{unit}"


def content_text(content) -> str:
    """Plain text of a chat message's content: a str, a list of parts (dicts or strings), or one part.

    Gradio 6 hands earlier turns back as lists of content parts ([{"type": "text", "text": ...}]).
    Parts without text (files, components) show as nothing; this app sends none.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content_text(content.get("text"))
    if isinstance(content, (list, tuple)):
        return "\n".join(text for text in map(content_text, content) if text)
    return str(content)


def panel_markdown(ex: dict | None) -> str:
    if not ex:
        return "*No reply yet. Ask a question to see which model answers, why, and what it cost.*"
    who = "Teacher" if ex["routed_to"] == "teacher" else "Student"
    cost = "–" if ex.get("cost") is None else f"${ex['cost']:.6f}"
    lines = [
        f"### Last reply: {who}",
        f"**Model:** {ex['model_name']}  ",
        f"**Version:** `{ex['model_version']}`  ",
        f"**Route:** {ex['route']} → {ex['routed_to']} (score {ex['route_score']:.2f})  ",
        f"**Why:** {ex['route_reason']}  ",
        f"**Time to first token:** {_fmt(ex.get('ttft_ms'), ' ms')}  ",
        f"**Total latency:** {_fmt(ex.get('latency_ms'), ' ms')}  ",
        f"**Tokens in / out:** {_fmt(ex.get('input_tokens'))} / {_fmt(ex.get('output_tokens'))}  ",
        f"**Speed:** {_fmt(ex.get('tokens_per_s'), ' tokens/s', 1)}  ",
        f"**Cost:** {cost}  ",
        f"**Exchange:** #{ex['id']}",
    ]
    source = ex.get("source") or {}
    if source.get("source") == "case":
        lines.append(f"\n*Answered from a similar resolved conversation (similarity {source['score']:.2f}).*")
    elif source.get("source") == "kb":
        lines.append(f"\n*Answered from the help-center article “{source['title']}”.*")
    if ex.get("notice"):
        lines.append(f"\n⚠️ **{ex['notice']}**")
    return "\n".join(lines)


def header_markdown(services) -> str:
    s, t = services.student, services.teacher
    lines = [
        "# Support Assistant",
        f"**Student:** {s.name} (`{s.version}`), served locally by llama.cpp.  ",
        f"**Teacher:** {t.description}.",
    ]
    if services.teacher_is_standin:
        lines.append(
            "\n> No teacher API is configured, so the **Teacher** is an offline stand-in: it answers with what "
            "your agents said in the most similar resolved conversation (or the closest help-center article). "
            "Set `ASSISTANT_TEACHER_BASE_URL` / `OPENAI_API_KEY` to use a real teacher model."
        )
    return "\n".join(lines)


def build_app(services) -> gr.Blocks:
    store = services.store

    def new_session():
        return str(uuid.uuid4())

    def send(message: str, history: list, mode: str, session_id: str, ids: dict):
        # `history` is the chatbot as the browser shows it: used for display only. What the model sees
        # is the session's history kept on the server (chat.converse), so a client cannot forge turns.
        history = [{"role": m["role"], "content": content_text(m.get("content"))} for m in history or []
                   if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
        ids = dict(ids or {})
        message = (message or "").strip()
        if not message:
            yield history, gr.update(), session_id, ids, "", gr.update()
            return
        session_id = session_id or new_session()
        history.append({"role": "user", "content": message})
        history.append({"role": "assistant", "content": ""})
        yield history, gr.update(), session_id, ids, "", gr.update()
        text = ""
        try:
            for event in converse(services, session_id, message, mode):
                if event.kind == "delta":
                    text += event.text
                    history[-1] = {"role": "assistant", "content": text}
                    yield history, gr.update(), session_id, ids, "", gr.update()
                elif event.kind == "reset":
                    text = ""
                elif event.kind == "done":
                    ex = event.exchange
                    history[-1] = {"role": "assistant", "content": ex["reply"] or "(empty reply)"}
                    ids[str(len(history) - 1)] = ex["id"]
                    yield history, panel_markdown(ex), session_id, ids, "", ex["id"]
        except AssistantError as exc:
            history[-1] = {"role": "assistant", "content": f"⚠️ Sorry, something went wrong: {exc}"}
            yield history, gr.update(), session_id, ids, "", gr.update()
        except Exception:  # never show a stack trace to a customer
            log.exception("chat failed")
            history[-1] = {"role": "assistant", "content": "⚠️ Sorry, something went wrong. Please try again."}
            yield history, gr.update(), session_id, ids, "", gr.update()

    def on_like(ids: dict, data: gr.LikeData):
        index = data.index if isinstance(data.index, int) else data.index[0]
        exchange_id = (ids or {}).get(str(index))
        if exchange_id is None:
            return "Feedback works on the assistant's replies."
        thumbs = 1 if data.liked is True or data.liked == "Like" else -1
        store.add_feedback(exchange_id, thumbs)
        return f"Thanks: feedback {'👍' if thumbs > 0 else '👎'} saved for exchange #{exchange_id}."

    def feedback(exchange_id, thumbs: int, comment: str = ""):
        if not exchange_id:
            return "Nothing to rate yet."
        store.add_feedback(int(exchange_id), thumbs, comment or "")
        return f"Thanks: feedback {'👍' if thumbs > 0 else '👎'} saved for exchange #{int(exchange_id)}."

    def import_transcripts(file, fmt: str, strict: bool, scrub: bool):
        if file is None:
            return "Choose an export file first."
        from distill.importer import import_file

        try:
            summary = import_file(store, file, None if fmt == "auto-detect" else fmt, strict=strict, scrub=scrub)
        except AssistantError as exc:
            return f"⚠️ **Nothing imported.** {exc}"
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
        services.reload_retrieval()
        if result.unchanged:
            return f"Unchanged: KB version {result.version} already has exactly these {result.articles} articles."
        return f"KB version {result.version}: {result.articles} articles, {result.chunks} passages embedded. The teacher uses it now."

    def run_labelling(source, concurrency, limit, final_turn_only, resolved_only, min_csat, budget):
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
                if state["result"].status.startswith("done"):
                    state["dataset"] = build_dataset(store, services.settings, state["result"].job_id)
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
        if "error" in state:
            yield f"⚠️ {state['error']}", gr.update()
            return
        r, ds = state["result"], state.get("dataset")
        lines = [f"**Label job {r.job_id}: {r.status}.** Labels written by **{r.teacher}** (source: {r.source}).",
                 r.progress.line(), f"Accepted {r.progress.accepted}, rejected {r.progress.rejected}."]
        if ds:
            counts = ", ".join(f"{s} {c['rows']}" for s, c in ds.manifest["counts"].items())
            lines.append(f"Dataset **{ds.version}** ({'new' if ds.created else 'unchanged'}): {counts}.")
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
        kept = uploads / Path(file).name
        shutil.copy(file, kept)  # Gradio's temporary upload may vanish while the job runs

        config = TrainConfig(epochs=int(epochs), retrieval_augmented=bool(retrieval_augmented))

        def work(log, progress, should_stop):
            outcome = retrain_from_file(store, services.settings, kept, config=config, log=log,
                                        progress=lambda p: progress({"line": p.line(), "step": p.step, "total": p.total_steps}),
                                        should_stop=should_stop, retriever=services.retriever)
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

    def clear():
        return [], panel_markdown(None), new_session(), {}, "", None, ""

    from distill.train import TrainConfig

    train_defaults = TrainConfig()
    with gr.Blocks(title="Support Assistant", fill_height=True) as demo:
        session = gr.State(new_session)
        ids = gr.State({})
        last_id = gr.State(None)
        gr.Markdown(header_markdown(services))
        with gr.Tab("Chat"), gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Conversation", height=480, elem_id="chat")
                with gr.Row():
                    box = gr.Textbox(placeholder="Type a customer message and press Enter", show_label=False,
                                     scale=5, elem_id="message", autofocus=True)
                    send_btn = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                with gr.Row():
                    up = gr.Button("👍 Helpful", size="sm", elem_id="thumbs-up")
                    down = gr.Button("👎 Not helpful", size="sm", elem_id="thumbs-down")
                    comment = gr.Textbox(placeholder="Optional comment with your rating", show_label=False, scale=3)
                    new = gr.Button("New conversation", size="sm", elem_id="new-conversation")
                status = gr.Markdown("", elem_id="status")
            with gr.Column(scale=1, elem_id="side-panel"):
                mode = gr.Radio(list(MODES), value="Auto", label="Who answers", elem_id="mode",
                                info="Auto lets the router decide per message.")
                panel = gr.Markdown(panel_markdown(None), elem_id="last-reply")
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
            label_btn = gr.Button("Label and build dataset", variant="primary")
            label_status = gr.Markdown(elem_id="label-status")
            rejected_table = gr.Dataframe(headers=["conversation", "turn", "reason", "reply"], label="Rejected labels (for review)",
                                          interactive=False, wrap=True)
        with gr.Tab("Retrain"):
            gr.Markdown("### Retrain the student from a transcript export\nImport → label → train (LoRA) → evaluate on "
                        "the validation split → promote only if it beats the serving student. Runs in the background; "
                        "reloading the page keeps the job. An epoch over the sample's 446 training conversations is "
                        "about 139k tokens retrieval-augmented (the default) and 68k plain: on a 2-core CPU, at about "
                        "100 tokens/s, roughly 25 and 12 minutes.")
            with gr.Row():
                retrain_file = gr.File(label="Transcript export", file_count="single", scale=2)
                with gr.Column(scale=1):
                    retrain_epochs = gr.Slider(1, 5, value=3, step=1, label="Epochs")
                    retrain_rag = gr.Checkbox(value=train_defaults.retrieval_augmented, label="Retrieval-augmented",
                                              info="Train and serve with the KB passage and similar cases in the prompt: "
                                                   "far more accurate on the sample, about twice as long to train.")
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
        eval_btn.click(start_eval, [eval_limit], [eval_msg], api_name="evaluate")
        refresh_btn.click(report_frame, None, [report_html], api_name=False)
        retrain_btn.click(start_retrain, [retrain_file, retrain_epochs, retrain_rag], [retrain_msg], api_name="retrain")
        cancel_btn.click(cancel_retrain, None, [retrain_msg], api_name="cancel_retrain")
        timer.tick(job_views, None, [job_status, job_log, eval_status], api_name=False)
        demo.load(job_view, None, [job_status, job_log], api_name="job_status")
        label_btn.click(run_labelling, [source, concurrency, limit, final_only, resolved_only, min_csat, budget],
                        [label_status, rejected_table], api_name="label")
        import_btn.click(import_transcripts, [upload, fmt, strict, scrub], [import_summary], api_name="import_transcripts")
        kb_btn.click(import_knowledge, [kb_upload], [kb_summary], api_name="import_kb")

        outputs = [chatbot, panel, session, ids, box, last_id]
        box.submit(send, [box, chatbot, mode, session, ids], outputs, api_name="send")
        send_btn.click(send, [box, chatbot, mode, session, ids], outputs, api_name=False)
        chatbot.like(on_like, [ids], [status], api_name=False)
        up.click(lambda i, c: feedback(i, 1, c), [last_id, comment], [status], api_name="thumbs_up")
        down.click(lambda i, c: feedback(i, -1, c), [last_id, comment], [status], api_name="thumbs_down")
        new.click(clear, None, [chatbot, panel, session, ids, box, last_id, status], api_name="new_conversation")
    demo.queue(default_concurrency_limit=services.settings.concurrency)
    return demo


def launch(services, *, prevent_thread_lock: bool = False, open_browser: bool = False):
    demo = build_app(services)
    demo.launch(
        server_name=services.settings.host, server_port=services.settings.port, inbrowser=open_browser,
        prevent_thread_lock=prevent_thread_lock, show_error=False, css=CSS,
    )
    return demo
