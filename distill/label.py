"""Teacher labelling: every selected assistant turn gets a reply to learn from (stage 1 of distillation).

Sources: `teacher` (the configured teacher writes the ideal reply, grounded in KB passages and similar
resolved cases, the transcript given as delimited data), `logged` (the human agents' own replies), or
`both` (kept side by side, tagged). With no teacher configured the default is `logged`: offline, the
agents are the strongest teacher there is. The teacher is reached through a backend (`distill.backends`),
turn by turn here or as one OpenAI Batch API job (`distill.batch`).

Never pay twice, never lose work: each teacher call is keyed by hash(conversation prefix, prompt id and
hash, teacher model, generation parameters) and written to `teacher_calls` the moment it returns, in its
own transaction. A rerun (after Ctrl-C or kill -9) reuses every stored result and calls only what is
missing. Calls run on a thread pool (concurrency N) under requests- and tokens-per-minute limits, with
retries and backoff on 429 / 5xx / timeouts honouring Retry-After, and stop cleanly at a budget cap.

Money: every job has a budget (its own `budget`, else settings.label_budget; 0 = none) under the daily
cap, and `label_plan` says before anything is spent what the job will call, about what it costs at list
price, and the caps that bound it (the CLI and the Label tab show it first). A Batch API job, submitted
whole, is refused when its estimate is over the job's budget.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from assistant import spend
from assistant.errors import AssistantError, InputError
from assistant.models import neutralise_placeholders
from assistant.pricing import BATCH_DISCOUNT, call_cost, token_cost
from assistant.retrieval import build_retriever, embedder_for, is_resolved
from assistant.store import Store, now
from distill.backends import CallResult, LabelBackend, LabelRequest, RetryableError, TeacherRejected, make_backend
from distill.batch import run_batch
from distill.prompts import PROMPTS, Prompt, label_messages
from distill.quality import QualityFilter

log = logging.getLogger(__name__)
SOURCES = ("teacher", "logged", "both")


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
    budget: float | None = None  # US$ this job may spend; None: settings.label_budget; 0: no cap
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
        if options.resolved_only and not is_resolved(conv):
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


# Waits per turn are bounded: at most MAX_RETRIES retries (whatever the options say), and no backoff or
# Retry-After longer than MAX_BACKOFF_S; each attempt is bounded by settings.label_timeout.
MAX_RETRIES = 10
MAX_BACKOFF_S = 60.0


def retries(options: LabelOptions, settings) -> int:
    n = options.max_retries if options.max_retries is not None else getattr(settings, "label_max_retries", 3)
    return max(0, min(int(n), MAX_RETRIES))


def job_budget(options: LabelOptions, settings) -> float | None:
    """The job's budget in US$: its own, else the settings' default; None when there is no cap (0)."""
    budget = options.budget if options.budget is not None else getattr(settings, "label_budget", 0.0)
    return budget if budget and budget > 0 else None


# About how many tokens a labelling prompt adds around the transcript: the instructions, and the KB
# passages and similar cases retrieved for it (as built by distill.prompts). For estimates only.
KB_PASSAGE_TOKENS, CASE_TOKENS = 200, 150


def estimate_cost(tasks: list[Task], price: tuple | None, options: LabelOptions, prompt: Prompt,
                  discount: float = 1.0) -> float | None:
    """About what calling the teacher for `tasks` costs at `price`: every reply as long as max_tokens, so
    rather more than it will be. None when the price is unknown."""
    overhead = len(prompt.system) // 4 + KB_PASSAGE_TOKENS * options.k_kb + CASE_TOKENS * options.k_cases
    input_tokens = sum(sum(len(m["content"]) for m in t.history) // 4 + overhead for t in tasks)
    return token_cost(price, input_tokens, options.max_tokens * len(tasks), discount)


@dataclass
class LabelPlan:
    """What a job will do and may spend, told before it starts."""

    source: str
    teacher: str
    paid: bool  # the teacher is an endpoint billed per token
    turns: int
    stored: int  # teacher calls already stored: reused, never paid again
    estimate: float | None
    budget: float | None
    daily_cap: float
    spent_today: float

    def line(self) -> str:
        if not self.paid:
            who = "the agents' logged replies" if self.source == "logged" else f"{self.teacher} (local, nothing paid)"
            return f"labelling {self.turns} turns with {who}"
        cost = f"about ${self.estimate:.2f} at list price" if self.estimate is not None else \
            "cost unknown (no price for this model: set ASSISTANT_PRICES)"
        budget = f"job budget ${self.budget:.2f}" if self.budget is not None else "no job budget"
        cap = f"today's cap ${self.daily_cap:.2f} (${self.spent_today:.2f} spent)" if self.daily_cap > 0 else "no daily cap"
        return (f"labelling {self.turns} turns with the paid teacher {self.teacher}: {self.stored} stored (free), "
                f"{self.turns - self.stored} to call, {cost}; {budget} (--budget, 0 = none), {cap}")


def label_plan(store: Store, settings, options: LabelOptions) -> LabelPlan:
    """What `label(store, settings, options)` would do with the configured teacher, before it spends anything."""
    source, prompt = _checked(options, settings)
    tasks = select_tasks(store, options)
    uses_teacher = source in ("teacher", "both")
    paid = uses_teacher and settings.teacher_configured
    teacher = settings.teacher_model if settings.teacher_configured else "the case-based stand-in"
    stored, estimate = 0, None
    if paid:
        params = {"max_tokens": options.max_tokens, "temperature": options.temperature}
        keys = {row["cache_key"] for row in store.db.query("SELECT cache_key FROM teacher_calls WHERE teacher = ?", [teacher])}
        todo = [t for t in tasks if cache_key(t.history, prompt, teacher, params) not in keys]
        stored = len(tasks) - len(todo)
        estimate = estimate_cost(todo, settings.price(teacher), options, prompt,
                                 BATCH_DISCOUNT if options.batch else 1.0)
    return LabelPlan(source, teacher, paid, len(tasks), stored, estimate, job_budget(options, settings),
                     settings.teacher_daily_budget, spend.spent_today(store) if paid else 0.0)


# ---- running a job ----------------------------------------------------------------------------

class _Job:
    """One labelling job's bookkeeping, shared by the live and the batch calls: its row and its progress, and
    how a reply becomes a label (quality-checked, stored, counted)."""

    def __init__(self, store: Store, job_id: int, prompt: Prompt, teacher: str, params: dict, total: int,
                 quality: QualityFilter, on_progress: Callable[[LabelProgress], None] | None):
        self.store, self.id, self.prompt, self.teacher, self.params = store, job_id, prompt, teacher, params
        self.quality, self.on_progress = quality, on_progress
        self.prog = LabelProgress(total=total)
        self.lock = threading.Lock()

    def record(self, task: Task, label_source: str, text: str, finish: str | None, key: str | None,
               reference: str = "") -> None:
        reason = self.quality.check(text, task.history, finish, reference)
        by_teacher = label_source == "teacher"
        self.store.insert("labels", {
            "job_id": self.id, "conversation_id": task.conversation_id, "message_index": task.message_index,
            "source": label_source, "teacher": self.teacher if by_teacher else "logged",
            "prompt_id": self.prompt.id if by_teacher else None, "prompt_hash": self.prompt.hash if by_teacher else None,
            "cache_key": key, "reply": text, "status": "rejected" if reason else "accepted", "reason": reason,
            "created_at": now()})
        with self.lock:
            self.prog.done += 1
            self.prog.rejected += bool(reason)
            self.prog.accepted += not reason
        if self.on_progress:
            self.on_progress(self.prog)

    def accept_call(self, task: Task, key: str, result: CallResult, cost: float, latency_ms: float | None,
                    reference: str) -> None:
        """A teacher call that returned: stored the moment it returns (a crash after this never pays for it
        again), counted, and recorded as a label."""
        store_call(self.store, key, self.teacher, self.prompt, self.params, result, cost, latency_ms, reference)
        with self.lock:
            self.prog.called += 1
            self.prog.input_tokens += result.input_tokens or 0
            self.prog.output_tokens += result.output_tokens or 0
            self.prog.cost += cost
        self.record(task, "teacher", result.text, result.finish_reason, key, reference)

    def split_cached(self, tasks: list[Task]) -> list[tuple[Task, str]]:
        """Record every turn whose teacher call is already stored; return the (task, key) pairs still to call."""
        todo = []
        for task in tasks:
            key = cache_key(task.history, self.prompt, self.teacher, self.params)
            cached = next(self.store.db.query("SELECT * FROM teacher_calls WHERE cache_key = ?", [key]), None)
            if cached:
                with self.lock:
                    self.prog.cached += 1
                self.record(task, "teacher", cached["reply"], cached["finish_reason"], key, cached.get("reference") or "")
            else:
                todo.append((task, key))
        return todo

    def finish(self, status: str) -> None:
        p = self.prog
        self.store.update("label_jobs", self.id, {
            "status": status, "finished_at": now(), "n_done": p.done, "n_cached": p.cached, "n_called": p.called,
            "n_failed": p.failed, "n_accepted": p.accepted, "n_rejected": p.rejected, "input_tokens": p.input_tokens,
            "output_tokens": p.output_tokens, "cost": round(p.cost, 6)})


def label(store: Store, settings, options: LabelOptions, *, backend: LabelBackend | None = None, retriever=None,
          progress: Callable[[LabelProgress], None] | None = None, quality: QualityFilter | None = None,
          stop: threading.Event | None = None) -> LabelJobResult:
    """Run one labelling job; returns its id, status and totals. Safe to interrupt and run again."""
    source, prompt = _checked(options, settings)
    options = replace(options, budget=job_budget(options, settings))
    tasks = select_tasks(store, options)
    if not tasks:
        raise InputError("no conversations to label: import transcripts first (assistant import PATH)")
    uses_teacher = source in ("teacher", "both")
    if uses_teacher and retriever is None:
        retriever = build_retriever(store, embedder_for(settings))
    if uses_teacher and backend is None:
        backend = make_backend(settings, retriever)
    teacher_name = backend.name if uses_teacher else "human agents (logged replies)"
    job_id = store.insert("label_jobs", {
        "source": source, "teacher": teacher_name, "prompt_id": prompt.id, "prompt_hash": prompt.hash,
        "options": json.dumps(asdict(options)), "status": "running", "n_tasks": len(tasks), "started_at": now(),
    })
    job = _Job(store, job_id, prompt, teacher_name, {"max_tokens": options.max_tokens, "temperature": options.temperature},
               len(tasks) * (2 if source == "both" else 1), quality or QualityFilter(), progress)
    status, error = _run_job(job, settings, options, source, backend, retriever, tasks, stop or threading.Event())
    if error is not None:
        if isinstance(error, TeacherRejected):
            raise TeacherRejected(f"label job {job_id} {status}; check ASSISTANT_TEACHER_API_KEY") from error
        raise error
    return LabelJobResult(job_id, status, source, teacher_name, job.prog)


def _checked(options: LabelOptions, settings) -> tuple[str, Prompt]:
    """The job's label source (with "auto" resolved) and prompt, or an InputError naming the bad option."""
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
    return source, prompt


