"""Validation: impossible values reject the whole batch (every bad sample by index and field),
extreme values are data, implausible ones are stored flagged, unknown miners without
auto-registration and oversize batches are INVALID_ARGUMENT."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from mining.analytics.v1alpha1 import telemetry_pb2, telemetry_pb2_grpc

from server.records import FEATURE_COLUMNS
from server.store import QUALITY_PARTIAL, QUALITY_SENSOR_GLITCH
from tests.harness import ServerThread, start_server
from tests.ingest.builders import batch, metric, violations
from tests.ingest.conftest import QUIET


def test_impossible_values_list_every_bad_sample_and_write_nothing(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    request = batch(
        metric("10.1.0.1", 0),
        metric("10.1.0.1", 1, temperature_c=-300.0),
        metric("10.1.0.2", 2, fan_speed_rpm=1e9, accepted_shares=-5),
        metric("10.1.0.1", 3, hashrate_ths=float("nan")),
        metric("not a miner id!", 4),
    )
    with pytest.raises(grpc.RpcError) as caught:
        telemetry.WriteMetrics(request)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("5 invalid field(s): samples[1].temperature_c: -300.0 is outside")
    assert violations(error) == (
        "INVALID_SAMPLES",
        [
            "samples[1].temperature_c",
            "samples[2].fan_speed_rpm",
            "samples[2].accepted_shares",
            "samples[3].hashrate_ths",
            "samples[4].miner_id",
        ],
    )
    # The good sample of the bad batch was not written, and no miner was registered.
    assert server.app.store.get_miner("10.1.0.1") is None
    assert server.app.store.get_miner("10.1.0.2") is None


def test_extreme_but_possible_readings_are_stored_as_data(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    ack = telemetry.WriteMetrics(
        batch(
            metric("10.1.1.1", 0, fan_speed_rpm=0.0),
            metric("10.1.1.1", 1, temperature_c=105.0),
            metric("10.1.1.1", 2, hashrate_ths=0.0, power_w=None),
        )
    )
    assert (ack.written, ack.duplicates, ack.miners_registered) == (3, 0, 1)
    stored = server.app.store.read_samples("10.1.1.1")
    assert [(s.fan_speed_rpm, s.temperature_c, s.hashrate_ths) for s in stored] == [
        (0.0, 70.0, 100.0),
        (4000.0, 105.0, 100.0),
        (4000.0, 70.0, 0.0),
    ]
    assert [s.quality for s in stored] == [0, 0, QUALITY_PARTIAL]


def test_implausible_sensor_readings_are_stored_with_the_glitch_flag(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    s19 = {"hardware_model": "Antminer S19 Pro"}  # nominal 110 TH/s from the catalogue
    telemetry.WriteMetrics(
        batch(
            metric("10.1.2.1", 0, **s19),
            metric("10.1.2.1", 1, temperature_c=150.0),
            metric("10.1.2.1", 2, temperature_c=-10.0),
            metric("10.1.2.1", 3, fan_speed_rpm=20_000.0),
            metric("10.1.2.1", 4, hashrate_ths=400.0),
            metric("10.1.2.1", 5, hashrate_ths=300.0),
        )
    )
    stored = server.app.store.read_samples("10.1.2.1")
    assert [s.quality for s in stored] == [0, *[QUALITY_SENSOR_GLITCH] * 4, 0]
    assert [s.temperature_c for s in stored[1:3]] == [150.0, -10.0]  # kept as reported
    miner = server.app.store.get_miner("10.1.2.1")
    assert miner is not None
    assert (miner.hardware_model, miner.make, miner.nominal_hashrate_ths) == (
        "Antminer S19 Pro",
        "Bitmain",
        110,
    )
    # The models never see the implausible field; the sample's other readings are still used.
    columns = {name: j for j, name in enumerate(FEATURE_COLUMNS)}
    values = server.app.store.load_series(["10.1.2.1"])["10.1.2.1"].values
    temperature, fan, hashrate = (values[:, columns[c]] for c in ("temperature", "fan_speed", "hashrate"))
    assert np.isnan(temperature).tolist() == [False, True, True, False, False, False]
    assert np.isnan(fan).tolist() == [False, False, False, True, False, False]
    assert np.isnan(hashrate).tolist() == [False, False, False, False, True, False]
    assert np.isnan(values[:, columns["efficiency"]]).tolist() == [False, False, False, False, True, False]
    assert hashrate[[0, 1, 2, 3, 5]].tolist() == [100.0, 100.0, 100.0, 100.0, 300.0]
    assert temperature[[0, 3, 4, 5]].tolist() == [70.0] * 4


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """Auto-registration off and a 4-sample batch limit."""
    running = start_server(
        Path(tmp_path_factory.mktemp("strict")), auto_register_miners=False, max_batch_samples=4, **QUIET
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def strict(strict_server: ServerThread) -> Iterator[telemetry_pb2_grpc.TelemetryServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{strict_server.port}") as channel:
        yield telemetry_pb2_grpc.TelemetryServiceStub(channel)


def test_unknown_miners_without_auto_registration_are_listed_by_index(
    strict_server: ServerThread, strict: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    from server.records import Miner

    strict_server.app.store.upsert_miners([Miner("10.2.0.1", "Antminer S19 Pro", serial="SN-KNOWN")])
    request = batch(
        metric("10.2.0.1", 0),
        metric("10.2.0.9", 0),
        metric("10.2.0.7", 1, serial="SN-KNOWN"),  # known by its serial: not unknown
        metric("10.2.0.9", 1),
    )
    with pytest.raises(grpc.RpcError) as caught:
        strict.WriteMetrics(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown miner '10.2.0.9' and auto-registration is off" in caught.value.details()
    assert violations(caught.value) == ("INVALID_SAMPLES", ["samples[1].miner_id", "samples[3].miner_id"])
    assert strict_server.app.store.read_samples("10.2.0.1") == []
    # Without the unknown miner the batch goes in; the serial sample lands on the known miner.
    ack = strict.WriteMetrics(batch(metric("10.2.0.1", 0), metric("10.2.0.7", 1, serial="SN-KNOWN")))
    assert (ack.written, ack.miners_registered) == (2, 0)
    assert len(strict_server.app.store.read_samples("10.2.0.7")) == 2


def test_oversize_batch_is_invalid_argument(strict: telemetry_pb2_grpc.TelemetryServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        strict.WriteMetrics(batch(*(metric("10.2.0.1", step) for step in range(5))))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "samples: 5 samples exceed the batch limit of 4; split the batch"
    assert violations(caught.value)[1] == ["samples"]


def test_empty_batch_is_invalid_argument(strict: telemetry_pb2_grpc.TelemetryServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        strict.WriteMetrics(telemetry_pb2.WriteMetricsRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the batch is empty" in caught.value.details()
    assert violations(caught.value)[1] == ["samples"]
    # An empty columns message is named as the columns it should have held.
    with pytest.raises(grpc.RpcError) as caught:
        strict.WriteMetrics(telemetry_pb2.WriteMetricsRequest(columns=telemetry_pb2.MetricColumns()))
    assert violations(caught.value)[1] == ["columns"]


def test_one_id_with_two_serials_in_a_batch_is_invalid(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    request = batch(metric("10.1.3.1", 0, serial="SN-A"), metric("10.1.3.1", 1, serial="SN-B", mac="zz"))
    with pytest.raises(grpc.RpcError) as caught:
        telemetry.WriteMetrics(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value)[1] == ["samples[1].mac", "samples[1].serial"]
