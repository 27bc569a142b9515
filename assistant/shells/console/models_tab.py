"""The console's Models tab: the student versions, which one serves, and rollback."""

from __future__ import annotations

import gradio as gr

from assistant import students
from assistant.errors import AssistantError
from assistant.shells.console.shared import UNDOCUMENTED
from distill import registry


def models_table(store) -> list[list]:
    return [[r["version"], r["status"], registry.describe(r)] for r in students.versions(store)]


def rollback(store) -> tuple[str, list[list]]:
    """Serve the previously promoted version again: a message and the table as it now is."""
    try:
        now = registry.rollback(store)
    except AssistantError as exc:
        return f"⚠️ {exc}", models_table(store)
    return f"Now serving **{now}**; the chat picks it up within a second.", models_table(store)


def build(services) -> None:
    store = services.store
    with gr.Tab("Models"):
        models = gr.Dataframe(models_table(store), headers=["version", "status", "details"],
                              label="Student versions", interactive=False, wrap=True)
        with gr.Row():
            refresh_btn = gr.Button("Refresh")
            rollback_btn = gr.Button("Roll back to the previous version", variant="stop")
        models_msg = gr.Markdown()
    refresh_btn.click(lambda: models_table(store), None, [models], api_name="models", api_visibility=UNDOCUMENTED)
    rollback_btn.click(lambda: rollback(store), None, [models_msg, models], api_name="rollback",
                       api_visibility=UNDOCUMENTED)
