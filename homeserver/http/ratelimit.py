"""Token-bucket rate limits answered with 429 ``M_LIMIT_EXCEEDED`` and ``retry_after_ms``.

Spec: Client-Server API, "Rate limiting". Limits come from ``rc_*`` config keys (per_second, burst_count).
"""

from __future__ import annotations

from typing import Any, Hashable

from homeserver.config import RateLimit
from homeserver.http.errors import LimitExceededError


class Ratelimiter:
    """Buckets per key for one action. ``clock`` gives seconds (float); keys are e.g. a user ID or an IP."""

    def __init__(self, clock: Any, limit: RateLimit) -> None:
        self._clock = clock
        self.limit = limit
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def check(self, key: Hashable, cost: float = 1.0, update: bool = True) -> None:
        """Take ``cost`` tokens for ``key``; raises LimitExceededError (with ``retry_after_ms``) when empty.
        A ``per_second`` of 0 disables the limit."""
        if self.limit.per_second <= 0:
            return
        now = self._clock.seconds()
        tokens, last = self._buckets.get(key, (float(self.limit.burst_count), now))
        tokens = min(float(self.limit.burst_count), tokens + (now - last) * self.limit.per_second)
        if tokens < cost:
            retry_after_ms = int(1000 * (cost - tokens) / self.limit.per_second) + 1
            raise LimitExceededError(retry_after_ms)
        if update:
            self._buckets[key] = (tokens - cost, now)
        if len(self._buckets) > 100_000:
            self._prune(now)

    def _prune(self, now: float) -> None:
        full = float(self.limit.burst_count)
        for key, (tokens, last) in list(self._buckets.items()):
            if tokens + (now - last) * self.limit.per_second >= full:
                del self._buckets[key]
