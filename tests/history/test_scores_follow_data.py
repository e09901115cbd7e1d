"""Scores follow the data (issue 13, item 5), proven through the real server.

The defects: after an acknowledged import or WriteMetrics, the next PredictFailureRisk or ScoreFleet
answered from the previous window (the feature cache refreshes asynchronously), and imported history
counted as backfill, so nothing was re-scored and subscribers heard nothing. Now a prediction after
an acknowledged write reflects it, and an import that moves a miner's latest window is re-scored and
published once per miner, however many batches it came in.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from mining.analytics.v1alpha1 import (
    fleet_pb2,
    fleet_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
)

from tests.harness import Stack, start_stack
from tests.history.conftest import eventually, train

STEP = timedelta(minutes=5)
HISTORY_HOURS = 36  # enough for the LSTM's window and the 24 h its share channels read


@pytest.fixture(scope="module")
def scored_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own with a tiny LSTM; re-scoring waits 1 s for a burst, so that a prediction
    made right after an acknowledgement comes well before the background refresh."""
    running = start_stack(Path(tmp_path_factory.mktemp("follow")), rescore_interval_ms=1000)
    try:
        train(running, "lstm", seed=3)
        yield running
    finally:
        running.close()


def _grid_now() -> datetime:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=now.minute % 5)


