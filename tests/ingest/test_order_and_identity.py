"""Idempotent retries, late samples, counter resets and a miner's identity across an IP change."""

from __future__ import annotations

import math

import grpc
import pytest
from mining.analytics.v1alpha1 import telemetry_pb2_grpc

from tests.harness import ServerThread
from tests.ingest.builders import T0, at, batch, metric


def test_retried_batch_counts_duplicates_and_last_write_wins(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    first = batch(*(metric("10.3.0.1", step) for step in range(4)), batch_id="b-1")
    ack = telemetry.WriteMetrics(first)
    assert (ack.written, ack.duplicates, ack.miners_registered, ack.batch_id) == (4, 0, 1, "b-1")
    retry = telemetry.WriteMetrics(first)
    assert (retry.written, retry.duplicates, retry.miners_registered) == (0, 4, 0)
    corrected = telemetry.WriteMetrics(batch(metric("10.3.0.1", 2, hashrate_ths=90.0), metric("10.3.0.1", 3)))
    assert (corrected.written, corrected.duplicates) == (1, 1)
    stored = server.app.store.read_samples("10.3.0.1")
    assert [s.timestamp for s in stored] == [at(step) for step in range(4)]
    assert [s.hashrate_ths for s in stored] == [100.0, 100.0, 90.0, 100.0]


def test_late_samples_are_stored_in_their_place(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    telemetry.WriteMetrics(batch(*(metric("10.3.1.1", step) for step in (0, 1, 4, 5))))
    ack = telemetry.WriteMetrics(batch(metric("10.3.1.1", 3), metric("10.3.1.1", 2)))
    assert (ack.written, ack.duplicates) == (2, 0)
    stored = server.app.store.read_samples("10.3.1.1")
    assert [s.timestamp for s in stored] == [at(step) for step in range(6)]
    series = server.app.store.load_series(["10.3.1.1"])["10.3.1.1"]
    assert series.observed.tolist() == [True] * 6


def test_counter_reset_on_reboot_never_gives_a_negative_delta(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    counters = [(1000, 10), (2000, 20), (3000, 30), (400, 2), (1400, 12)]  # reboot before step 3
    telemetry.WriteMetrics(
        batch(
            *(
                metric("10.3.2.1", step, accepted_shares=acc, rejected_shares=rej)
                for step, (acc, rej) in enumerate(counters)
            )
        )
    )
    series = server.app.store.load_series(["10.3.2.1"])["10.3.2.1"]
    accepted, rejected = series.values[:, 4].tolist(), series.values[:, 5].tolist()
    assert math.isnan(accepted[0]) and math.isnan(rejected[0])
    assert accepted[1:] == [1000.0, 1000.0, 400.0, 1000.0]
    assert rejected[1:] == [10.0, 10.0, 2.0, 10.0]


def test_miner_keeps_its_history_when_its_ip_changes(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    identity = {"serial": "SN-IP-MOVE", "mac": "AA-BB-CC-00-03-01", "hardware_model": "Antminer S21"}
    first = telemetry.WriteMetrics(batch(*(metric("10.3.3.1", step, **identity) for step in range(3))))
    assert first.miners_registered == 1
    # DHCP hands the miner a new address; the collector reports the same serial and MAC from it.
    moved = telemetry.WriteMetrics(batch(*(metric("10.3.3.2", step, **identity) for step in range(3, 6))))
    assert (moved.written, moved.miners_registered) == (3, 0)
    # Only the MAC, from a third address, still resolves.
    telemetry.WriteMetrics(batch(metric("10.3.3.3", 6, mac="aa:bb:cc:00:03:01")))
    store = server.app.store
    for alias in ("10.3.3.1", "10.3.3.2", "10.3.3.3", "SN-IP-MOVE", "aa:bb:cc:00:03:01"):
        miner = store.get_miner(alias)
        assert miner is not None and miner.miner_id == "10.3.3.1", alias
    assert [s.timestamp for s in store.read_samples("10.3.3.2")] == [at(step) for step in range(7)]
    assert {m.miner_id for m in store.list_miners()}.isdisjoint({"10.3.3.2", "10.3.3.3"})
    miner = store.get_miner("10.3.3.3")
    assert miner is not None
    assert (miner.hardware_model, miner.nominal_hashrate_ths, miner.serial, miner.mac) == (
        "Antminer S21",
        200.0,
        "SN-IP-MOVE",
        "aa:bb:cc:00:03:01",
    )


def test_ingest_metrics_acks_each_batch_in_order_and_a_bad_batch_ends_the_stream(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    requests = [
        batch(*(metric("10.3.4.1", step) for step in range(0, 3)), batch_id="one"),
        batch(*(metric("10.3.4.1", step) for step in range(3, 5)), batch_id="two"),
        batch(metric("10.3.4.1", 5), metric("10.3.4.1", 6, temperature_c=1e6), batch_id="bad"),
        batch(metric("10.3.4.1", 7), batch_id="never"),
    ]
    acks = []
    with pytest.raises(grpc.RpcError) as caught:
        for ack in telemetry.IngestMetrics(iter(requests)):
            acks.append((ack.batch_id, ack.written))
    assert acks == [("one", 3), ("two", 2)]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "samples[1].temperature_c" in caught.value.details()
    stored = server.app.store.read_samples("10.3.4.1")
    assert [s.timestamp for s in stored] == [at(step) for step in range(5)]
    assert stored[0].timestamp == T0
