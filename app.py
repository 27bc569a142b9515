"""Builds and launches the Gradio chat app (same as `assistant serve`)."""

from assistant.services import build_services
from assistant.settings import get_settings
from assistant.ui import launch

if __name__ == "__main__":
    launch(build_services(get_settings()))
