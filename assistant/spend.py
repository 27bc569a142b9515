"""The daily teacher spend cap: what the teacher has cost today, and whether it may be called again.

`settings.teacher_daily_budget` is a cap in US$ per UTC day (0 = no cap) shared by everything that pays
the teacher: the chat, labelling jobs and the retrain loop. Nothing new is recorded for it: today's
spend is summed from what the store already writes the moment a cost is known,

- `exchanges.cost` of the chat replies the teacher wrote (routed_to = 'teacher'),
- `teacher_calls.cost` of every labelling call (live or Batch API; retrains label through the same jobs),
- `shadow_answers.cost` of the teacher's background answers to student-served turns,

each counted by its `created_at` (UTC ISO-8601, so "today" is a string range). Every one of those costs is
computed by `assistant.pricing`; nothing is priced here. A reply whose price is unknown (no price for the
model) records no cost and counts as free: set ASSISTANT_PRICES for the teacher.

Past the cap the chat answers with the student plus a notice (`chat.respond`), and labelling stops
cleanly with the status "stopped: daily teacher budget reached" (`distill.label`). The check happens
before a call, so the calls in flight when the cap is reached still complete: the day can end a few
calls over the cap, never more than the calls running at once.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

REACHED = "daily teacher budget reached"
NOTICE = "Today's budget for the teacher model is used up, so the student model answered."

# (table, extra condition): every place the store records what the teacher cost
_SOURCES = (
    ("exchanges", "routed_to = 'teacher'"),
    ("teacher_calls", "1"),
    ("shadow_answers", "1"),
)


def day_bounds(at: datetime | None = None) -> tuple[str, str]:
    """The UTC day containing `at` (default: now) as [start, end) strings comparable with `created_at`."""
    at = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    start = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.isoformat(timespec="milliseconds"), (start + timedelta(days=1)).isoformat(timespec="milliseconds")


def spent_today(store, at: datetime | None = None) -> float:
    """US$ the teacher has cost in the UTC day of `at` (default: today), from the store's own records."""
    start, end = day_bounds(at)
    total = 0.0
    tables = set(store.db.table_names())
    for table, condition in _SOURCES:
        if table not in tables:
            continue
        row = store.db.execute(
            f"SELECT COALESCE(SUM(cost), 0) FROM [{table}] WHERE {condition} AND created_at >= ? AND created_at < ?",
            [start, end]).fetchone()
        total += float(row[0] or 0.0)
    return total


def cap(settings) -> float | None:
    """The daily cap in US$, or None when there is none (0 or negative)."""
    value = float(getattr(settings, "teacher_daily_budget", 0) or 0)
    return value if value > 0 else None


_recent: dict[str, tuple[float, str, float]] = {}  # store path -> (read at, day, spent): the chat's short-lived cache
_recent_lock = threading.Lock()


def budget_reached(store, settings, max_age_s: float = 1.0) -> bool:
    """True when a daily cap is set and today's teacher spend has reached it.

    For the chat: today's spend is read at most once per `max_age_s` per store, so concurrent chats do not
    each sum the day's records (0 reads afresh)."""
    limit = cap(settings)
    if limit is None:
        return False
    key, day, t = str(getattr(store, "path", id(store))), day_bounds()[0], time.monotonic()
    with _recent_lock:
        cached = _recent.get(key)
    if cached and cached[1] == day and t - cached[0] < max_age_s:
        spent = cached[2]
    else:
        spent = spent_today(store)
        with _recent_lock:
            _recent[key] = (t, day, spent)
    return spent >= limit


class DailyBudget:
    """The cap as a long job sees it: today's spend re-read from the store at most every `refresh_s`
    seconds (other jobs and the chat spend too), plus what this job added since (`add`), so a job of
    thousands of calls does not sum the day's records before each one."""

    def __init__(self, store, settings, refresh_s: float = 2.0):
        self.store, self.limit, self.refresh_s = store, cap(settings), refresh_s
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._recorded = 0.0  # today's spend in the store when last read
        self._added = 0.0  # what this job spent since then

    def add(self, cost: float) -> None:
        with self._lock:
            self._added += cost or 0.0

    def spent(self) -> float:
        with self._lock:
            if time.monotonic() - self._read_at >= self.refresh_s:
                # The store already holds what was added (calls are stored as they return): start again from it.
                self._recorded, self._added, self._read_at = spent_today(self.store), 0.0, time.monotonic()
            return self._recorded + self._added

    def reached(self) -> bool:
        return self.limit is not None and self.spent() >= self.limit
