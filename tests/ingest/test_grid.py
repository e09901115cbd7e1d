"""The sample grid at import: conflicting repeats inside one batch are reported, and data coarser than
the scoring grid is refused with the interval it needs, never stored to stay silently unscorable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from mining.analytics.v1alpha1 import telemetry_pb2, telemetry_pb2_grpc

from tests.harness import Stack, start_server, start_stack
from tests.ingest.builders import at, batch, metric, violations
from tests.ingest.conftest import QUIET
from tests.ingest.test_rest import sample_json


@pytest.fixture(scope="module")
def rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(Path(tmp_path_factory.mktemp("grid")), **QUIET)
    yield running
    running.close()


@pytest.fixture(scope="module")
def telemetry(rest: Stack) -> telemetry_pb2_grpc.TelemetryServiceStub:
    return telemetry_pb2_grpc.TelemetryServiceStub(rest.channel)


def test_repeated_time_with_other_values_is_a_conflict_in_the_acknowledgement(rest: Stack) -> None:
    # An hour repeated by a clock change: samples[1] and samples[3] name the same miner and time with
    # different readings; samples[2] repeats samples[0]'s time identically.
    body = {
        "samples": [
            sample_json("10.13.8.1", 0),
            sample_json("10.13.8.1", 1, power_w=3000),
            sample_json("10.13.8.1", 0),
            sample_json("10.13.8.1", 1, power_w=3300, temperature_c=75.0),
            sample_json("10.13.8.1", 2),
        ]
    }
    reply = rest.rest("POST", "/api/advanced/metrics", body)
    assert reply.status == 200, reply.body
    ack = reply.json()
    assert (ack["written"], ack["duplicates"], ack["conflicts"]) == (3, 1, 1)
    (conflict,) = ack["conflict_details"]
    assert conflict["miner_id"] == "10.13.8.1"
    assert conflict["timestamp"] == at(1).isoformat().replace("+00:00", "Z")
    assert conflict["samples"] == ["samples[1]", "samples[3]"]  # the last one is stored
    assert conflict["fields"] == ["temperature_c", "power_w"]
    stored = rest.server.app.store.read_samples("10.13.8.1")
    assert [(s.power_w, s.temperature_c) for s in stored] == [(3200.0, 70.0), (3300.0, 75.0), (3200.0, 70.0)]
    # A clean batch reports none.
    clean = rest.rest("POST", "/api/advanced/metrics", {"samples": [sample_json("10.13.8.1", 3)]}).json()
    assert (clean["conflicts"], clean["conflict_details"]) == (0, [])


def test_conflicts_in_columns_name_the_column_positions(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    ts = [int(at(step).timestamp() * 1000) for step in (0, 0, 1)]
    request = telemetry_pb2.WriteMetricsRequest(
        columns=telemetry_pb2.MetricColumns(
            miner_id=["10.13.8.2"] * 3,
            timestamp_ms=ts,
            hashrate_ths=[100.0, 90.0, 100.0],
            temperature_c=[70.0] * 3,
            fan_speed_rpm=[4000.0] * 3,
            power_w=[3200.0] * 3,
            accepted_shares=[1000, 1000, 2000],
            rejected_shares=[5, 5, 10],
        )
    )
    ack = telemetry.WriteMetrics(request)
    assert (ack.written, ack.duplicates, ack.conflicts) == (2, 0, 1)
    assert list(ack.conflict_details[0].samples) == ["columns.timestamp_ms[0]", "columns.timestamp_ms[1]"]
    assert list(ack.conflict_details[0].fields) == ["hashrate_ths"]


def test_hourly_import_is_refused_naming_the_required_interval(rest: Stack) -> None:
    hourly = {"samples": [sample_json("10.13.8.3", 12 * hour) for hour in range(8)]}
    reply = rest.rest("POST", "/api/advanced/metrics", hourly)
    assert reply.status == 400, reply.body
    error = reply.json()
    assert error["code"] == 3
    assert "samples[0].timestamp" in error["message"]
    assert "60 min apart" in error["message"] and "every 5 min" in error["message"]
    info = next(d for d in error["details"] if d["@type"].endswith("ErrorInfo"))
    assert info["reason"] == "SAMPLES_TOO_SPARSE"
    assert rest.rest("GET", "/api/advanced/miners/10.13.8.3").status == 404  # nothing of it stored


def test_hourly_samples_sent_one_by_one_are_refused_once_their_spacing_shows(
    rest: Stack, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    # A collector that sends one hourly reading per batch: the first three cannot show a spacing
    # (an hour's gap may be an outage); the fourth makes three hourly gaps and is refused.
    for hour in range(3):
        assert telemetry.WriteMetrics(batch(metric("10.13.8.4", 12 * hour))).written == 1
    with pytest.raises(grpc.RpcError) as caught:
        telemetry.WriteMetrics(batch(metric("10.13.8.4", 12 * 3)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == ("SAMPLES_TOO_SPARSE", ["samples[0].timestamp"])
    assert "--sample-interval-s" in (caught.value.details() or "")
    assert len(rest.server.app.store.read_samples("10.13.8.4")) == 3


def test_five_minute_data_with_gaps_and_an_outage_is_accepted(
    rest: Stack, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    # Every other slot missing (10 min apart: half the grid, still scorable), then two hours silent,
    # then one sample at a time again: none of it is coarser than the grid.
    steps = [*range(0, 40, 2), *range(64, 70)]
    ack = telemetry.WriteMetrics(batch(*(metric("10.13.8.5", step) for step in steps)))
    assert ack.written == len(steps)
    for step in (100, 101, 102):  # back after a long outage, one sample per batch
        assert telemetry.WriteMetrics(batch(metric("10.13.8.5", step))).written == 1


def test_the_spacing_counts_samples_stored_before_a_restart(tmp_path: Path) -> None:
    # The server remembers the newest sample times it wrote; after a restart it reads them back.
    before = start_server(tmp_path, **QUIET)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{before.port}") as channel:
            stub = telemetry_pb2_grpc.TelemetryServiceStub(channel)
            for hour in range(3):
                assert stub.WriteMetrics(batch(metric("10.13.8.6", 12 * hour))).written == 1
    finally:
        before.stop()
    after = start_server(tmp_path, **QUIET)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{after.port}") as channel:
            stub = telemetry_pb2_grpc.TelemetryServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.WriteMetrics(batch(metric("10.13.8.6", 12 * 3)))
            assert violations(caught.value) == ("SAMPLES_TOO_SPARSE", ["samples[0].timestamp"])
    finally:
        after.stop()
