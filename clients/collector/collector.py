"""Polls miners on an interval and hands their readings to a sink (the server, in production).

Each round polls every miner that is due, at most `concurrency` at a time. A miner that fails
(unreachable, malformed reply) is retried after interval * 2**(failures - 1) seconds, capped at
`max_backoff_s`, so a dead rack costs one connection attempt per back-off period instead of one
per round. A miner unreachable for `outage_after_s` is reported once as an outage; the report is
re-armed when it answers again. Nothing a miner sends can stop the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from clients.collector import cgminer
from clients.collector.firmware import (
    EXTRA_COMMANDS,
    MODEL_COMMANDS,
    Firmware,
    Reading,
    detect_firmware,
    parse_model,
    parse_reading,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MinerTarget:
    """A miner's API address. The miner id is the host, plus the port when it is not 4028."""

    host: str
    port: int = cgminer.DEFAULT_PORT

    @property
    def miner_id(self) -> str:
        return self.host if self.port == cgminer.DEFAULT_PORT else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> MinerTarget:
        """ "host", "host:port", "[v6addr]" or "[v6addr]:port"."""
        text = text.strip()
        host, port = text, cgminer.DEFAULT_PORT
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest:
                port = _port(rest.removeprefix(":"), text)
        elif text.count(":") == 1:
            host, port_text = text.split(":")
            port = _port(port_text, text)
        if not host:
            raise ValueError(f"miner target {text!r}: empty host; expected host[:port]")
        return cls(host, port)


def _port(text: str, target: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"miner target {target!r}: port {text!r} is not a number in 1..65535")
    return int(text)


def load_targets(path: Path) -> list[MinerTarget]:
    """Targets from a file: one host[:port] per line; blank lines and `#` comments are skipped."""
    targets = []
    for line in path.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            targets.append(MinerTarget.parse(entry))
    return targets


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    targets: tuple[MinerTarget, ...]
    interval_s: float = 60.0
    """Seconds between polls of a healthy miner."""
    timeout_s: float = 5.0
    """Seconds one API command may take (connect, send, read)."""
    concurrency: int = 32
    """Miners polled at the same time."""
    max_backoff_s: float = 600.0
    """Longest wait before retrying a failing miner."""
    outage_after_s: float = 600.0
    """Unreachable this long: report an outage (FAILURE_MODE_OUTAGE), once per outage."""
    buffer_limit: int = 10_000
    """Readings kept while the server is unreachable; the oldest are dropped beyond this."""

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError("targets: no miners to poll; give host[:port] targets or a targets file")
        for name in ("interval_s", "timeout_s", "max_backoff_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: {getattr(self, name)} must be positive")
        if self.concurrency < 1:
            raise ValueError(f"concurrency: {self.concurrency} must be >= 1")
        if self.outage_after_s < 0:
            raise ValueError(f"outage_after_s: {self.outage_after_s} must be >= 0")


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def utc(self) -> datetime: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def utc(self) -> datetime:
        return datetime.now(UTC)


class Sink(Protocol):
    """Where readings and outages go."""

    async def write(self, readings: Sequence[Reading]) -> None: ...

    async def report_outage(self, miner_id: str, since: datetime, note: str) -> None: ...


@dataclass(slots=True)
class MinerState:
    target: MinerTarget
    failures: int = 0
    next_attempt: float = 0.0  # monotonic seconds
    down_since: datetime | None = None  # UTC of the first unanswered poll of the current outage
    outage_reported: bool = False
    last_error: str = ""
    attempts: int = field(default=0)
    hardware_model: str = ""  # learnt from the first reading that names it


async def read_miner(
    target: MinerTarget, *, timeout: float, now: datetime, hardware_model: str = ""
) -> Reading:
    """Polls one miner: summary, then the firmware's extra commands. Extra commands that the
    firmware refuses or garbles are skipped (their fields stay missing); an unreachable miner fails.
    A firmware whose readings do not name the model is asked for it unless `hardware_model` (what
    an earlier poll learnt) is given."""
    summary = await cgminer.query(target.host, target.port, "summary", timeout=timeout)
    firmware = detect_firmware(summary)
    extra = {}
    for command in EXTRA_COMMANDS[firmware]:
        try:
            extra[command] = await cgminer.query(target.host, target.port, command, timeout=timeout)
        except (cgminer.CommandFailed, cgminer.MalformedReply) as exc:
            log.warning("%s: skipping %s: %s", target, command, exc.message)
    reading = parse_reading(target.miner_id, now, summary, extra)
    if not reading.hardware_model:
        reading.hardware_model = hardware_model or await read_model(target, firmware, timeout=timeout)
    return reading