def columns(miner_ids: list[str], start: datetime, end: datetime) -> telemetry_pb2.WriteMetricsRequest:
    """Healthy 5-minute samples of the miners from start to end inclusive, as one columnar batch."""
    columns = telemetry_pb2.MetricColumns()
    moment = start
    while moment <= end:
        step = int((moment - datetime(2026, 1, 1, tzinfo=UTC)) / STEP)
        for miner_id in miner_ids:
            columns.miner_id.append(miner_id)
            columns.timestamp_ms.append(int(moment.timestamp() * 1000))
            columns.hashrate_ths.append(100.0 + (step % 7) * 0.5)
            columns.temperature_c.append(68.0 + (step % 5) * 0.4)
            columns.fan_speed_rpm.append(4400.0)
            columns.power_w.append(3200.0)
            columns.accepted_shares.append(1000 * step)
            columns.rejected_shares.append(step // 50)
        moment += STEP
    return telemetry_pb2.WriteMetricsRequest(columns=columns)


def batches(miner_ids: list[str], start: datetime, end: datetime, count: int) -> list[Any]:
    """start..end split in time into `count` consecutive batches (each moves the latest window)."""
    span = (end - start) / count
    edges = [start + span * i for i in range(count)] + [end + STEP]
    return [
        columns(miner_ids, _on_grid(edges[i], start), _on_grid(edges[i + 1], start) - STEP)
        for i in range(count)
    ]


def _on_grid(moment: datetime, origin: datetime) -> datetime:
    return origin + STEP * -(-(moment - origin) // STEP)


def predict(stack: Stack, miner_id: str) -> scoring_pb2.PredictFailureRiskResponse:
    stub = scoring_pb2_grpc.ScoringServiceStub(stack.channel)
    return stub.PredictFailureRisk(scoring_pb2.PredictFailureRiskRequest(miner_id=miner_id), timeout=60)


def fleet_window_end(stack: Stack, miner_id: str) -> datetime:
    stub = scoring_pb2_grpc.ScoringServiceStub(stack.channel)
    reply = stub.ScoreFleet(scoring_pb2.ScoreFleetRequest(miner_ids=[miner_id]), timeout=60)
    assert [s.miner_id for s in reply.scores] == [miner_id]
    return reply.scores[0].window_end.ToDatetime(UTC)


def risk_points(stack: Stack, miner_id: str) -> list[dict[str, Any]]:
    reply = stack.rest("GET", f"/api/advanced/miners/{miner_id}/risk-history")
    assert reply.status == 200, reply.body
    return list(reply.json().get("points", []))


class Subscriber:
    """A gRPC score subscription whose updates are collected in a thread."""

    def __init__(self, stack: Stack) -> None:
        stub = scoring_pb2_grpc.ScoringServiceStub(stack.channel)
        self.stream = stub.SubscribeScores(
            scoring_pb2.SubscribeScoresRequest(heartbeat_seconds=1), timeout=300
        )
        self.events: list[scoring_pb2.ScoreEvent] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        eventually(lambda: bool(self.events), timeout=30, what="the first heartbeat")

    def _read(self) -> None:
        try:
            for event in self.stream:
                self.events.append(event)
        except grpc.RpcError:
            pass

    def updates(self, miner_id: str) -> list[scoring_pb2.MinerScore]:
        return [e.update for e in list(self.events) if e.HasField("update") and e.update.miner_id == miner_id]

    def close(self) -> None:
        self.stream.cancel()
        self._reader.join(10)


def _settled(stack: Stack, subscriber: Subscriber) -> None:
    """Waits until the re-scorer has run a round after everything before: a live sample of a demo
    miner is written and its update heard (rounds run one after another)."""
    sentinel = "192.168.1.102"
    fleet = fleet_pb2_grpc.FleetServiceStub(stack.channel)
    last_seen = fleet.GetMiner(fleet_pb2.GetMinerRequest(miner_id=sentinel), timeout=60).last_seen
    moment = last_seen.ToDatetime(UTC) + timedelta(minutes=1)
    before = len(subscriber.updates(sentinel))
    telemetry_pb2_grpc.TelemetryServiceStub(stack.channel).WriteMetrics(
        columns([sentinel], moment, moment), timeout=60
    )
    eventually(lambda: len(subscriber.updates(sentinel)) > before, timeout=60, what="the sentinel's update")


def test_a_prediction_right_after_an_acknowledged_import_reflects_it(scored_stack: Stack) -> None:
    stack = scored_stack
    miner_id = "10.77.0.1"
    telemetry = telemetry_pb2_grpc.TelemetryServiceStub(stack.channel)
    end = _grid_now() - timedelta(hours=8)  # imported history, older than the backfill age
    telemetry.WriteMetrics(columns([miner_id], end - timedelta(hours=HISTORY_HOURS), end), timeout=60)
    assert predict(stack, miner_id).window_end.ToDatetime(UTC) == end
    for hour in range(1, 6):  # hourly imports, each asked about at once
        newest = end + timedelta(hours=hour)
        telemetry.WriteMetrics(columns([miner_id], newest - timedelta(minutes=55), newest), timeout=60)
        answer = predict(stack, miner_id)
        assert answer.window_end.ToDatetime(UTC) == newest, f"import {hour}: the previous window"
        assert fleet_window_end(stack, miner_id) == newest, f"import {hour}: ScoreFleet's previous window"


def test_a_multi_batch_import_stream_is_rescored_and_published_once_per_miner(scored_stack: Stack) -> None:
    stack = scored_stack
    miners = ["10.77.1.1", "10.77.1.2", "10.77.1.3"]
    end = _grid_now() - timedelta(hours=3)
    subscriber = Subscriber(stack)
    try:
        requests = batches(miners, end - timedelta(hours=HISTORY_HOURS), end, count=6)
        stub = telemetry_pb2_grpc.TelemetryServiceStub(stack.channel)
        acks = list(stub.IngestMetrics(iter(requests), timeout=120))
        assert len(acks) == 6 and sum(a.written for a in acks) == sum(
            len(r.columns.miner_id) for r in requests
        )
        for miner_id in miners:
            heard = eventually(
                lambda m=miner_id: subscriber.updates(m) or None, timeout=60, what=f"{miner_id} published"
            )
            assert heard[0].window_end.ToDatetime(UTC) == end
        _settled(stack, subscriber)
        assert {m: len(subscriber.updates(m)) for m in miners} == {m: 1 for m in miners}
    finally:
        subscriber.close()
    for miner_id in miners:  # one re-scoring per miner: one risk point, at the import's newest window
        points = risk_points(stack, miner_id)
        assert [p["time"] for p in points] == [end.strftime("%Y-%m-%dT%H:%M:%SZ")], points


def test_an_import_in_several_write_metrics_calls_is_published_once_per_miner(scored_stack: Stack) -> None:
    stack = scored_stack
    miners = ["10.77.2.1", "10.77.2.2"]
    end = _grid_now() - timedelta(hours=4)
    subscriber = Subscriber(stack)
    try:
        stub = telemetry_pb2_grpc.TelemetryServiceStub(stack.channel)
        for request in batches(miners, end - timedelta(hours=HISTORY_HOURS), end, count=4):
            stub.WriteMetrics(request, timeout=60)
        for miner_id in miners:
            heard = eventually(
                lambda m=miner_id: subscriber.updates(m) or None, timeout=60, what=f"{miner_id} published"
            )
            assert heard[-1].window_end.ToDatetime(UTC) == end
        _settled(stack, subscriber)
        assert {m: len(subscriber.updates(m)) for m in miners} == {m: 1 for m in miners}
    finally:
        subscriber.close()
    for miner_id in miners:
        assert len(risk_points(stack, miner_id)) == 1


def test_an_import_of_older_history_does_not_rescore(scored_stack: Stack) -> None:
    stack = scored_stack
    miner_id = "10.77.3.1"
    end = _grid_now() - timedelta(hours=5)
    stub = telemetry_pb2_grpc.TelemetryServiceStub(stack.channel)
    stub.WriteMetrics(columns([miner_id], end - timedelta(hours=HISTORY_HOURS), end), timeout=60)
    eventually(lambda: risk_points(stack, miner_id) or None, timeout=60, what="the import's one risk point")
    subscriber = Subscriber(stack)
    try:  # history before what the miner has: its latest window does not move
        older = end - timedelta(hours=HISTORY_HOURS + 12)
        stub.WriteMetrics(columns([miner_id], older, older + timedelta(hours=6)), timeout=60)
        _settled(stack, subscriber)
        assert subscriber.updates(miner_id) == []
    finally:
        subscriber.close()
    assert len(risk_points(stack, miner_id)) == 1
