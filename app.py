"""Starts the public chat and the signed-in console (same as `assistant serve`)."""

from distill.sample import open_services
from assistant.settings import get_settings
from assistant.web import serve

if __name__ == "__main__":
    serve(open_services(get_settings()))
