"""The public chat: a Gradio 6 app over `assistant.chat.converse`, the only thing customers reach.

It has the conversation (streamed), thumbs on each reply and "new conversation": nothing else is in
its API (the console's functions live in assistant.shells.console, a separate app behind sign-in). With
ASSISTANT_SHOW_INTERNALS on (demos, staff) it also shows the Student / Teacher / Auto switch with Auto's
options (which router, and the share of turns it should send to the teacher: a slider turned into the
router's threshold through its calibration scores) and a panel with the facts of the last reply (who
answered, the router's score, reason and tier, router and model versions, TTFT, latency, tokens, cost);
otherwise every message goes through Auto with the configured router and visitors see no model names or
endpoints; a notice (the teacher's budget or per-minute limit reached, the teacher failing) is shown to all. Each session
may send ASSISTANT_CHAT_RATE_LIMIT messages a minute. Replies are shown as text: markup and images
in a reply are not rendered, so a reply cannot load a remote URL in a customer's browser. Errors
become a visible message, never a stack trace.

The conversation the model sees lives on the server (see `chat.converse`); the chatbot value a client
sends back is only redrawn. The session id is a gr.State: Gradio keeps it per browser session on the
server and never reads it from a request, so an API caller cannot pick another visitor's session.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from types import SimpleNamespace

import gradio as gr

from assistant.chat import MODES, content_text, converse
from assistant.errors import AssistantError
from assistant.limits import RateLimiter
from assistant.services import available_routers, current_share

log = logging.getLogger(__name__)

CSS = """
#side-panel {font-size: 0.92em}
#notice {color: #9a3412}
footer {display: none !important}
"""


def _fmt(value, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{unit}"


# The first words of a reply are drawn at once; after that at most one redraw per this many seconds (the
# student writes a token every 10-50 ms: drawing each one cost more server time than generating it).
REDRAW_S = 0.05
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]*)[^)]*\)")


def shown(text: str) -> str:
    """A message as the chat displays it: HTML as text, and markdown images as plain links that load
    nothing until clicked (an image in a reply would otherwise fetch a remote URL in the customer's browser).

    Only "<" is escaped: no tag opens without it, and "Settings > Devices" or "A & B" stay as they are in
    what an API client receives (html.escape sent them as "&gt;" and "&amp;")."""
    text = text.replace("<", "&lt;")
    return _IMAGE.sub(lambda m: f"[{m.group(1) or 'image'}]({m.group(2)})", text)


def panel_markdown(ex: dict | None) -> str:
    if not ex:
        return "*No reply yet. Ask a question to see which model answers, why, and what it cost.*"
    who = "Teacher" if ex["routed_to"] == "teacher" else "Student"
    cost = "–" if ex.get("cost") is None else f"${ex['cost']:.6f}"
    threshold = "" if ex.get("threshold") is None else f", threshold {ex['threshold']:.2f}"
    cascade = f" after the student's draft ({ex['draft_ms']:.0f} ms, counted)" if ex.get("draft_ms") else ""
    lines = [
        f"### Last reply: {who}",
        f"**Model:** {ex['model_name']}  ",
        f"**Version:** `{ex['model_version']}`  ",
        f"**Route:** {ex['route']} → {ex['routed_to']} (score {ex['route_score']:.2f}{threshold})  ",
        f"**Router:** {ex.get('router') or '–'} `{ex.get('router_version') or '–'}`  ",
        f"**Tier:** {ex.get('tier') or ex['routed_to']}{cascade}  ",
        f"**Why:** {ex['route_reason']}  ",
        f"**Time to first token:** {_fmt(ex.get('ttft_ms'), ' ms')}  ",
        f"**Total latency:** {_fmt(ex.get('latency_ms'), ' ms')}  ",
        f"**Tokens in / out:** {_fmt(ex.get('input_tokens'))} / {_fmt(ex.get('output_tokens'))}  ",
        f"**Speed:** {_fmt(ex.get('tokens_per_s'), ' tokens/s', 1)}  ",
        f"**Cost:** {cost}  ",
        f"**Exchange:** #{ex['id']}",
    ]
    source = ex.get("source") or {}
    if source.get("source") == "case":
        lines.append(f"\n*Answered from a similar resolved conversation (similarity {source['score']:.2f}).*")
    elif source.get("source") == "kb":
        lines.append(f"\n*Answered from the help-center article “{source['title']}”.*")
    if ex.get("notice"):
        lines.append(f"\n⚠️ **{ex['notice']}**")
    return "\n".join(lines)


def header_markdown(services) -> str:
    if not services.settings.show_internals:
        return "# Support Assistant\nAsk about orders, devices, billing or returns."
    s, t = services.student, services.teacher
    lines = [
        "# Support Assistant",
        f"**Student:** {s.name} (`{s.version}`), served locally by llama.cpp.  ",
        f"**Teacher:** {t.description}.",
    ]
    if services.teacher_is_standin:
        lines.append(
            "\n> No teacher API is configured, so the **Teacher** is an offline stand-in: it answers with what "
            "your agents said in the most similar resolved conversation (or the closest help-center article). "
            "Name a teacher with `ASSISTANT_TEACHER_MODEL` (and its endpoint and key) to use a real teacher model."
        )
    return "\n".join(lines)


def visible_history(history) -> list[dict]:
    """The chatbot value a browser sent back, reduced to its user and assistant turns as plain text.

    Used for display only: what the model sees is the session's history kept on the server
    (`chat.converse`), so a client cannot forge turns."""
    return [{"role": m["role"], "content": content_text(m.get("content"))} for m in history or []
            if isinstance(m, dict) and m.get("role") in ("user", "assistant")]


def rate_limit_wait(limiter: RateLimiter, settings, session_id: str, address: str) -> float:
    """Seconds this message must wait, 0 if it may go now."""
    # one address may hold several sessions (a shared office, a NAT): a looser limit per address, so
    # opening new sessions does not get round the per-session one
    return limiter.wait_for({f"session:{session_id}": settings.chat_rate_limit,
                             f"address:{address}": 5 * settings.chat_rate_limit})


def chat_turn(services, limiter: RateLimiter, message: str, history: list, session_id: str, ids: dict,
              mode: str, address: str, router: str | None = None, share: float | None = None):
    """One message sent from the page, as the updates the page shows while the reply streams. `router` and
    `share` (percent of turns to the teacher) are Auto's options, honoured only where they are shown.

    Yields (chatbot, panel, session id, reply ids, message box, last exchange id); `gr.update()` leaves
    a component as it is. `ids` maps a chatbot row to the exchange it shows, for thumbs on that row."""
    internals = services.settings.show_internals
    history, ids = visible_history(history), dict(ids or {})
    message = (message or "").strip()
    mode = mode if internals and mode in MODES else "Auto"  # the switch exists only where it is shown
    options = auto_options(services, router, share) if internals else {}
    if not message:
        yield history, gr.update(), session_id, ids, "", gr.update()
        return
    session_id = session_id or new_session()
    wait = rate_limit_wait(limiter, services.settings, session_id, address)
    history.append({"role": "user", "content": shown(message)})
    if wait:
        history.append({"role": "assistant", "content": f"⚠️ You are sending messages faster than we can answer. "
                                                        f"Please wait {wait:.0f} s and send it again."})
        yield history, gr.update(), session_id, ids, message, gr.update()
        return
    history.append({"role": "assistant", "content": ""})
    yield history, gr.update(), session_id, ids, "", gr.update()
    try:
        yield from _stream_reply(services, message, history, session_id, ids, mode, options)
    except AssistantError as exc:
        history[-1] = {"role": "assistant", "content": f"⚠️ Sorry, something went wrong: {shown(str(exc))}"}
        yield history, gr.update(), session_id, ids, "", gr.update()
    except Exception:  # never show a stack trace to a customer
        log.exception("chat failed")
        history[-1] = {"role": "assistant", "content": "⚠️ Sorry, something went wrong. Please try again."}
        yield history, gr.update(), session_id, ids, "", gr.update()


def auto_options(services, router: str | None, share: float | None) -> dict:
    """Auto's options as `converse` takes them: a router that can be picked now, and the share as a fraction."""
    options: dict = {}
    if router and router in available_routers(services.store):
        options["router"] = router
    if share is not None:
        options["teacher_share"] = min(100.0, max(0.0, float(share))) / 100
    return options


def _stream_reply(services, message: str, history: list, session_id: str, ids: dict, mode: str, options: dict):
    """The reply's events from `converse` drawn into the last chatbot row (chat_turn's updates)."""
    text, sent_at = "", None
    for event in converse(services, session_id, message, mode, **options):
        if event.kind == "delta":
            text += event.text
            now = time.monotonic()
            if sent_at is not None and now - sent_at < REDRAW_S:
                continue  # drawn with the next update: each update costs the server and the browser a redraw
            sent_at = now
            history[-1] = {"role": "assistant", "content": shown(text)}
            yield history, gr.update(), session_id, ids, "", gr.update()
        elif event.kind == "reset":
            text = ""
        elif event.kind == "wait" and not text:
            history[-1] = {"role": "assistant", "content": f"⏳ *{shown(event.text)}*"}
            yield history, gr.update(), session_id, ids, "", gr.update()
        elif event.kind == "done":
            ex = event.exchange
            history[-1] = {"role": "assistant", "content": shown(ex["reply"] or "(empty reply)")}
            ids[str(len(history) - 1)] = ex["id"]
            notice = f"⚠️ {ex['notice']}" if ex.get("notice") else ""
            panel = panel_markdown(ex) if services.settings.show_internals else notice
            yield history, panel, session_id, ids, "", ex["id"]


def thanks(thumbs: int) -> str:
    return f"Thanks: feedback {'👍' if thumbs > 0 else '👎'} saved."


def rate_row(store, ids: dict, index, liked) -> str:
    """Thumbs on a chatbot row: stored against the exchange that row shows, if it shows one."""
    index = index if isinstance(index, int) else index[0]
    exchange_id = (ids or {}).get(str(index))
    if exchange_id is None:
        return "Feedback works on the assistant's replies."
    thumbs = 1 if liked is True or liked == "Like" else -1
    store.add_feedback(exchange_id, thumbs)
    return thanks(thumbs)


def rate_last_reply(store, exchange_id, thumbs: int, comment: str = "") -> str:
    # the id comes from this session's gr.State (server-side): a visitor can rate only their own replies
    if not exchange_id:
        return "Nothing to rate yet."
    store.add_feedback(int(exchange_id), thumbs, (comment or "")[:2000])
    return thanks(thumbs)


def new_session() -> str:
    return str(uuid.uuid4())


def _layout(services) -> SimpleNamespace:
    """The page's components (built inside the open gr.Blocks), by name."""
    internals = services.settings.show_internals
    page = SimpleNamespace(session=gr.State(new_session), ids=gr.State({}), last_id=gr.State(None), mode=None,
                           router=None, share=None)
    gr.Markdown(header_markdown(services))
    with gr.Row():
        with gr.Column(scale=3):
            page.chatbot = gr.Chatbot(label="Conversation", height=480, elem_id="chat", sanitize_html=True)
            with gr.Row():
                page.box = gr.Textbox(placeholder="Type your message and press Enter", show_label=False,
                                      scale=5, elem_id="message", autofocus=True, max_length=4000)
                page.send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
            with gr.Row():
                page.up = gr.Button("👍 Helpful", size="sm", elem_id="thumbs-up")
                page.down = gr.Button("👎 Not helpful", size="sm", elem_id="thumbs-down")
                page.comment = gr.Textbox(placeholder="Optional comment with your rating", show_label=False, scale=3)
                page.new = gr.Button("New conversation", size="sm", elem_id="new-conversation")
            page.status = gr.Markdown("", elem_id="status")
        if internals:
            with gr.Column(scale=1, elem_id="side-panel"):
                page.mode = gr.Radio(list(MODES), value="Auto", label="Who answers", elem_id="mode",
                                     info="Auto lets the router decide per message.")
                with gr.Group():
                    page.router = gr.Dropdown(available_routers(services.store), value=services.router.name,
                                              label="Auto: router", elem_id="router")
                    share = current_share(services.store, services.settings, services.router)
                    page.share = gr.Slider(0, 100, value=round(100 * share) if share is not None else 20, step=1,
                                           label="Auto: share of turns to the teacher (%)", elem_id="teacher-share",
                                           info="Turned into the router's threshold through its calibration "
                                                "(assistant router calibrate); until then its logged scores.")
                page.panel = gr.Markdown(panel_markdown(None), elem_id="last-reply")
    if not internals:
        page.panel = gr.Markdown("", elem_id="notice")
    return page


def build_chat_app(services) -> gr.Blocks:
    store, settings = services.store, services.settings
    limiter = RateLimiter()

    # Gradio reads a handler's parameters (the gr.Request, gr.LikeData) and whether it is a generator,
    # so these stay small functions with those signatures; the work is in the plain functions above.
    def send(message: str, history: list, session_id: str, ids: dict, mode: str = "Auto", router: str | None = None,
             share: float | None = None, request: gr.Request = None):
        address = getattr(getattr(request, "client", None), "host", None) or "unknown"
        yield from chat_turn(services, limiter, message, history, session_id, ids, mode, address, router, share)

    def on_like(ids: dict, data: gr.LikeData):
        return rate_row(store, ids, data.index, data.liked)

    def clear():
        return [], panel_markdown(None) if settings.show_internals else "", new_session(), {}, "", None, ""

    with gr.Blocks(title="Support Assistant", fill_height=True) as demo:
        page = _layout(services)
        outputs = [page.chatbot, page.panel, page.session, page.ids, page.box, page.last_id]
        inputs = [page.box, page.chatbot, page.session, page.ids] + ([page.mode, page.router, page.share] if page.mode else [])
        page.box.submit(send, inputs, outputs, api_name="send")
        page.send.click(send, inputs, outputs, api_name=False)
        page.chatbot.like(on_like, [page.ids], [page.status], api_name=False)
        page.up.click(lambda i, c: rate_last_reply(store, i, 1, c), [page.last_id, page.comment], [page.status],
                      api_name="thumbs_up")
        page.down.click(lambda i, c: rate_last_reply(store, i, -1, c), [page.last_id, page.comment], [page.status],
                        api_name="thumbs_down")
        page.new.click(clear, None, [page.chatbot, page.panel, page.session, page.ids, page.box, page.last_id,
                                     page.status], api_name="new_conversation")
    demo.queue(default_concurrency_limit=settings.concurrency)
    return demo
