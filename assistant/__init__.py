"""Serving side of the support assistant: settings, store, models, router, chat loop, UI and CLI."""

__version__ = "0.1.0"
