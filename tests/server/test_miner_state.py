"""Down is not CRITICAL forever: ScoreFleet and ListMiners show a miner with an open failure, an
ongoing outage, or no telemetry for longer than the silence setting (--outage-after-minutes, behind
the fleet's newest sample) as DOWN or STALE, after every live miner, its last risk kept for
reference; a miner back from a repair with less than one window of history since says RECOVERING."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf import timestamp_pb2
from mining.analytics.v1alpha1 import (
    common_pb2,
    fleet_pb2,
    fleet_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
)

from tests.conftest import wait_for_job
from tests.harness import Stack, start_stack

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
NOW = NOW - timedelta(minutes=NOW.minute % 5)
LIVE, DOWN, STALE, RECOVERING = (
    common_pb2.MINER_STATE_LIVE,
    common_pb2.MINER_STATE_DOWN,
    common_pb2.MINER_STATE_STALE,
    common_pb2.MINER_STATE_RECOVERING,
)

OURS = {"10.15.0.1": LIVE, "10.15.0.2": STALE, "10.15.0.3": DOWN, "10.15.0.4": DOWN, "10.15.0.5": RECOVERING}


def stamp(ts: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(ts)
    return out


def history(
    miner_id: str, start: datetime, end: datetime, **fields: float
) -> list[telemetry_pb2.MetricSample]:
    """5-minute samples of a healthy S19 Pro-class miner in [start, end]; fields override."""
    values = {"hashrate_ths": 104.0, "temperature_c": 70.0, "fan_speed_rpm": 5000.0, "power_w": 3250.0}
    values.update(fields)
    samples = []
    step, ts = 0, start
    while ts <= end:
        samples.append(
            telemetry_pb2.MetricSample(
                miner_id=miner_id,
                timestamp=stamp(ts),
                hardware_model="Antminer S19 Pro",
                accepted_shares=1000 * (step + 1),
                rejected_shares=step,
                **values,
            )
        )
        step, ts = step + 1, ts + timedelta(minutes=5)
    return samples


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A small demo fleet with a tiny LSTM, plus five miners of our own in each state."""
    running = start_stack(
        Path(tmp_path_factory.mktemp("miner-state")), outage_scan_interval_s=0, retention_interval_s=0
    )
    try:
        reply = running.rest("POST", "/api/advanced/train/lstm", {"epochs": 2, "seed": 5})
        assert reply.status == 200, reply.body
        wait_for_job(running, reply.json()["job_id"])
        telemetry = telemetry_pb2_grpc.TelemetryServiceStub(running.channel)
        start = NOW - timedelta(hours=6)
        samples = [
            *history("10.15.0.1", start, NOW),  # live
            *history("10.15.0.2", start, NOW - timedelta(hours=2)),  # silent for 2 h: stale
            *history("10.15.0.3", start, NOW),  # a failure recorded now: down
            *history("10.15.0.4", start, NOW - timedelta(hours=1)),  # zero hashrate for the last hour
            *history("10.15.0.4", NOW - timedelta(minutes=55), NOW, hashrate_ths=0.0),
            *history("10.15.0.5", start, NOW - timedelta(hours=2)),  # repaired 80 min ago
            *history("10.15.0.5", NOW - timedelta(minutes=80), NOW),
        ]
        telemetry.WriteMetrics(telemetry_pb2.WriteMetricsRequest(samples=samples))
        for miner_id, occurred, repaired in (
            ("10.15.0.3", NOW - timedelta(minutes=5), None),
            ("10.15.0.5", NOW - timedelta(hours=2), NOW - timedelta(minutes=80)),
        ):
            request = telemetry_pb2.RecordFailureRequest(
                miner_id=miner_id, occurred_at=stamp(occurred), mode=common_pb2.FAILURE_MODE_PSU
            )
            if repaired is not None:
                request.repaired_at.CopyFrom(stamp(repaired))
            telemetry.RecordFailure(request)
        # The feature cache takes the new miners in shortly after the write is acknowledged.
        scoring = scoring_pb2_grpc.ScoringServiceStub(running.channel)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            scored = scoring.ScoreFleet(scoring_pb2.ScoreFleetRequest(top_k=1000)).scores
            if {s.miner_id for s in scored} >= set(OURS):
                break
            time.sleep(0.1)
        yield running
    finally:
        running.close()


def test_score_fleet_ranks_live_miners_first_and_shows_down_and_stale_ones_as_such(fleet: Stack) -> None:
    scoring = scoring_pb2_grpc.ScoringServiceStub(fleet.channel)
    reply = scoring.ScoreFleet(scoring_pb2.ScoreFleetRequest(top_k=1000))
    states = {s.miner_id: s.state for s in reply.scores}
    assert {m: states.get(m) for m in OURS} == OURS
    ranked = [s.state == LIVE for s in reply.scores]
    assert ranked == sorted(ranked, reverse=True)  # every live miner before any other
    live = [s.risk_score for s in reply.scores if s.state == LIVE]
    assert live == sorted(live, reverse=True)
    by_id = {s.miner_id: s for s in reply.scores}
    down = by_id["10.15.0.3"]
    assert down.risk_level != common_pb2.RISK_LEVEL_UNSPECIFIED  # its last risk, for reference
    assert "PSU" in down.state_reason and down.state_since.ToDatetime(UTC) == NOW - timedelta(minutes=5)
    assert by_id["10.15.0.2"].state_since.ToDatetime(UTC) == NOW - timedelta(hours=2)  # last seen
    assert "enough history" in by_id["10.15.0.5"].state_reason


def test_list_miners_shows_the_same_states_after_the_live_miners(fleet: Stack) -> None:
    scoring_pb2_grpc.ScoringServiceStub(fleet.channel).ScoreFleet(scoring_pb2.ScoreFleetRequest())
    fleet_stub = fleet_pb2_grpc.FleetServiceStub(fleet.channel)
    miners, token = [], ""
    while True:  # small pages: the page token keeps the order across states
        page = fleet_stub.ListMiners(fleet_pb2.ListMinersRequest(page_size=3, page_token=token))
        miners.extend(page.miners)
        token = page.next_page_token
        if not token:
            break
    assert len(miners) == len({m.miner_id for m in miners}) == page.total
    assert {m.miner_id: m.state for m in miners if m.miner_id in OURS} == OURS
    ranked = [m.state == LIVE for m in miners]
    assert ranked == sorted(ranked, reverse=True)
    body = fleet.rest("GET", "/api/advanced/miners/10.15.0.2").json()
    assert (body["state"], body["risk_level"] != "RISK_LEVEL_UNSPECIFIED") == ("MINER_STATE_STALE", True)
    assert "no telemetry" in body["state_reason"]
