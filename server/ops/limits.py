"""Limits: a per-client token bucket for expensive calls and a cap on concurrent subscriptions."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from server.errors import RateLimited, ResourceExhausted

# Buckets idle this long are forgotten (they are full again by then anyway).
_IDLE_FORGET_S = 3600.0


class RateLimiter:
    """Token buckets keyed by client: `burst` calls back to back, then `per_minute` calls a minute."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_minute / 60.0  # tokens per second
        self._burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last refill time)

    def acquire(self, client: str, what: str) -> None:
        """Takes one token for `client`, or raises RateLimited saying when to retry."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(client, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                self._forget_idle(now)
                return
            self._buckets[client] = (tokens, now)
        retry_after = (1.0 - tokens) / self._rate
        raise RateLimited(
            f"{what}: rate limit of {self._rate * 60:g} calls a minute (burst {self._burst:g}) reached for "
            f"{client!r}; retry in {math.ceil(retry_after)} s",
            retry_after_s=retry_after,
        )

    def _forget_idle(self, now: float) -> None:
        if len(self._buckets) > 10_000:
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < _IDLE_FORGET_S}


class SubscriptionSlots:
    """At most `limit` concurrent subscriptions, and at most `per_owner` for one owner (a token's name,
    or the client address with auth off), so one token cannot hold every slot. Use
    `with slots.hold(owner): ...` around a stream's life.

    `on_change(active)` is called after every change (the subscribers gauge).
    """

    def __init__(
        self, limit: int, on_change: Callable[[int], None] = lambda active: None, per_owner: int | None = None
    ) -> None:
        self._limit = limit
        self._per_owner = per_owner or limit
        self._active = 0
        self._by_owner: dict[str, int] = {}
        self._lock = threading.Lock()
        self._on_change = on_change

    @property
    def active(self) -> int:
        return self._active

    @property
    def limit(self) -> int:
        return self._limit

    @contextmanager
    def hold(self, owner: str = "") -> Iterator[None]:
        """Holds one slot for the body; RESOURCE_EXHAUSTED when all are taken or `owner` holds its share."""
        with self._lock:
            if self._active >= self._limit:
                raise ResourceExhausted(
                    f"all {self._limit} subscription slots are taken; retry later or close another "
                    "subscription (setting max_subscriptions)",
                    reason="TOO_MANY_SUBSCRIPTIONS",
                    metadata={"limit": str(self._limit)},
                )
            if self._by_owner.get(owner, 0) >= self._per_owner:
                raise ResourceExhausted(
                    f"{owner!r} already holds {self._per_owner} subscriptions, the most per token "
                    "(setting max_subscriptions_per_token); close one or filter one stream by several miners",
                    reason="TOO_MANY_SUBSCRIPTIONS_FOR_TOKEN",
                    metadata={"limit": str(self._per_owner)},
                )
            self._active += 1
            self._by_owner[owner] = self._by_owner.get(owner, 0) + 1
            active = self._active
        self._on_change(active)
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                left = self._by_owner.pop(owner) - 1
                if left:
                    self._by_owner[owner] = left
                active = self._active
            self._on_change(active)
