"""The two surfaces as a visitor and a support-team member reach them: the public chat's API holds only
chat functions, the console answers only signed-in users (or only loopback when nobody can sign in),
and a chat visitor is rate limited, shown no internals and cannot pick the model."""

import json
import sqlite3
from dataclasses import replace

import httpx
import pytest
from gradio_client import Client, handle_file

from assistant.errors import ConfigError, InputError
from assistant.limits import RateLimiter
from assistant.shells.web import build_servers, is_loopback, serve
from assistant.users import add_user, authenticator, load_users, read_users_file, remove_user, users_path
from tests.assistant.shells.conftest import make_services
from eval.product import free_port
from tests.importing import FIXTURES

CONSOLE_ENDPOINTS = {"/import_transcripts", "/import_kb", "/label", "/retrain", "/cancel_retrain", "/evaluate",
                     "/job_status", "/models", "/rollback"}


@pytest.fixture
def public(settings, fake_embedder):
    """The defaults a customer meets: no internals shown, and a console user configured."""
    services = make_services(settings, fake_embedder, console_users="lead:correct-horse", chat_rate_limit=3)
    running = serve(services, block=False)
    yield services, running
    running.close()


def endpoints(client: Client) -> set[str]:
    return set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])


def test_the_public_chat_api_holds_only_chat_functions(public):
    services, running = public
    chat = Client(running.chat_url, verbose=False)
    # (/new_session is Gradio's initialiser of the session id state: it returns a fresh id and nothing else)
    assert endpoints(chat) == {"/send", "/thumbs_up", "/thumbs_down", "/new_conversation", "/new_session"}
    # calling a console function through the chat's server: there is no such function
    for name in ("import_transcripts", "label", "retrain", "rollback"):
        assert httpx.post(f"{running.chat_url}gradio_api/call/{name}", json={"data": []}, timeout=60).status_code == 404


def test_the_console_refuses_anonymous_callers_and_serves_signed_in_ones(public):
    services, running = public
    with pytest.raises(Exception):
        Client(running.console_url, verbose=False)  # no sign-in: not even the API description
    for name in ("import_transcripts", "label", "retrain", "job_status", "rollback"):
        r = httpx.post(f"{running.console_url}gradio_api/call/{name}", json={"data": [None, "auto-detect", False, True]}, timeout=60)
        assert r.status_code == 401, (name, r.status_code)
    with pytest.raises(Exception):
        Client(running.console_url, auth=("lead", "wrong-password"), verbose=False)
    assert services.store.count("conversations") == 0

    page = httpx.get(running.console_url, timeout=60).text  # the sign-in page
    assert not any(name.strip("/") in page for name in CONSOLE_ENDPOINTS)  # describes none of the functions

    console = Client(running.console_url, auth=("lead", "correct-horse"), verbose=False)
    assert not endpoints(console) & CONSOLE_ENDPOINTS  # undocumented even when signed in, but callable:
    summary = console.predict(handle_file(str(FIXTURES / "sharegpt.json")), "auto-detect", False, True,
                              api_name="/import_transcripts")
    assert "imported 2" in summary and services.store.count("conversations") == 2


def test_without_users_a_public_bind_keeps_the_console_on_loopback(settings, fake_embedder):
    services = make_services(settings, fake_embedder, host="0.0.0.0", console_port=free_port())
    apps, running = build_servers(services)
    (public, host, _), (private, private_host, port) = apps
    assert host == "0.0.0.0" and private_host == "127.0.0.1" and port == services.settings.console_port
    mounted = lambda app: {getattr(r, "path", None) for r in app.routes}  # noqa: E731
    assert "/console" not in mounted(public) and "/console" in mounted(private)
    assert "loopback only" in running.lines()[1] and running.console_url.startswith("http://127.0.0.1:")


def test_without_users_a_loopback_bind_serves_the_console_on_the_same_server(settings, fake_embedder):
    services = make_services(settings, fake_embedder)
    apps, running = build_servers(services)
    [(public, host, port)] = apps
    assert host == "127.0.0.1" and "/console" in {getattr(r, "path", None) for r in public.routes}
    assert running.console_url == f"http://127.0.0.1:{port}/console/" and not running.console_signin


