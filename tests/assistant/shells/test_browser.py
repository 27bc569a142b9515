"""One check in headless Chromium: the real app (packaged student, offline teacher, sample company)
loads, takes three messages in one conversation and shows each reply; the third reaches the model with
the first two turns (the browser hands earlier turns back as content parts, which once lost them).
Saves tests/artifacts/chat.png, after the third turn, for a person to look at."""

import json
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.retrieval import Embedder
from assistant.shells.web import serve
from distill.sample import open_services
from eval.product import free_port

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).parents[2] / "artifacts"  # tests/artifacts, as `make clean` and .gitignore expect


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it when run as root)")
def test_chat_in_a_real_browser(settings, request):
    from playwright.sync_api import sync_playwright

    settings = replace(settings, port=free_port(), show_internals=True)  # the Student / Teacher / Auto switch
    # The sample company's embeddings are kept in pytest's cache between runs, as a real install keeps them
    # in its state directory: embedding them takes about a minute on 2 busy cores, loading them seconds.
    embedder = Embedder(request.config.cache.mkdir("minilm-embeddings"))
    services = open_services(settings, embedder=embedder)
    running = serve(services, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{settings.port}/", wait_until="load")
            page.wait_for_selector("#message textarea", timeout=60_000)
            page.get_by_role("radio", name="Teacher").check()  # the mode switch, not the teacher-share slider
            questions = ["How long does the doorbell battery last?", "How do I charge it?",
                         "Can I return the doorbell if I don't like it?"]
            for n, question in enumerate(questions, 1):
                page.locator("#message textarea").fill(question)
                page.locator("#message textarea").press("Enter")
                # the panel names the logged exchange once the reply is complete (a fresh store: ids 1, 2, 3)
                try:
                    page.wait_for_function(
                        "n => (document.querySelector('#last-reply')?.innerText || '').includes('Exchange: #' + n)",
                        arg=n, timeout=90_000)
                except Exception:  # keep what the page showed, and what was logged, for whoever reads the failure
                    ARTIFACTS.mkdir(exist_ok=True)
                    page.screenshot(path=str(ARTIFACTS / f"chat-timeout-turn{n}.png"), full_page=True)
                    logged = sqlite3.connect(settings.db_path).execute(
                        "select id, routed_to, error, notice from exchanges").fetchall()
                    pytest.fail(f"turn {n}: no reply in the panel after 90 s; logged exchanges {logged}; "
                                f"page: {page.locator('#chat').inner_text()[-300:]!r}")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "chat.png"), full_page=True)
            bot_text = page.locator("#chat").inner_text()
            panel = page.locator("#last-reply").inner_text()
            browser.close()
    finally:
        running.close()
    assert "months" in bot_text  # the sample company's answer: a charge lasts 3 to 6 months
    assert "Teacher" in panel and "case-based" in panel
    conn = sqlite3.connect(settings.db_path)
    rows = conn.execute("select session_id, turn_index, request_messages, reply from exchanges order by id").fetchall()
    assert [r[1] for r in rows] == [0, 1, 2] and len({r[0] for r in rows}) == 1
    third = json.loads(rows[2][2])
    assert third == [{"role": "user", "content": questions[0]}, {"role": "assistant", "content": rows[0][3]},
                     {"role": "user", "content": questions[1]}, {"role": "assistant", "content": rows[1][3]},
                     {"role": "user", "content": questions[2]}]
