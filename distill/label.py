"""Teacher labelling: every selected assistant turn gets a reply to learn from (stage 1 of distillation).

Sources: `teacher` (the configured teacher writes the ideal reply, grounded in KB passages and similar
resolved cases, the transcript given as delimited data), `logged` (the human agents' own replies), or
`both` (kept side by side, tagged). With no teacher configured the default is `logged`: offline, the
agents are the strongest teacher there is.

Never pay twice, never lose work: each teacher call is keyed by hash(conversation prefix, prompt id and
hash, teacher model, generation parameters) and written to `teacher_calls` the moment it returns, in its
own transaction. A rerun (after Ctrl-C or kill -9) reuses every stored result and calls only what is
missing. Calls run on a thread pool (concurrency N) under requests- and tokens-per-minute limits, with
retries and backoff on 429 / 5xx / timeouts honouring Retry-After, and stop cleanly at a budget cap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol

from assistant.errors import AssistantError, InputError
from assistant.store import Store, now
from distill.prompts import PROMPTS, Prompt, label_messages
from distill.quality import QualityFilter

log = logging.getLogger(__name__)
SOURCES = ("teacher", "logged", "both")


# ---- what a teacher backend does for labelling -------------------------------------------------

@dataclass
class LabelRequest:
    messages: list[dict]  # the rendered prompt
    history: list[dict]  # the conversation up to the turn being labelled
    conversation_id: int
    max_tokens: int
    temperature: float


@dataclass
class CallResult:
    text: str
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None


class RetryableError(AssistantError):
    """A call that may succeed if made again: 429, 5xx, a timeout, an empty or malformed answer."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class TeacherRejected(AssistantError):
    """The teacher refused us for good (401/403: a wrong or revoked key); the job stops at once, no retries."""


class LabelBackend(Protocol):
    name: str
    local: bool

    def call(self, request: LabelRequest) -> CallResult: ...


class OpenAIBackend:
    """Any OpenAI-compatible endpoint; the labeller does its own retries so it can count and pace them."""

    local = False

    def __init__(self, *, base_url, api_key, model, timeout=120.0, http_client=None):
        import openai

        self.name = model
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout,
                                    max_retries=0, http_client=http_client)

    def call(self, request: LabelRequest) -> CallResult:
        import openai

        try:
            resp = self.client.chat.completions.create(model=self.name, messages=request.messages,
                                                       max_tokens=request.max_tokens, temperature=request.temperature)
        except openai.RateLimitError as exc:
            raise RetryableError("429 rate limited", _retry_after(exc.response)) from exc
        except openai.InternalServerError as exc:
            raise RetryableError(f"HTTP {exc.status_code}", _retry_after(exc.response)) from exc
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            raise RetryableError(f"connection: {exc}") from exc
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise TeacherRejected(f"teacher rejected the API key (HTTP {exc.status_code})") from exc
            if exc.status_code in (408, 409, 425):
                raise RetryableError(f"HTTP {exc.status_code}", _retry_after(exc.response)) from exc
            raise AssistantError(f"teacher {self.name} refused the request: HTTP {exc.status_code} {exc.message}") from exc
        except (openai.APIResponseValidationError, ValueError, TypeError) as exc:  # a body that is not JSON
            raise RetryableError(f"malformed answer: {type(exc).__name__}") from exc
        try:
            choice = resp.choices[0]
            text = choice.message.content
            usage = resp.usage
            details = getattr(usage, "prompt_tokens_details", None) if usage else None
            result = CallResult(
                text=text if isinstance(text, str) else "",
                finish_reason=choice.finish_reason,
                input_tokens=usage.prompt_tokens if usage else None,
                output_tokens=usage.completion_tokens if usage else None,
                cached_tokens=getattr(details, "cached_tokens", None) if details else None,
            )
        except (AttributeError, TypeError, IndexError, KeyError) as exc:  # `{}`, `[]`, choices of the wrong shape
            raise RetryableError(f"malformed answer: {type(exc).__name__}") from exc
        if not result.text.strip():
            raise RetryableError("empty answer")  # retried, and never stored: a rerun would reuse it forever
        return result


