"""The `assistant` command: a thin edge over plain functions that tests call too.

Domain errors (AssistantError) become one clear line on stderr and exit code 1; later issues add
subcommands (import, label, train, eval, report) here.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from functools import wraps

import typer

from assistant.errors import AssistantError

app = typer.Typer(help="Customer-support assistant: a distilled student model, routed to a teacher when needed.",
                  no_args_is_help=True, add_completion=False)


def friendly(fn):
    """Turn our own errors into one line and a non-zero exit instead of a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AssistantError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1)

    return wrapper


def _settings(**overrides):
    from assistant.settings import Settings

    settings = Settings.from_env()
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(settings, **overrides) if overrides else settings


@app.command()
@friendly
def serve(
    host: str = typer.Option(None, help="Bind address (default: ASSISTANT_HOST, GRADIO_SERVER_NAME or 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default: ASSISTANT_PORT, GRADIO_SERVER_PORT or 7860)."),
    open_browser: bool = typer.Option(False, "--open", help="Open the chat in a browser once it is up."),
):
    """Start the chat UI."""
    from assistant.services import build_services
    from assistant.ui import launch

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = _settings(host=host, port=port)
    typer.echo(f"state directory: {settings.home}")
    typer.echo("loading models and the knowledge base (first start embeds the sample company, ~30 s)...")
    services = build_services(settings)
    typer.echo(f"student: {services.student.description}")
    typer.echo(f"teacher: {services.teacher.description}")
    launch(services, open_browser=open_browser)


@app.command()
@friendly
def ask(
    message: str = typer.Argument(..., help="A customer message."),
    mode: str = typer.Option("Auto", help="Student, Teacher or Auto."),
):
    """Answer one message from the command line (logged like a chat exchange)."""
    from assistant.chat import respond
    from assistant.services import build_services

    services = build_services(_settings())
    for event in respond(services, [{"role": "user", "content": message}], mode, session_id="cli"):
        if event.kind == "delta":
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif event.kind == "reset":
            sys.stdout.write("\n[teacher failed; the student answers]\n")
        elif event.kind == "done":
            ex = event.exchange
            typer.echo(f"\n\n[{ex['routed_to']}: {ex['model_name']} | {ex['route_reason']} | "
                       f"{ex['latency_ms']:.0f} ms | {ex['output_tokens']} tokens]", err=True)


@app.command("settings")
@friendly
def show_settings():
    """Show the effective settings and the environment variables that set them."""
    for name, env, value, help_text in _settings().describe():
        typer.echo(f"{name:20} {value}\n{'':20} {env}: {help_text}")


if __name__ == "__main__":
    app()
