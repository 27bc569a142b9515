"""One check in headless Chromium: the real app (packaged student, offline teacher, sample company)
loads, takes a message and shows a reply. Saves tests/artifacts/chat.png for a person to look at."""

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.services import build_services
from assistant.ui import CSS, build_app
from tests.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it when run as root)")
def test_chat_in_a_real_browser(settings):
    from playwright.sync_api import sync_playwright

    settings = replace(settings, port=free_port())
    services = build_services(settings)
    demo = build_app(services)
    demo.launch(server_name="127.0.0.1", server_port=settings.port, prevent_thread_lock=True, quiet=True, css=CSS)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{settings.port}/", wait_until="load")
            page.wait_for_selector("#message textarea", timeout=60_000)
            page.get_by_label("Teacher").check()
            page.locator("#message textarea").fill("How long does the doorbell battery last?")
            page.locator("#message textarea").press("Enter")
            page.wait_for_function(
                "() => document.querySelector('#last-reply') && document.querySelector('#last-reply').innerText.includes('Total latency')",
                timeout=60_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "chat.png"), full_page=True)
            bot_text = page.locator("#chat").inner_text()
            panel = page.locator("#last-reply").inner_text()
            browser.close()
    finally:
        demo.close()
    assert "months" in bot_text  # the sample company's answer: a charge lasts 3 to 6 months
    assert "Teacher" in panel and "case-based" in panel
    conn = sqlite3.connect(settings.db_path)
    assert conn.execute("select count(*) from exchanges where routed_to='teacher'").fetchone()[0] == 1
