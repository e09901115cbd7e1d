"""SubscribeScores end to end: telemetry lands, the miner is re-scored, subscribers hear of it."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from datetime import timedelta

import grpc
from mining.analytics.v1alpha1 import (
    fleet_pb2,
    fleet_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
)

from tests.harness import Stack


def newest_sample(stack: Stack, miner_id: str) -> fleet_pb2.Miner:
    return fleet_pb2_grpc.FleetServiceStub(stack.channel).GetMiner(
        fleet_pb2.GetMinerRequest(miner_id=miner_id)
    )


def write_next_sample(stack: Stack, miner_id: str, hours_after: float = 0.0) -> None:
    miner = newest_sample(stack, miner_id)
    sample = telemetry_pb2.MetricSample(
        miner_id=miner_id,
        hashrate_ths=100.0,
        temperature_c=70.0,
        fan_speed_rpm=4500.0,
        power_w=3200.0,
        accepted_shares=10,
        rejected_shares=0,
    )
    sample.timestamp.FromDatetime(miner.last_seen.ToDatetime() + timedelta(minutes=1, hours=hours_after))
    telemetry_pb2_grpc.TelemetryServiceStub(stack.channel).WriteMetrics(
        telemetry_pb2.WriteMetricsRequest(samples=[sample]), timeout=60
    )


def collect(stream: grpc.Future, into: list[scoring_pb2.ScoreEvent], until: int) -> threading.Thread:  # type: ignore[type-arg]
    def run() -> None:
        try:
            for event in stream:  # type: ignore[attr-defined]
                into.append(event)
                if sum(e.HasField("update") for e in into) >= until:
                    return
        except grpc.RpcError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_new_telemetry_pushes_a_score_update_and_resume_replays_it(trained_stack: Stack) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(trained_stack.channel)
    miner_id = "192.168.1.101"
    events: list[scoring_pb2.ScoreEvent] = []
    stream = stub.SubscribeScores(
        scoring_pb2.SubscribeScoresRequest(miner_ids=[miner_id], heartbeat_seconds=1), timeout=120
    )
    reader = collect(stream, events, until=2)
    deadline = time.monotonic() + 30
    while not events and time.monotonic() < deadline:  # the first heartbeat proves the stream is open
        time.sleep(0.05)
    for _ in range(2):
        seen = sum(e.HasField("update") for e in events)
        write_next_sample(trained_stack, miner_id)
        while sum(e.HasField("update") for e in events) == seen and time.monotonic() < deadline + 60:
            time.sleep(0.05)
    reader.join(90)
    stream.cancel()
    updates = [e for e in events if e.HasField("update")]
    assert len(updates) == 2, events
    assert all(u.update.miner_id == miner_id for u in updates)
    assert all(0.0 <= u.update.risk_score <= 1.0 for u in updates)
    assert updates[0].sequence < updates[1].sequence
    assert updates[0].update.window_end.ToDatetime() <= updates[1].update.window_end.ToDatetime()
    # Resuming after the first update replays the second one first.
    resumed = stub.SubscribeScores(
        scoring_pb2.SubscribeScoresRequest(miner_ids=[miner_id], after_sequence=updates[0].sequence),
        timeout=30,
    )
    first = next(iter(resumed))
    resumed.cancel()
    assert first.sequence == updates[1].sequence and first.update.miner_id == miner_id


def test_backfill_is_not_announced(trained_stack: Stack) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(trained_stack.channel)
    miner_id = "192.168.1.102"
    events: list[scoring_pb2.ScoreEvent] = []
    stream = stub.SubscribeScores(
        scoring_pb2.SubscribeScoresRequest(miner_ids=[miner_id], heartbeat_seconds=1), timeout=120
    )
    reader = collect(stream, events, until=1)
    while not events:
        time.sleep(0.05)
    write_next_sample(trained_stack, miner_id, hours_after=-200)  # days in the past: a backfill
    time.sleep(2)  # several re-score rounds (200 ms each) pass; nothing may be announced
    stream.cancel()
    reader.join(30)
    assert not [e for e in events if e.HasField("update")]
    assert any(e.HasField("heartbeat") for e in events)


def test_subscription_through_envoy_as_ndjson_and_sse(trained_stack: Stack) -> None:
    for path, content_type, prefix in (
        ("/api/advanced/scores/subscribe?heartbeat_seconds=1", "application/json", b"{"),
        ("/api/advanced/scores/events?heartbeat_seconds=1", "text/event-stream", b"data: "),
    ):
        with urllib.request.urlopen(trained_stack.http_base + path, timeout=30) as reply:
            assert reply.status == 200
            assert reply.headers["content-type"].startswith(content_type)
            line = reply.readline()
            while not line.strip():
                line = reply.readline()
        assert line.startswith(prefix)
        event = json.loads(line[len(prefix) - 1 if prefix == b"{" else len(prefix) :])
        assert "heartbeat" in event and isinstance(event["sequence"], str)


def test_bad_subscription_filter_is_rejected_before_streaming(trained_stack: Stack) -> None:
    reply = trained_stack.rest("GET", "/api/advanced/scores/subscribe?miner_ids=bad%20id")
    assert reply.status == 400
    assert "miner_ids[0]" in reply.json()["message"]
