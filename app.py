"""Starts the public chat and the signed-in console (same as `assistant serve`)."""

from assistant.settings import get_settings
from assistant.shells.web import serve
from distill.sample import open_services

if __name__ == "__main__":
    serve(open_services(get_settings()))
