"""The core of the support assistant (what serves a customer): settings, store, models, retrieval, grounding,
routing, pricing, experiments and the chat loop. Its subpackage `shells` is the top layer (web server, chat
page, console, CLI); nothing else in the core imports it (README, "Architecture")."""

__version__ = "0.1.0"
