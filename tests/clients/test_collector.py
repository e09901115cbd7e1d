"""The collector loop: back-off on failing miners (counted in attempts), outage reports, buffering."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clients.collector import Collector, CollectorConfig, MinerTarget, load_targets
from clients.collector.firmware import BoardReading, Firmware, Reading
from clients.collector.sink import to_sample
from tests.clients.conftest import MinerFactory
from tests.clients.fake_miners import FIRMWARE_REPLIES

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class FakeClock:
    """Time moves only when a test says so; monotonic and UTC move together."""

    START = START

    def __init__(self) -> None:
        self.seconds = 0.0

    def advance(self, seconds: float) -> None:
        self.seconds += seconds

    def monotonic(self) -> float:
        return self.seconds

    def utc(self) -> datetime:
        return START + timedelta(seconds=self.seconds)


@dataclass
class RecordingSink:
    readings: list[Reading] = field(default_factory=list)
    outages: list[tuple[str, datetime, str]] = field(default_factory=list)
    fail_writes: int = 0

    async def write(self, readings: Sequence[Reading]) -> None:
        if self.fail_writes:
            self.fail_writes -= 1
            raise ConnectionError("server unavailable")
        self.readings.extend(readings)

    async def report_outage(self, miner_id: str, since: datetime, note: str) -> None:
        self.outages.append((miner_id, since, note))


def config(*targets: str, **options: float) -> CollectorConfig:
    settings: dict[str, float] = {
        "interval_s": 1.0,
        "timeout_s": 0.5,
        "max_backoff_s": 8.0,
        "outage_after_s": 5.0,
    }
    settings.update(options)
    return CollectorConfig(targets=tuple(MinerTarget.parse(t) for t in targets), **settings)  # type: ignore[arg-type]


async def run_rounds(collector: Collector, clock: FakeClock, rounds: int) -> None:
    for _ in range(rounds):
        await collector.poll_round()
        clock.advance(1.0)


async def test_unreachable_miner_backs_off_exponentially_while_healthy_ones_are_polled_every_round(
    fake_miner: MinerFactory,
) -> None:
    healthy = await fake_miner(FIRMWARE_REPLIES["braiins"])
    dead = await fake_miner(mode="close")
    clock, sink = FakeClock(), RecordingSink()
    collector = Collector(config(healthy.target, dead.target), sink, clock=clock)

    await run_rounds(collector, clock, 21)  # t = 0..20

    assert healthy.commands["summary"] == 21
    assert healthy.commands["devdetails"] == 1  # the model is asked once, then remembered
    assert {r.hardware_model for r in sink.readings} == {"Antminer S9"}
    # Retries after 1, 2, 4, 8, 8 (capped) intervals: attempts at t = 0, 1, 3, 7, 15.
    assert dead.connections == 5
    assert [r.miner_id for r in sink.readings] == [healthy.target] * 21


async def test_outage_is_reported_once_and_rearmed_after_recovery(fake_miner: MinerFactory) -> None:
    miner = await fake_miner(FIRMWARE_REPLIES["antminer_s19"], mode="close")
    clock, sink = FakeClock(), RecordingSink()
    collector = Collector(config(miner.target, max_backoff_s=2.0), sink, clock=clock)

    await run_rounds(collector, clock, 12)  # down since t=0, outage_after 5 s
    assert len(sink.outages) == 1
    miner_id, since, note = sink.outages[0]
    assert (miner_id, since) == (miner.target, START)
    assert f"no answer from {miner.target}" in note and "connection closed without a reply" in note

    miner.mode = "answer"
    clock.advance(2.0)  # past any back-off
    await run_rounds(collector, clock, 2)
    assert len(sink.readings) == 2 and len(sink.outages) == 1

    miner.mode = "close"
    await run_rounds(collector, clock, 10)
    assert len(sink.outages) == 2  # a new outage, reported once more
    assert sink.outages[1][1] > START


async def test_malformed_miner_is_backed_off_without_an_outage(fake_miner: MinerFactory) -> None:
    garbage = await fake_miner({"summary": b"<html>Bad Gateway</html>"})
    hung = await fake_miner(mode="hang")
    good = await fake_miner(FIRMWARE_REPLIES["whatsminer"])
    clock, sink = FakeClock(), RecordingSink()
    collector = Collector(config(garbage.target, hung.target, good.target, timeout_s=0.2), sink, clock=clock)

    await run_rounds(collector, clock, 8)  # t = 0..7: attempts at 0, 1, 3, 7

    assert garbage.connections == 4 and hung.connections == 4
    assert len(sink.readings) == 8
    assert [o[0] for o in sink.outages] == [hung.target]  # garbage answers, so it is not an outage
    states = {state.target.miner_id: state for state in collector.miners}
    assert "invalid JSON" in states[garbage.target].last_error
    assert "no reply within 0.2 s" in states[hung.target].last_error


async def test_readings_are_kept_while_the_server_is_down_and_sent_later(fake_miner: MinerFactory) -> None:
    miner = await fake_miner(FIRMWARE_REPLIES["braiins"])
    clock, sink = FakeClock(), RecordingSink(fail_writes=2)
    collector = Collector(config(miner.target), sink, clock=clock)

    await run_rounds(collector, clock, 2)
    assert sink.readings == [] and collector.pending == 2
    await run_rounds(collector, clock, 1)
    assert [r.timestamp for r in sink.readings] == [
        START,
        START + timedelta(seconds=1),
        START + timedelta(seconds=2),
    ]
    assert collector.pending == 0


async def test_run_stops_when_asked(fake_miner: MinerFactory) -> None:
    miner = await fake_miner(FIRMWARE_REPLIES["antminer_s9"])
    sink = RecordingSink()
    collector = Collector(config(miner.target, interval_s=0.05), sink)
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))
    async with asyncio.timeout(30):
        while len(sink.readings) < 3:
            await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert all(r.firmware is Firmware.ANTMINER for r in sink.readings)


def test_targets_parse_host_port_and_files(tmp_path: Path) -> None:
    assert MinerTarget.parse("10.0.0.7") == MinerTarget("10.0.0.7", 4028)
    assert MinerTarget.parse("10.0.0.7:14028").miner_id == "10.0.0.7:14028"
    assert MinerTarget.parse("[fd00::7]:4028") == MinerTarget("fd00::7", 4028)
    assert MinerTarget.parse("10.0.0.7").miner_id == "10.0.0.7"
    listing = tmp_path / "miners.txt"
    listing.write_text("# row 3\n10.0.3.1\n\n10.0.3.2:4029  # spare\n")
    assert load_targets(listing) == [MinerTarget("10.0.3.1"), MinerTarget("10.0.3.2", 4029)]
    with pytest.raises(ValueError, match="port 'x' is not a number"):
        MinerTarget.parse("10.0.0.7:x")
    with pytest.raises(ValueError, match="no miners to poll"):
        CollectorConfig(targets=())


def test_sample_keeps_missing_readings_unset() -> None:
    reading = Reading(
        miner_id="10.0.0.7",
        timestamp=START,
        firmware=Firmware.ANTMINER,
        hashrate_ths=13.5,
        accepted_shares=0,
        boards=[BoardReading(0, 4.5, None, 71.0)],
        fan_speeds_rpm=[5880.0, 0.0],
    )
    sample = to_sample(reading)
    assert sample.hashrate_ths == 13.5 and sample.HasField("accepted_shares") and sample.accepted_shares == 0
    assert not sample.HasField("power_w") and not sample.HasField("temperature_c")
    assert sample.timestamp.ToDatetime(tzinfo=UTC) == START
    assert not sample.boards[0].HasField("temperature_c") and sample.boards[0].chip_temperature_c == 71.0
    assert list(sample.fan_speeds_rpm) == [5880.0, 0.0]