async def read_model(target: MinerTarget, firmware: Firmware, *, timeout: float) -> str:
    """The hardware model from the firmware's own replies (MODEL_COMMANDS), or "" when none names it."""
    for command in MODEL_COMMANDS[firmware]:
        try:
            reply = await cgminer.query(target.host, target.port, command, timeout=timeout)
        except (cgminer.CommandFailed, cgminer.MalformedReply) as exc:
            log.info("%s: %s names no model: %s", target, command, exc.message)
            continue
        model = parse_model(firmware, reply)
        if model:
            return model
    return ""


class Collector:
    def __init__(self, config: CollectorConfig, sink: Sink, *, clock: Clock | None = None) -> None:
        self.config = config
        self.sink = sink
        self.clock: Clock = clock or SystemClock()
        self.miners = [MinerState(target) for target in config.targets]
        self._pending: deque[Reading] = deque(maxlen=config.buffer_limit)
        self._limit = asyncio.Semaphore(config.concurrency)

    @property
    def pending(self) -> int:
        """Readings waiting to be sent (the sink failed)."""
        return len(self._pending)

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the n-th failure in a row: interval, 2x, 4x ... capped."""
        return min(self.config.max_backoff_s, self.config.interval_s * 2 ** (failures - 1))

    async def poll_round(self) -> list[Reading]:
        """Polls the miners that are due, sends their readings, reports outages; returns the readings."""
        now = self.clock.monotonic()
        due = [state for state in self.miners if state.next_attempt <= now]
        results = await asyncio.gather(*(self._poll(state, now) for state in due))
        readings = [reading for reading in results if reading is not None]
        await self._flush(readings)
        for state in self.miners:  # also those waiting out a back-off
            await self._maybe_report_outage(state)
        return readings

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Polls every interval until `stop` is set."""
        stop = stop or asyncio.Event()
        log.info(
            "collecting from %d miner(s) every %g s (timeout %g s, concurrency %d)",
            len(self.miners),
            self.config.interval_s,
            self.config.timeout_s,
            self.config.concurrency,
        )
        while not stop.is_set():
            started = self.clock.monotonic()
            try:
                await self.poll_round()
            except Exception:  # a bug in a round must not end collection
                log.exception("poll round failed")
            remaining = self.config.interval_s - (self.clock.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, remaining))

    async def _poll(self, state: MinerState, now: float) -> Reading | None:
        async with self._limit:
            state.attempts += 1
            polled_at = self.clock.utc()
            try:
                reading = await read_miner(
                    state.target,
                    timeout=self.config.timeout_s,
                    now=polled_at,
                    hardware_model=state.hardware_model,
                )
            except cgminer.MinerUnreachable as exc:
                if state.down_since is None:
                    state.down_since = polled_at
                self._failed(state, now, exc.message)
                return None
            except cgminer.MinerError as exc:
                self._failed(state, now, exc.message)
                return None
            except Exception as exc:  # a parser bug on one miner's odd reply must not stop the others
                log.exception("%s: unexpected error", state.target)
                self._failed(state, now, f"unexpected {type(exc).__name__}")
                return None
        if state.down_since is not None or state.failures:
            log.info("%s: answering again after %d failed poll(s)", state.target, state.failures)
        state.failures, state.down_since, state.outage_reported, state.last_error = 0, None, False, ""
        state.next_attempt = now + self.config.interval_s
        state.hardware_model = reading.hardware_model or state.hardware_model
        return reading

    def _failed(self, state: MinerState, now: float, error: str) -> None:
        state.failures += 1
        state.last_error = error
        delay = self.backoff(state.failures)
        state.next_attempt = now + delay
        log.warning(
            "%s: %s (failure %d in a row; next try in %g s)", state.target, error, state.failures, delay
        )

    async def _flush(self, readings: list[Reading]) -> None:
        dropped = max(0, len(self._pending) + len(readings) - self.config.buffer_limit)
        if dropped:
            log.warning("server unreachable for a while: dropping the %d oldest buffered reading(s)", dropped)
        self._pending.extend(readings)
        if not self._pending:
            return
        batch = list(self._pending)
        try:
            await self.sink.write(batch)
        except Exception as exc:
            log.warning("could not send %d reading(s), keeping them for the next round: %s", len(batch), exc)
            return
        self._pending.clear()

    async def _maybe_report_outage(self, state: MinerState) -> None:
        if state.down_since is None or state.outage_reported:
            return
        down_for = self.clock.utc() - state.down_since
        if down_for < timedelta(seconds=self.config.outage_after_s):
            return
        note = (
            f"collector: no answer from {state.target} since {state.down_since.isoformat()} "
            f"({state.failures} failed polls; last error: {state.last_error})"
        )
        try:
            await self.sink.report_outage(state.target.miner_id, state.down_since, note)
        except Exception as exc:
            log.warning("%s: could not report the outage, will retry: %s", state.target, exc)
            return
        state.outage_reported = True
        log.error("%s: reported an outage (down since %s)", state.target, state.down_since.isoformat())