def _retry_after(response) -> float | None:
    try:
        value = response.headers.get("retry-after-ms")
        if value is not None:
            return float(value) / 1000
        value = response.headers.get("retry-after")
        return float(value) if value is not None else None
    except (AttributeError, ValueError):
        return None


class CaseBackend:
    """The offline case-based teacher as a labeller: the reply agents gave in the most similar *other*
    resolved conversation (the conversation being labelled is excluded, or it would copy itself)."""

    local = True
    name = "case-based"

    def __init__(self, retriever):
        from assistant.models import kb_text

        self.retriever = retriever
        self._kb = kb_text(retriever.kb)  # what a served reply may link to or quote

    def call(self, request: LabelRequest) -> CallResult:
        from assistant.models import make_safe, unsupported_content

        hits = self.retriever.cases.search(request.history, k=5, exclude_conversation=request.conversation_id)
        # a reply carrying an instruction, markup or a link the KB does not contain never becomes a label
        kb = self._kb
        hits = [h for h in hits if not unsupported_content(h.item["reply"], kb)][:1]
        if not hits:
            return CallResult("", "stop", 0, 0)
        text = make_safe(hits[0].item["reply"], hits[0].item["history"], request.history)
        return CallResult(text, "stop", sum(len(m["content"].split()) for m in request.messages), len(text.split()))


# ---- pacing -----------------------------------------------------------------------------------

class RateLimiter:
    """Requests- and tokens-per-minute limits as a sliding one-minute window, shared by all workers."""

    def __init__(self, rpm: int | None, tpm: int | None):
        self.rpm, self.tpm = rpm, tpm
        self.events: list[tuple[float, int]] = []
        self.lock = threading.Lock()

    def acquire(self, tokens: int, stop: threading.Event) -> None:
        if not self.rpm and not self.tpm:
            return
        while not stop.is_set():
            with self.lock:
                t = time.monotonic()
                self.events = [(ts, n) for ts, n in self.events if t - ts < 60]
                used_req, used_tok = len(self.events), sum(n for _, n in self.events)
                if (not self.rpm or used_req < self.rpm) and (not self.tpm or used_tok + tokens <= self.tpm or not self.events):
                    self.events.append((t, tokens))
                    return
                wait_s = 60 - (t - self.events[0][0]) + 0.01
            stop.wait(min(wait_s, 1.0))


# ---- the job ----------------------------------------------------------------------------------

@dataclass
class LabelOptions:
    source: str = "auto"
    concurrency: int = 4
    limit: int | None = None
    final_turn_only: bool = False
    resolved_only: bool = False
    min_csat: float | None = None
    budget: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_tokens: int = 300
    temperature: float = 0.2
    max_retries: int | None = None  # None: settings.label_max_retries; at most MAX_RETRIES either way
    prompt_id: str = "label-v2"
    batch: bool = False  # OpenAI Batch API: half price, results within 24 h; resumable
    poll_s: float = 30.0
    k_kb: int = 3
    k_cases: int = 3


@dataclass
class LabelProgress:
    total: int
    done: int = 0
    cached: int = 0
    called: int = 0
    failed: int = 0
    accepted: int = 0
    rejected: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    def line(self) -> str:
        eta = f"{self.eta_s:.0f} s" if self.eta_s is not None else "–"
        return (f"{self.done}/{self.total} turns, {self.rate:.1f}/s, ETA {eta}, {self.cached} reused, "
                f"{self.called} calls, {self.input_tokens + self.output_tokens:,} tokens, ${self.cost:.4f}")


@dataclass
class LabelJobResult:
    job_id: int
    status: str
    source: str
    teacher: str
    progress: LabelProgress


@dataclass
class Task:
    conversation_id: int
    message_index: int
    history: list[dict]
    logged_reply: str
    intent: str | None


