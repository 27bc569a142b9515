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
