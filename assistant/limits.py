"""How often one chat visitor may send: a sliding one-minute window per key (a chat session, a client
address), so one client cannot keep the student busy or run up the teacher's bill for everyone else."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque


class RateLimiter:
    def __init__(self, clock=time.monotonic, window_s: float = 60.0):
        self.clock, self.window = clock, window_s
        self._hits: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def wait_for(self, limits: dict[str, int]) -> float:
        """0, and the message counted against every key, when each key is under its limit per window (a
        limit of 0 or less is none); else the seconds until it would be, and nothing counted, so a refused
        message does not push the wait further out."""
        keys = [key for key, limit in limits.items() if limit > 0]
        now = self.clock()
        with self._lock:
            waits = []
            for key in keys:
                hits = self._hits[key]
                while hits and hits[0] <= now - self.window:
                    hits.popleft()
                if len(hits) >= limits[key]:
                    waits.append(hits[0] + self.window - now)
            if waits:
                return max(waits)
            for key in keys:
                self._hits[key].append(now)
            if len(self._hits) > 10_000:  # forget idle keys so the table stays small
                for key in [k for k, h in self._hits.items() if not h or h[-1] <= now - self.window]:
                    del self._hits[key]
            return 0.0


TEACHER_LIMIT_REACHED = "teacher calls per minute reached"
TEACHER_LIMIT_NOTICE = "The teacher model is busy with other chats right now, so the student model answered."


class TeacherCallLimit:
    """The teacher's chat replies per minute across every session (settings.teacher_calls_per_minute; 0 = none):
    a burst of hard questions, or one client scripting them, cannot run up the teacher's bill faster than this.
    Past it the chat answers with the student and says so (`chat._within_limits`)."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute = per_minute
        self._limiter = RateLimiter(clock)

    def allow(self) -> bool:
        """True, and the call counted, when the teacher may answer one more chat reply now."""
        return self.per_minute <= 0 or self._limiter.wait_for({"teacher": self.per_minute}) == 0