def test_is_loopback_names_only_loopback_addresses():
    assert all(map(is_loopback, ["localhost", "127.0.0.1", "127.5.0.1", "::1"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.5", "support.example.com"]))


def test_a_visitor_cannot_choose_the_model_and_sees_no_internals(public):
    services, running = public
    chat = Client(running.chat_url, verbose=False)
    history, notice = chat.predict("hello", [], api_name="/send")[:2]
    assert services.student.calls or services.teacher.calls
    row = sqlite3.connect(services.settings.db_path).execute("select route from exchanges").fetchone()
    assert row == ("Auto",)
    page = httpx.get(running.chat_url, timeout=60).text + json.dumps(chat.config)
    assert "teacher-fake" not in page and "student-fake" not in page and "Who answers" not in page
    # a raw call with a mode appended: the API has no such input, and the route stays Auto
    base = f"{running.chat_url}gradio_api/call/send"
    event = httpx.post(base, json={"data": ["hi again", [], None, {}, "Teacher"]}, timeout=60)
    if event.status_code == 200:
        httpx.get(f"{base}/{event.json()['event_id']}", timeout=60)
    assert {r[0] for r in sqlite3.connect(services.settings.db_path).execute("select route from exchanges")} == {"Auto"}


def test_a_session_sending_too_fast_is_asked_to_wait(public):
    services, running = public
    chat = Client(running.chat_url, verbose=False)
    history = []
    for n in range(4):
        history = chat.predict(f"question {n}", history, api_name="/send")[0]
    assert "faster than we can answer" in str(history[-1]["content"])
    assert services.store.count("exchanges") == 3  # the limit (3 a minute) was answered, the 4th refused
    other = Client(running.chat_url, verbose=False)  # another visitor (same address, under its looser limit)
    assert "faster" not in str(other.predict("hello", [], api_name="/send")[0][-1]["content"])


def test_rate_limiter_counts_per_key_in_a_sliding_minute():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.wait_for({"a": 2}) for _ in range(3)] == [0, 0, 60.0]
    now[0] = 30
    assert limiter.wait_for({"a": 2}) == 30.0 and limiter.wait_for({"b": 2}) == 0  # keys are separate
    now[0] = 60.5
    assert limiter.wait_for({"a": 2}) == 0 and limiter.wait_for({"a": 2}) == 0  # the first two have left the window
    assert limiter.wait_for({"a": 0}) == 0  # 0 is no limit
    # refused on one key: nothing counted on the other
    assert limiter.wait_for({"c": 5, "a": 2}) > 0 and limiter.wait_for({"c": 1}) == 0


def test_users_file_holds_only_hashes_and_checks_passwords(settings):
    path = users_path(settings)
    assert add_user(path, "lead", "correct-horse") is True
    assert add_user(path, "lead", "battery-staple") is False  # a password change
    stored = read_users_file(path)
    assert "battery-staple" not in path.read_text() and stored["lead"].startswith("scrypt$")
    assert path.stat().st_mode & 0o077 == 0  # owner only
    check = authenticator(load_users(settings))
    assert check("lead", "battery-staple") and not check("lead", "correct-horse") and not check("nobody", "x" * 8)
    with pytest.raises(InputError, match="at least 8"):
        add_user(path, "short", "abc")
    with pytest.raises(InputError, match="user name"):
        add_user(path, "bad name", "long-enough")
    remove_user(path, "lead")
    assert authenticator(load_users(settings)) is None


def test_console_users_from_the_environment_are_checked_and_malformed_ones_named(settings):
    check = authenticator(load_users(replace(settings, console_users="a:pass-one, b:pass-two")))
    assert check("a", "pass-one") and check("b", "pass-two") and not check("a", "pass-two")
    with pytest.raises(ConfigError, match="entry 2"):
        load_users(replace(settings, console_users="a:pass-one,broken"))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # uvicorn's thread: the bind failed
def test_a_taken_port_is_one_clear_error(settings, fake_embedder):
    import socket

    services = make_services(settings, fake_embedder)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", services.settings.port))
        taken.listen()
        with pytest.raises(ConfigError, match=rf"could not listen on 127\.0\.0\.1:{services.settings.port}: is the port taken"):
            serve(services, block=False)