def _run_job(job: _Job, settings, options: LabelOptions, source: str, backend, retriever, tasks: list[Task],
             stop: threading.Event) -> tuple[str, Exception | None]:
    """Label every task; (the job's status, the error to raise once its row is written, if any).

    Every job ends: whatever happens here, the job row leaves "running" with its status and reason."""
    status, error = "failed: interrupted before it finished", None
    try:
        if source in ("logged", "both"):
            for task in tasks:
                # "Hi [NAME_1]," would teach the student to print placeholders; "Hi there," is what it should say.
                job.record(task, "logged", neutralise_placeholders(task.logged_reply), "stop", None)
        status = "done"
        if source in ("teacher", "both"):
            status = _run_teacher(job, settings, options, backend, retriever, tasks, stop)
    except KeyboardInterrupt:
        status = "stopped: interrupted (run it again to resume; nothing stored is paid for twice)"
        raise
    except TeacherRejected as exc:
        status, error = f"failed: {exc}", exc
    except AssistantError as exc:
        status = f"failed: {exc}"
        raise
    except Exception as exc:  # a bug or an unforeseen failure: the job says so, the log keeps the traceback
        log.exception("label job %s failed", job.id)
        status = f"failed: {type(exc).__name__}: {exc}"
        error = AssistantError(f"label job {job.id} failed: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
    finally:
        job.finish(status)
    return status, error


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


def _run_teacher(job: _Job, settings, options: LabelOptions, backend: LabelBackend, retriever, tasks: list[Task],
                 stop: threading.Event) -> str:
    """The teacher's labels: stored calls reused, the rest called live or as one batch; the job's status."""
    daily = spend.DailyBudget(job.store, settings)
    todo = job.split_cached(tasks)
    if todo and daily.reached():
        return f"stopped: {spend.REACHED}"
    if retriever is not None and todo:
        retriever.warm([task.history for task, _ in todo])
    if options.batch and todo:
        return _run_batch(job, settings, options, backend, retriever, todo, stop)
    return _LiveCalls(job, settings, options, backend, retriever, stop, daily).run(todo)


def _run_batch(job: _Job, settings, options: LabelOptions, backend: LabelBackend, retriever,
               todo: list[tuple[Task, str]], stop: threading.Event) -> str:
    """The missing calls as one OpenAI Batch API job (`distill.batch`), billed at the batch discount."""
    price = settings.price(backend.name)
    estimate = estimate_cost([task for task, _ in todo], price, options, job.prompt, BATCH_DISCOUNT)
    if options.budget is not None and estimate is not None and estimate > options.budget - job.prog.cost:
        raise InputError(f"this batch of {len(todo)} calls would cost about ${estimate:.2f}, over the job's budget "
                         f"${options.budget:.2f}: raise --budget, or label fewer conversations (--limit)")
    built = {key: (task, *build_request(task, retriever, job.prompt, options)) for task, key in todo}

    def accept(key: str, result: CallResult | None) -> None:
        if result is None:
            with job.lock:
                job.prog.failed += 1
            return
        task, _, reference = built[key]
        cost = token_cost(price, result.input_tokens, result.output_tokens, BATCH_DISCOUNT, result.cached_tokens) or 0.0
        job.accept_call(task, key, result, cost, None, reference)

    return run_batch(job.store, backend, {key: request.messages for key, (_, request, _) in built.items()}, job.params,
                     poll_s=options.poll_s, stop=stop, accept=accept,
                     on_poll=(lambda: job.on_progress(job.prog)) if job.on_progress else None)


class _LiveCalls:
    """The teacher called turn by turn on a thread pool: paced (requests and tokens per minute), retried with
    backoff, and stopped cleanly by Ctrl-C, the job's budget, the day's cap or a rejected key."""

    def __init__(self, job: _Job, settings, options: LabelOptions, backend: LabelBackend, retriever,
                 stop: threading.Event, daily: spend.DailyBudget):
        self.job, self.settings, self.options, self.backend, self.retriever = job, settings, options, backend, retriever
        self.stop, self.daily = stop, daily
        self.limiter = RateLimiter(options.rpm, options.tpm)
        self.max_retries = retries(options, settings)
        self.budget_hit = threading.Event()  # the job's own --budget, or the day's cap
        self.fatal: list[Exception] = []  # the teacher refused us for good: stop at once

    def halted(self) -> bool:
        return self.stop.is_set() or self.budget_hit.is_set() or bool(self.fatal)

    def call(self, request: LabelRequest) -> tuple[CallResult | None, float]:
        """The backend's answer and how long it took; None when the turn failed, or the job halted, first."""
        est_tokens = sum(len(m["content"]) for m in request.messages) // 4 + self.options.max_tokens
        for attempt in range(self.max_retries + 1):
            if self.halted():
                return None, 0.0
            if self.daily.reached():
                self.budget_hit.set()
                return None, 0.0
            self.limiter.acquire(est_tokens, self.stop)
            t0 = time.perf_counter()
            try:
                return self.backend.call(request), time.perf_counter() - t0
            except TeacherRejected as exc:
                self.fatal.append(exc)
                return None, 0.0
            except RetryableError as exc:
                if attempt == self.max_retries:
                    log.warning("giving up on a turn after %d attempts: %s", attempt + 1, exc)
                    with self.job.lock:
                        self.job.prog.failed += 1
                    return None, 0.0
                delay = exc.retry_after if exc.retry_after is not None else 0.5 * 2 ** attempt
                delay = min(MAX_BACKOFF_S, max(0.0, delay))
                self.stop.wait(delay + random.uniform(0, 0.1 * delay))
        return None, 0.0  # pragma: no cover - every attempt above returns or retries

    def work(self, task: Task, key: str) -> None:
        request, reference = build_request(task, self.retriever, self.job.prompt, self.options)
        result, latency = self.call(request)
        if result is None:
            return
        if not (result.text or "").strip():
            # A local stand-in with nothing to say: a rejected label, but nothing cached that a rerun would reuse.
            self.job.record(task, "teacher", "", result.finish_reason, None, reference)
            return
        cost = call_cost(local=self.backend.local, model=self.backend.name, settings=self.settings, seconds=latency,
                         input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                         cached_tokens=result.cached_tokens) or 0.0
        self.job.accept_call(task, key, result, cost, latency * 1000, reference)
        self.daily.add(cost)
        if self.options.budget is not None and self.job.prog.cost >= self.options.budget:
            self.budget_hit.set()

    def run(self, todo: list[tuple[Task, str]]) -> str:
        pending, queue = set(), list(todo)
        with ThreadPoolExecutor(max_workers=self.options.concurrency) as pool:
            try:
                while queue or pending:
                    while queue and len(pending) < self.options.concurrency and not self.halted():
                        task, key = queue.pop(0)
                        pending.add(pool.submit(self.work, task, key))
                    if not pending:
                        break
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        f.result()  # surface unexpected errors
            except BaseException:
                self.stop.set()  # Ctrl-C or a bug: let in-flight calls finish or give up; everything stored stays stored
                raise
        return self._status(queue)

    def _status(self, queue: list) -> str:
        prog, budget = self.job.prog, self.options.budget
        if self.fatal:
            raise self.fatal[0]
        if self.stop.is_set():
            return "stopped"
        if self.budget_hit.is_set() and (queue or prog.done < prog.total):
            if budget is not None and prog.cost >= budget:
                return f"stopped: budget ${budget:.2f} reached"
            return f"stopped: {spend.REACHED}"
        return "done" if not prog.failed else f"done with {prog.failed} failed turns"
