"""The score hub: filters, resume by sequence, dropped notices, heartbeats and drain."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from server.domain.subscriptions import Dropped, Heartbeat, ScoreFilter, ScoreHub, StreamEnd, Update
from server.records import MinerScore, RiskLevel


def score(miner_id: str, risk: float = 0.1, anomaly: bool = False) -> MinerScore:
    level = RiskLevel.from_score(risk, (0.25, 0.5, 0.75))
    return MinerScore(miner_id, risk, level, datetime.now(UTC), "lstm-test", anomaly, 1.0 if anomaly else 0.0)


async def take(stream, count: int) -> list:  # type: ignore[no-untyped-def]
    return [await asyncio.wait_for(anext(stream), 10) for _ in range(count)]


async def test_filters_select_miners_levels_and_anomalies() -> None:
    hub = ScoreHub()
    stream = hub.subscribe(
        ScoreFilter(frozenset({"a", "b"}), RiskLevel.HIGH, anomalies_only=True),
        after_sequence=0,
        heartbeat_s=30,
    )
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    hub.publish(score("c", 0.9, True))  # other miner
    hub.publish(score("a", 0.3, True))  # below HIGH
    hub.publish(score("b", 0.9, False))  # not anomalous
    hub.publish(score("b", 0.8, True))  # matches
    event = await asyncio.wait_for(first, 10)
    assert isinstance(event, Update) and event.score.miner_id == "b" and event.sequence == 4
    await stream.aclose()
    assert hub.subscribers == 0


async def test_resume_replays_what_was_missed_in_order() -> None:
    hub = ScoreHub()
    for miner in ("a", "b", "c"):
        hub.publish(score(miner))
    stream = hub.subscribe(ScoreFilter(), after_sequence=1, heartbeat_s=30)
    events = await take(stream, 2)
    assert [(e.sequence, e.score.miner_id) for e in events] == [(2, "b"), (3, "c")]
    await stream.aclose()


async def test_resume_beyond_the_replay_log_says_how_much_was_lost() -> None:
    hub = ScoreHub(replay_size=2)
    for miner in ("a", "b", "c", "d"):
        hub.publish(score(miner))
    stream = hub.subscribe(ScoreFilter(), after_sequence=0 + 1, heartbeat_s=30)
    events = await take(stream, 3)
    assert isinstance(events[0], Dropped) and events[0].count == 1  # sequence 2 is gone
    assert [e.sequence for e in events[1:]] == [3, 4]
    await stream.aclose()


async def test_a_slow_subscriber_gets_a_dropped_notice_and_never_blocks_publishing() -> None:
    hub = ScoreHub(queue_size=2)
    stream = hub.subscribe(ScoreFilter(), after_sequence=0, heartbeat_s=30)
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    hub.publish(score("a"))
    assert isinstance(await asyncio.wait_for(first, 10), Update)
    for i in range(10):  # publishing never waits for the reader
        hub.publish(score(f"m{i}"))
    events = await take(stream, 3)
    assert isinstance(events[0], Dropped) and events[0].count == 8
    assert [e.score.miner_id for e in events[1:]] == ["m0", "m1"]
    await stream.aclose()


async def test_heartbeat_when_nothing_happens() -> None:
    hub = ScoreHub()
    stream = hub.subscribe(ScoreFilter(), after_sequence=0, heartbeat_s=0.05)
    (event,) = await take(stream, 1)
    assert isinstance(event, Heartbeat)
    await stream.aclose()


async def test_close_all_ends_streams_with_an_in_band_message() -> None:
    hub = ScoreHub()
    stream = hub.subscribe(ScoreFilter(), after_sequence=0, heartbeat_s=30)
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    hub.close_all("draining")
    event = await asyncio.wait_for(pending, 10)
    assert isinstance(event, StreamEnd) and event.message == "draining"
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
