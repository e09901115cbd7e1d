"""Score subscriptions: fan-out of score updates to subscribers, with resume, heartbeats and drops.

Each update gets an increasing sequence number and is kept in a bounded replay log, so a client can
resume after the last sequence it saw. Each subscriber has a bounded queue: a slow subscriber loses
updates (and is told how many, in-band) but never blocks ingestion or other subscribers.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from server.records import MinerScore, RiskLevel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScoreFilter:
    miner_ids: frozenset[str] = frozenset()
    min_risk_level: RiskLevel = RiskLevel.UNSPECIFIED
    anomalies_only: bool = False
    allowed: frozenset[str] | None = None  # a scoped caller's visible miners; None = all

    def matches(self, score: MinerScore) -> bool:
        if self.allowed is not None and score.miner_id not in self.allowed:
            return False
        if self.miner_ids and score.miner_id not in self.miner_ids:
            return False
        if self.min_risk_level and score.risk_level < self.min_risk_level:
            return False
        return not (self.anomalies_only and not score.is_anomaly)


@dataclass(frozen=True, slots=True)
class Update:
    sequence: int
    score: MinerScore


@dataclass(frozen=True, slots=True)
class Heartbeat:
    sequence: int
    time: datetime


@dataclass(frozen=True, slots=True)
class Dropped:
    sequence: int
    count: int


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The stream ends with this error (the server is draining)."""

    sequence: int
    message: str


Event = Update | Heartbeat | Dropped | StreamEnd


@dataclass(eq=False)
class _Subscriber:
    filter: ScoreFilter
    queue: asyncio.Queue[Update | StreamEnd]
    dropped: int = 0
    closed: bool = field(default=False)


class ScoreHub:
    """Publishes score updates to subscribers. Use from the event loop."""

    def __init__(self, *, queue_size: int = 256, replay_size: int = 10_000) -> None:
        self._queue_size = queue_size
        self._replay: collections.deque[Update] = collections.deque(maxlen=replay_size)
        self._sequence = itertools.count(1)
        self._last = 0
        self._subscribers: set[_Subscriber] = set()
        self.published = 0

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, score: MinerScore) -> None:
        self._last = next(self._sequence)
        update = Update(self._last, score)
        self._replay.append(update)
        self.published += 1
        for subscriber in self._subscribers:
            if not subscriber.filter.matches(score):
                continue
            try:
                subscriber.queue.put_nowait(update)
            except asyncio.QueueFull:
                subscriber.dropped += 1

    def close_all(self, message: str) -> None:
        """Ends every stream with an in-band error (before the server stops)."""
        for subscriber in list(self._subscribers):
            subscriber.closed = True
            # Make room for the end marker: a slow subscriber loses updates, not the goodbye.
            while subscriber.queue.full():
                subscriber.queue.get_nowait()
                subscriber.dropped += 1
            subscriber.queue.put_nowait(StreamEnd(self._last, message))

    async def subscribe(
        self, score_filter: ScoreFilter, *, after_sequence: int, heartbeat_s: float
    ) -> AsyncIterator[Event]:
        subscriber = _Subscriber(score_filter, asyncio.Queue(self._queue_size))
        self._subscribers.add(subscriber)
        try:
            if after_sequence:
                for event in self._replay_after(after_sequence, score_filter):
                    yield event
            while True:
                if subscriber.dropped:
                    count, subscriber.dropped = subscriber.dropped, 0
                    yield Dropped(self._last, count)
                try:
                    item = await asyncio.wait_for(subscriber.queue.get(), heartbeat_s)
                except TimeoutError:
                    yield Heartbeat(self._last, datetime.now(UTC))
                    continue
                if isinstance(item, StreamEnd):
                    if subscriber.dropped:
                        yield Dropped(self._last, subscriber.dropped)
                    yield item
                    return
                yield item
        finally:
            self._subscribers.discard(subscriber)

    def _replay_after(self, after: int, score_filter: ScoreFilter) -> list[Event]:
        events: list[Event] = []
        oldest = self._replay[0].sequence if self._replay else self._last + 1
        if after + 1 < oldest:
            # Part of what the client missed is no longer kept: say how much.
            events.append(Dropped(self._last, oldest - after - 1))
        events.extend(u for u in self._replay if u.sequence > after and score_filter.matches(u.score))
        return events