def cache_key(history: list[dict], prompt: Prompt, teacher: str, params: dict) -> str:
    blob = json.dumps([[m["role"], m["content"]] for m in history] + [prompt.id, prompt.hash, teacher, params],
                      ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def select_tasks(store: Store, options: LabelOptions) -> list[Task]:
    tasks, n_conv = [], 0
    for conv in store.conversations():
        if options.resolved_only and (conv.get("resolution") or "") not in ("resolved", "solved", "closed"):
            continue
        if options.min_csat is not None and (conv.get("csat") is None or conv["csat"] < options.min_csat):
            continue
        if options.limit is not None and n_conv >= options.limit:
            break
        n_conv += 1
        msgs = conv["messages"]
        indices = [i for i, m in enumerate(msgs) if m["role"] == "assistant" and i > 0 and msgs[i - 1]["role"] == "user"]
        if options.final_turn_only:
            indices = indices[-1:]
        for i in indices:
            tasks.append(Task(conv["id"], i, msgs[:i], msgs[i]["content"], conv.get("intent")))
    return tasks


def _price(backend: LabelBackend, result: CallResult, settings, latency_s: float) -> float:
    if backend.local:
        return latency_s / 3600 * settings.compute_per_hour
    price = settings.price(backend.name)
    if price is None or result.input_tokens is None:
        return 0.0
    return (result.input_tokens * price[0] + (result.output_tokens or 0) * price[1]) / 1e6


def make_backend(settings, retriever) -> LabelBackend:
    if settings.teacher_configured:
        return OpenAIBackend(base_url=settings.teacher_base_url, api_key=settings.teacher_api_key,
                             model=settings.teacher_model, timeout=settings.label_timeout)
    return CaseBackend(retriever)


# Waits per turn are bounded: at most MAX_RETRIES retries (whatever the options say), and no backoff or
# Retry-After longer than MAX_BACKOFF_S; each attempt is bounded by settings.label_timeout.
MAX_RETRIES = 10
MAX_BACKOFF_S = 60.0


def retries(options: LabelOptions, settings) -> int:
    n = options.max_retries if options.max_retries is not None else getattr(settings, "label_max_retries", 3)
    return max(0, min(int(n), MAX_RETRIES))


def label(store: Store, settings, options: LabelOptions, *, backend: LabelBackend | None = None, retriever=None,
          progress: Callable[[LabelProgress], None] | None = None, quality: QualityFilter | None = None,
          stop: threading.Event | None = None) -> LabelJobResult:
    """Run one labelling job; returns its id, status and totals. Safe to interrupt and run again."""
    source = options.source
    if source == "auto":
        source = "teacher" if settings.teacher_configured else "logged"
    if source not in SOURCES:
        raise InputError(f"--source must be one of {', '.join(SOURCES)}, got {source!r}")
    if options.concurrency < 1:
        raise InputError("--concurrency must be at least 1")
    prompt = PROMPTS.get(options.prompt_id)
    if prompt is None:
        raise InputError(f"unknown prompt {options.prompt_id!r}; known: {', '.join(PROMPTS)}")
    quality = quality or QualityFilter()
    stop = stop or threading.Event()
    tasks = select_tasks(store, options)
    if not tasks:
        raise InputError("no conversations to label: import transcripts first (assistant import PATH)")
    uses_teacher = source in ("teacher", "both")
    if uses_teacher and retriever is None:
        from assistant.retrieval import Embedder, build_retriever

        retriever = build_retriever(store, Embedder(settings.cache_dir))
    if uses_teacher and backend is None:
        backend = make_backend(settings, retriever)
    teacher_name = backend.name if uses_teacher else "human agents (logged replies)"
    params = {"max_tokens": options.max_tokens, "temperature": options.temperature}
    job_id = store.insert("label_jobs", {
        "source": source, "teacher": teacher_name, "prompt_id": prompt.id, "prompt_hash": prompt.hash,
        "options": json.dumps(asdict(options)), "status": "running", "n_tasks": len(tasks), "started_at": now(),
    })
    prog = LabelProgress(total=len(tasks) * (2 if source == "both" else 1))
    lock = threading.Lock()

    def record(task: Task, label_source: str, text: str, finish: str | None, key: str | None, reference: str = "") -> None:
        reason = quality.check(text, task.history, finish, reference)
        row = {"job_id": job_id, "conversation_id": task.conversation_id, "message_index": task.message_index,
               "source": label_source, "teacher": teacher_name if label_source == "teacher" else "logged",
               "prompt_id": prompt.id if label_source == "teacher" else None,
               "prompt_hash": prompt.hash if label_source == "teacher" else None, "cache_key": key, "reply": text,
               "status": "rejected" if reason else "accepted", "reason": reason, "created_at": now()}
        store.insert("labels", row)
        with lock:
            prog.done += 1
            prog.rejected += bool(reason)
            prog.accepted += not reason
        if progress:
            progress(prog)

    # Every job ends: whatever happens below, the job row leaves "running" with its status and reason.
    status, error = "failed: interrupted before it finished", None
    try:
        if source in ("logged", "both"):
            from assistant.models import neutralise_placeholders

            for task in tasks:
                # "Hi [NAME_1]," would teach the student to print placeholders; "Hi there," is what it should say.
                record(task, "logged", neutralise_placeholders(task.logged_reply), "stop", None)
        status = "done"
        if uses_teacher:
            status = _run_teacher(store, settings, options, backend, retriever, prompt, params, tasks, record, prog,
                                  lock, progress, stop)
    except KeyboardInterrupt:
        status = "stopped: interrupted (run it again to resume; nothing stored is paid for twice)"
        raise
    except TeacherRejected as exc:
        status, error = f"failed: {exc}", exc
    except AssistantError as exc:
        status = f"failed: {exc}"
        raise
    except Exception as exc:  # a bug or an unforeseen failure: the job says so, the log keeps the traceback
        log.exception("label job %s failed", job_id)
        status = f"failed: {type(exc).__name__}: {exc}"
        error = AssistantError(f"label job {job_id} failed: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
    finally:
        store.update("label_jobs", job_id, {
            "status": status, "finished_at": now(), "n_done": prog.done, "n_cached": prog.cached,
            "n_called": prog.called, "n_failed": prog.failed, "n_accepted": prog.accepted,
            "n_rejected": prog.rejected, "input_tokens": prog.input_tokens, "output_tokens": prog.output_tokens,
            "cost": round(prog.cost, 6)})
    if error is not None:
        if isinstance(error, TeacherRejected):
            raise TeacherRejected(f"label job {job_id} {status}; check ASSISTANT_TEACHER_API_KEY") from error
        raise error
    return LabelJobResult(job_id, status, source, teacher_name, prog)


def build_request(task: Task, retriever, prompt: Prompt, options: LabelOptions) -> tuple[LabelRequest, str]:
    """The teacher's prompt for one turn, and the KB text it was grounded in (what a reply may quote)."""
    grounding = retriever.ground(task.history, options.k_kb, options.k_cases) if retriever else {"kb": [], "cases": []}
    kb = [h.item["text"] for h in grounding["kb"]]
    cases = []
    for h in grounding["cases"]:
        if h.item["conversation_id"] == task.conversation_id:
            continue  # never show the teacher the answer it is asked to write
        cases.append((h.item["history"][-3:], h.item["reply"]))  # raw: label_messages escapes and wraps it
    request = LabelRequest(label_messages(prompt, task.history, kb, cases), task.history, task.conversation_id,
                           options.max_tokens, options.temperature)
    return request, "\n".join(kb)


def store_call(store: Store, key: str, teacher: str, prompt: Prompt, params: dict, result: CallResult, cost: float,
               latency_ms: float | None, reference: str) -> None:
    row = {"cache_key": key, "teacher": teacher, "prompt_id": prompt.id, "prompt_hash": prompt.hash,
           "params": json.dumps(params), "reply": result.text, "finish_reason": result.finish_reason,
           "input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
           "cached_tokens": result.cached_tokens, "cost": cost, "latency_ms": latency_ms,
           "reference": reference, "created_at": now()}
    store.insert("teacher_calls", row, replace=True)


def split_cached(store: Store, tasks: list[Task], prompt: Prompt, teacher: str, params: dict, record, prog, lock) -> list[tuple[Task, str]]:
    """Record every turn whose teacher call is already stored; return the (task, key) pairs still to call."""
    db, todo = store.db, []
    for task in tasks:
        key = cache_key(task.history, prompt, teacher, params)
        cached = next(db.query("SELECT * FROM teacher_calls WHERE cache_key = ?", [key]), None)
        if cached:
            with lock:
                prog.cached += 1
            record(task, "teacher", cached["reply"], cached["finish_reason"], key, cached.get("reference") or "")
        else:
            todo.append((task, key))
    return todo


def _run_teacher(store, settings, options, backend, retriever, prompt, params, tasks, record, prog, lock, progress, stop) -> str:
    from assistant import spend

    limiter = RateLimiter(options.rpm, options.tpm)
    daily = spend.DailyBudget(store, settings)
    todo = split_cached(store, tasks, prompt, backend.name, params, record, prog, lock)
    budget_hit = threading.Event()  # the job's own --budget, or the day's cap
    fatal: list[Exception] = []  # the teacher refused us for good: stop at once
    if todo and daily.reached():
        return f"stopped: {spend.REACHED}"
    if retriever is not None and todo:
        retriever.warm([task.history for task, _ in todo])
    if options.batch and todo:
        from distill.batch import run_batch

        return run_batch(store, settings, options, backend, retriever, prompt, params, todo, record, prog, lock,
                         progress, stop)
    max_retries = retries(options, settings)

    def halted() -> bool:
        return stop.is_set() or budget_hit.is_set() or bool(fatal)

    def work(task: Task, key: str) -> None:
        request, reference = build_request(task, retriever, prompt, options)
        est_tokens = sum(len(m["content"]) for m in request.messages) // 4 + options.max_tokens
        for attempt in range(max_retries + 1):
            if halted():
                return
            if daily.reached():
                budget_hit.set()
                return
            limiter.acquire(est_tokens, stop)
            t0 = time.perf_counter()
            try:
                result = backend.call(request)
                break
            except TeacherRejected as exc:
                fatal.append(exc)
                return
            except RetryableError as exc:
                if attempt == max_retries:
                    log.warning("giving up on a turn after %d attempts: %s", attempt + 1, exc)
                    with lock:
                        prog.failed += 1
                    return
                delay = exc.retry_after if exc.retry_after is not None else 0.5 * 2 ** attempt
                delay = min(MAX_BACKOFF_S, max(0.0, delay))
                stop.wait(delay + random.uniform(0, 0.1 * delay))
        latency = time.perf_counter() - t0
        cost = _price(backend, result, settings, latency)
        if not (result.text or "").strip():
            # A local stand-in with nothing to say: a rejected label, but nothing cached that a rerun would reuse.
            record(task, "teacher", "", result.finish_reason, None, reference)
            return
        # Stored the moment it returns: a crash after this line never pays for this call again.
        store_call(store, key, backend.name, prompt, params, result, cost, latency * 1000, reference)
        daily.add(cost)
        with lock:
            prog.called += 1
            prog.input_tokens += result.input_tokens or 0
            prog.output_tokens += result.output_tokens or 0
            prog.cost += cost
            if options.budget is not None and prog.cost >= options.budget:
                budget_hit.set()
        record(task, "teacher", result.text, result.finish_reason, key, reference)

    pending = set()
    queue = list(todo)
    with ThreadPoolExecutor(max_workers=options.concurrency) as pool:
        try:
            while queue or pending:
                while queue and len(pending) < options.concurrency and not halted():
                    task, key = queue.pop(0)
                    pending.add(pool.submit(work, task, key))
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    f.result()  # surface unexpected errors
        except BaseException:
            stop.set()  # Ctrl-C or a bug: let in-flight calls finish or give up; everything stored stays stored
            raise
    if fatal:
        raise fatal[0]
    if stop.is_set():
        return "stopped"
    if budget_hit.is_set() and (queue or prog.done < prog.total):
        if options.budget is not None and prog.cost >= options.budget:
            return f"stopped: budget ${options.budget:.2f} reached"
        return f"stopped: {spend.REACHED}"
    return "done" if not prog.failed else f"done with {prog.failed} failed turns"
