"""Serving speed of the student: raw llama.cpp vs the app's own path vs concurrent chats (being built for #13)."""
