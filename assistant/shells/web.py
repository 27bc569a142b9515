"""The web server: the public chat at `/` and the console at `/console/`, behind sign-in.

One FastAPI app holds both Gradio apps, so the chat's API has no console function in it at all and
the console's API answers only signed-in users. Console users come from assistant.users. With none
configured nobody could sign in, so the console is served without sign-in but only on the loopback
interface: on the same server when the chat itself is bound to loopback (the default), else on its
own loopback server at ASSISTANT_CONSOLE_PORT, and the startup lines say which.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from dataclasses import dataclass, field

import gradio as gr
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from gradio.route_utils import FnIndexInferError
from starlette.routing import Mount

from assistant.errors import ConfigError
from assistant.shells.chat_page import CSS, build_chat_app
from assistant.shells.console import build_console_app
from assistant.users import authenticator, load_users

log = logging.getLogger(__name__)

CONSOLE_PATH = "/console"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Running:
    """Servers started by `serve`; `close()` stops them."""

    chat_url: str
    console_url: str
    console_signin: bool
    servers: list = field(default_factory=list)
    apps: list = field(default_factory=list)  # the Gradio apps, whose queues and event streams end first

    def lines(self) -> list[str]:
        how = "sign-in required" if self.console_signin else (
            "loopback only: no console user is configured (`assistant users add NAME` enables sign-in from elsewhere)")
        return [f"chat: {self.chat_url}", f"console: {self.console_url} ({how})"]

    def close(self) -> None:
        for blocks in self.apps:
            try:  # what Blocks.close does for a launched app: end the queue and the open event streams
                blocks._queue.close()
                blocks.app.stop_event.set()
            except AttributeError:
                pass
        for server, thread in self.servers:
            server.should_exit = True
            thread.join(10)


async def _no_such_function(request, exc) -> JSONResponse:
    return JSONResponse({"error": "no such function"}, status_code=404)


def _mount(app: FastAPI, blocks: gr.Blocks, path: str, host: str, port: int, auth=None) -> None:
    gr.mount_gradio_app(app, blocks, path=path, server_name=host, server_port=port, auth=auth, css=CSS,
                        show_error=False, footer_links=["api"],
                        auth_message="Support Assistant console: sign in with a console user.")
    # A call naming a function this app does not have (a console function sent to the chat, say) is the
    # caller's mistake: Gradio lets FnIndexInferError escape as a 500 with a traceback in our log.
    [mounted] = [r for r in app.routes if isinstance(r, Mount) and r.path == path.rstrip("/")]
    mounted.app.add_exception_handler(FnIndexInferError, _no_such_function)


def build_servers(services) -> tuple[list[tuple[FastAPI, str, int]], Running]:
    """The apps to run, each with its address: the public one, and the loopback console when it needs its own."""
    s = services.settings
    check = authenticator(load_users(s))
    public = FastAPI()
    apps = [(public, s.host, s.port)]
    shown_host = "127.0.0.1" if s.host in ("0.0.0.0", "::") else s.host
    chat_url = f"http://{shown_host}:{s.port}/"
    console = build_console_app(services)
    chat = build_chat_app(services)
    if check is not None or is_loopback(s.host):
        _mount(public, console, CONSOLE_PATH, s.host, s.port, auth=check)  # mounted first: "/" would take every path
        console_url = f"http://{shown_host}:{s.port}{CONSOLE_PATH}/"
    else:
        private = FastAPI()
        _mount(private, console, CONSOLE_PATH, "127.0.0.1", s.console_port)
        apps.append((private, "127.0.0.1", s.console_port))
        console_url = f"http://127.0.0.1:{s.console_port}{CONSOLE_PATH}/"
    _mount(public, chat, "/", s.host, s.port)
    return apps, Running(chat_url, console_url, console_signin=check is not None, apps=[chat, console])


def serve(services, *, block: bool = True, open_browser: bool = False) -> Running:
    """Start the servers. With block=False they run in background threads until `Running.close()`."""
    apps, running = build_servers(services)
    for app, host, port in apps:
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=1))
        thread = threading.Thread(target=server.run, name=f"web-{port}", daemon=True)
        thread.start()
        running.servers.append((server, thread))
    deadline = time.monotonic() + 60
    while not all(server.started for server, _ in running.servers):
        if time.monotonic() > deadline or not all(t.is_alive() for _, t in running.servers):
            running.close()
            where = ", ".join(f"{h}:{p}" for _, h, p in apps)
            raise ConfigError(f"the web server could not listen on {where}: is the port taken (another `assistant "
                              f"serve`?). Stop it, or set ASSISTANT_PORT / ASSISTANT_CONSOLE_PORT")
        time.sleep(0.05)
    for line in running.lines():
        print(line, flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(running.chat_url)
    if block:
        try:
            while all(t.is_alive() for _, t in running.servers):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            running.close()
    return running
