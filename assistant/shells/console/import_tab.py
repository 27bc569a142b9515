"""The console's Import tab: transcript exports into the store, help-center articles into a new KB version."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import gradio as gr

from assistant.errors import AssistantError
from assistant.shells.console.shared import UNDOCUMENTED, discard_upload
from distill.formats import ALIASES, FORMATS
from distill.importer import import_file
from distill.kb import import_kb

AUTO = "auto-detect"


def format_choices() -> list[str]:
    return [AUTO, *FORMATS, *ALIASES]


def import_transcripts(services, file, fmt: str, strict: bool, scrub: bool) -> str:
    """Import one uploaded export; a Markdown summary, or why nothing was imported."""
    if file is None:
        return "Choose an export file first."
    try:
        summary = import_file(services.store, file, None if fmt == AUTO else fmt, strict=strict, scrub=scrub)
    except AssistantError as exc:
        return f"⚠️ **Nothing imported.** {exc}"
    finally:
        discard_upload(file)
    services.reload_retrieval()
    return "```\n" + "\n".join(summary.lines()) + "\n```"


def import_knowledge(services, files) -> str:
    """Import uploaded articles (or one Zendesk Guide / Intercom JSON export) as a new KB version."""
    if not files:
        return "Choose article files (.md, .txt, .html) or a Zendesk Guide / Intercom JSON export."
    files = files if isinstance(files, list) else [files]
    embedder = services.retriever.kb.embedder
    try:
        if len(files) == 1 and str(files[0]).lower().endswith(".json"):
            result = import_kb(services.store, files[0], embedder)
        else:
            with tempfile.TemporaryDirectory() as tmp:  # import_kb reads a folder of articles
                for f in files:
                    shutil.copy(f, Path(tmp) / Path(f).name)
                result = import_kb(services.store, tmp, embedder)
    except AssistantError as exc:
        return f"⚠️ **Nothing imported.** {exc}"
    finally:
        for f in files:
            discard_upload(f)
    services.reload_retrieval()
    if result.unchanged:
        return f"Unchanged: KB version {result.version} already has exactly these {result.articles} articles."
    return f"KB version {result.version}: {result.articles} articles, {result.chunks} passages embedded. The teacher uses it now."


def build(services) -> None:
    with gr.Tab("Import"):
        gr.Markdown("### Support transcripts\nOpenAI chat JSONL, ShareGPT, Hugging Face (parquet/JSON), CSV/TSV "
                    "(one row per message), Zendesk, Intercom or Freshdesk exports. PII is replaced with placeholders "
                    "before anything is stored; re-importing a file adds nothing.")
        with gr.Row():
            upload = gr.File(label="Export file", file_count="single", scale=2)
            with gr.Column(scale=1):
                fmt = gr.Dropdown(format_choices(), value=AUTO, label="Format")
                strict = gr.Checkbox(False, label="Strict: import nothing if any record is bad")
                scrub = gr.Checkbox(True, label="Scrub PII (recommended)")
                import_btn = gr.Button("Import transcripts", variant="primary")
        import_summary = gr.Markdown()
        gr.Markdown("### Help-center knowledge base\nMarkdown / text / HTML articles, or a Zendesk Guide / "
                    "Intercom articles JSON export. Each import is a new KB version.")
        kb_upload = gr.File(label="Articles", file_count="multiple")
        kb_btn = gr.Button("Import knowledge base")
        kb_summary = gr.Markdown()
    import_btn.click(lambda *form: import_transcripts(services, *form), [upload, fmt, strict, scrub], [import_summary],
                     api_name="import_transcripts", api_visibility=UNDOCUMENTED)
    kb_btn.click(lambda files: import_knowledge(services, files), [kb_upload], [kb_summary],
                 api_name="import_kb", api_visibility=UNDOCUMENTED)
