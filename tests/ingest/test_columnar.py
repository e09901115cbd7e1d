"""The columnar fast path of WriteMetrics (MetricColumns): the row path's rules and write semantics,
with bad values named `columns.<field>[i]`, NaN and -1 read as missing, duplicates counted."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from mining.analytics.v1alpha1 import telemetry_pb2, telemetry_pb2_grpc

from server.records import Miner
from server.store import QUALITY_PARTIAL, QUALITY_SENSOR_GLITCH
from tests.harness import ServerThread, start_server
from tests.ingest.builders import at, batch, metric, violations
from tests.ingest.conftest import QUIET

NAN = float("nan")


def columns(miner_ids: list[str], steps: list[int], **fields: list[Any]) -> telemetry_pb2.WriteMetricsRequest:
    """A columns-only batch of healthy readings at grid steps; fields replace whole columns."""
    n = len(miner_ids)
    values: dict[str, list[Any]] = {
        "hashrate_ths": [100.0] * n,
        "temperature_c": [70.0] * n,
        "fan_speed_rpm": [4000.0] * n,
        "power_w": [3200.0] * n,
        "accepted_shares": [1000 * (s + 1) for s in steps],
        "rejected_shares": [5 * (s + 1) for s in steps],
    }
    values.update(fields)
    return telemetry_pb2.WriteMetricsRequest(
        columns=telemetry_pb2.MetricColumns(
            miner_id=miner_ids,
            timestamp_ms=[int(at(s).timestamp() * 1000) for s in steps],
            **values,
        )
    )


def test_columns_round_trip_like_rows(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    # 150 C is possible but implausible: stored, flagged.
    ack = telemetry.WriteMetrics(
        columns(["10.5.0.1", "10.5.0.1", "10.5.0.2"], [0, 1, 0], temperature_c=[70.0, 150.0, 71.5])
    )
    assert (ack.written, ack.duplicates, ack.miners_registered) == (3, 0, 2)
    # The same readings through the row path store the same rows.
    telemetry.WriteMetrics(batch(metric("10.5.0.9", 0), metric("10.5.0.9", 1, temperature_c=150.0)))
    by_columns = server.app.store.read_samples("10.5.0.1")
    by_rows = server.app.store.read_samples("10.5.0.9")
    strip = [(s.timestamp, s.hashrate_ths, s.temperature_c, s.fan_speed_rpm, s.power_w) for s in by_rows]
    assert [
        (s.timestamp, s.hashrate_ths, s.temperature_c, s.fan_speed_rpm, s.power_w) for s in by_columns
    ] == strip
    assert [(s.accepted_shares, s.rejected_shares, s.quality) for s in by_columns] == [
        (s.accepted_shares, s.rejected_shares, s.quality) for s in by_rows
    ]
    assert [s.quality for s in by_columns] == [0, QUALITY_SENSOR_GLITCH]
    assert server.app.store.read_samples("10.5.0.2")[0].temperature_c == 71.5


def test_bad_value_rejects_the_batch_with_its_column_index(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    request = columns(
        ["10.5.1.1", "10.5.1.1", "10.5.1.1", "bad id!"],
        [0, 1, 2, 3],
        temperature_c=[70.0, 70.0, -300.0, 70.0],
        rejected_shares=[5, -2, 15, 20],
    )
    with pytest.raises(grpc.RpcError) as caught:
        telemetry.WriteMetrics(request)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(
        "3 invalid field(s): columns.rejected_shares[1]: must be >= 0 (a cumulative counter), got -2; "
        "columns.temperature_c[2]: -300.0 is outside the possible range [-60, 200]"
    )
    assert violations(error) == (
        "INVALID_SAMPLES",
        ["columns.rejected_shares[1]", "columns.temperature_c[2]", "columns.miner_id[3]"],
    )
    assert server.app.store.get_miner("10.5.1.1") is None  # nothing written, nobody registered


def test_infinite_and_future_values_are_named_by_index(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    request = columns(["10.5.2.1", "10.5.2.1"], [0, 1], power_w=[math.inf, 3200.0])
    request.columns.timestamp_ms[1] = 4_000_000_000_000  # year 2096
    with pytest.raises(grpc.RpcError) as caught:
        telemetry.WriteMetrics(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "columns.power_w[0]: must be a finite number, got inf" in caught.value.details()
    assert "columns.timestamp_ms[1]: 2096-10-02T07:06:40+00:00 is in the future" in caught.value.details()


def test_nan_and_minus_one_counters_are_missing(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    ack = telemetry.WriteMetrics(
        columns(
            ["10.5.3.1", "10.5.3.1"],
            [0, 1],
            hashrate_ths=[NAN, 101.0],
            accepted_shares=[1000, -1],
            rejected_shares=[-1, 10],
        )
    )
    assert ack.written == 2
    first, second = server.app.store.read_samples("10.5.3.1")
    assert (first.hashrate_ths, first.accepted_shares, first.rejected_shares) == (None, 1000, None)
    assert (second.hashrate_ths, second.accepted_shares, second.rejected_shares) == (101.0, None, 10)
    assert first.quality == second.quality == QUALITY_PARTIAL


def test_absent_columns_are_missing_and_a_short_column_is_refused(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    request = telemetry_pb2.WriteMetricsRequest(
        columns=telemetry_pb2.MetricColumns(
            miner_id=["10.5.4.1"], timestamp_ms=[int(at(0).timestamp() * 1000)], hashrate_ths=[90.0]
        )
    )
    assert telemetry.WriteMetrics(request).written == 1
    stored = server.app.store.read_samples("10.5.4.1")[0]
    assert (stored.hashrate_ths, stored.temperature_c, stored.accepted_shares) == (90.0, None, None)
    request.columns.power_w.extend([1.0, 2.0])
    with pytest.raises(grpc.RpcError) as caught:
        telemetry.WriteMetrics(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("columns.power_w: has 2 values, miner_id has 1")


def test_resent_columns_count_as_duplicates_and_last_write_wins(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    request = columns(["10.5.5.1"] * 3, [0, 1, 2])
    assert telemetry.WriteMetrics(request).written == 3
    again = telemetry.WriteMetrics(request)
    assert (again.written, again.duplicates, again.miners_registered) == (0, 3, 0)
    # One changed row replaces the stored one; a key repeated inside the batch with other values keeps
    # its last row and counts the earlier one as a conflict.
    changed = columns(["10.5.5.1"] * 3, [0, 1, 1], power_w=[3200.0, 3000.0, 3100.0])
    ack = telemetry.WriteMetrics(changed)
    assert (ack.written, ack.duplicates, ack.conflicts) == (1, 1, 1)
    assert [s.power_w for s in server.app.store.read_samples("10.5.5.1")] == [3200.0, 3100.0, 3200.0]


def test_hashrate_above_three_times_nominal_is_flagged(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    server.app.store.upsert_miners([Miner("10.5.6.1", "Antminer S19 Pro", nominal_hashrate_ths=110.0)])
    telemetry.WriteMetrics(columns(["10.5.6.1"] * 2, [0, 1], hashrate_ths=[400.0, 300.0]))
    assert [s.quality for s in server.app.store.read_samples("10.5.6.1")] == [QUALITY_SENSOR_GLITCH, 0]


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, Any]]:
    """Auto-registration off."""
    running = start_server(
        Path(tmp_path_factory.mktemp("strict-columns")), auto_register_miners=False, **QUIET
    )
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield running, telemetry_pb2_grpc.TelemetryServiceStub(channel)
    running.stop()


def test_unknown_miners_without_auto_registration_are_listed_by_index(
    strict: tuple[ServerThread, telemetry_pb2_grpc.TelemetryServiceStub],
) -> None:
    server, telemetry = strict
    server.app.store.upsert_miners([Miner("10.5.7.1", "Antminer S19 Pro")])
    with pytest.raises(grpc.RpcError) as caught:
        telemetry.WriteMetrics(columns(["10.5.7.1", "10.5.7.9", "10.5.7.1", "10.5.7.9"], [0, 0, 1, 1]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown miner '10.5.7.9' and auto-registration is off" in caught.value.details()
    assert violations(caught.value) == ("INVALID_SAMPLES", ["columns.miner_id[1]", "columns.miner_id[3]"])
    assert server.app.store.read_samples("10.5.7.1") == []


def test_a_batch_of_rows_and_columns_names_each_bad_value_where_it_was_sent(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    # One pipeline for both forms: a row's field is samples[i].<field>, a column's columns.<field>[j]
    # (before, a mixed batch named its column samples as rows past the last row).
    request = columns(["10.5.8.1", "10.5.8.1"], [2, 3], power_w=[3200.0, -5.0])
    request.samples.extend([metric("10.5.8.1", 0), metric("10.5.8.1", 1, temperature_c=-300.0)])
    with pytest.raises(grpc.RpcError) as caught:
        telemetry.WriteMetrics(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == ("INVALID_SAMPLES", ["samples[1].temperature_c", "columns.power_w[1]"])
    assert server.app.store.get_miner("10.5.8.1") is None


def test_a_batch_of_rows_and_columns_stores_both_with_the_rows_extras(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    request = columns(["10.5.9.1", "10.5.9.2"], [1, 0], accepted_shares=[-1, 7])
    request.samples.append(
        metric(
            "10.5.9.1",
            0,
            fan_speeds_rpm=[4000.0, 13_000.0],
            serial="SN-MIXED-1",
            hardware_model="Antminer S21",
        )
    )
    ack = telemetry.WriteMetrics(request)
    assert (ack.written, ack.duplicates, ack.miners_registered) == (3, 0, 2)
    first, second = server.app.store.read_samples("SN-MIXED-1")
    # The row keeps its per-fan speeds (one above 12,000 RPM: flagged); the column's -1 is missing.
    assert (first.fan_speeds_rpm, first.quality) == ((4000.0, 13_000.0), QUALITY_SENSOR_GLITCH)
    assert (second.fan_speeds_rpm, second.accepted_shares, second.quality) == ((), None, QUALITY_PARTIAL)
    miner = server.app.store.get_miner("10.5.9.1")
    assert miner is not None and (miner.hardware_model, miner.serial) == ("Antminer S21", "SN-MIXED-1")
    assert server.app.store.read_samples("10.5.9.2")[0].accepted_shares == 7
