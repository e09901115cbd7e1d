"""Outage events derived from telemetry: zero-hashrate or silent stretches, never planned states."""

from __future__ import annotations

from mining.analytics.v1alpha1 import common_pb2, telemetry_pb2, telemetry_pb2_grpc

from server.domain.outages import scan_fleet
from tests.harness import ServerThread
from tests.ingest.builders import at, batch, metric, stamp

OUTAGE, DERIVED = common_pb2.FAILURE_MODE_OUTAGE, common_pb2.EVENT_SOURCE_DERIVED


def outages(telemetry: telemetry_pb2_grpc.TelemetryServiceStub, miner_id: str) -> list[tuple[object, ...]]:
    """(event_id, occurred_at, repaired_at or None) of the miner's derived outages, oldest first."""
    reply = telemetry.ListFailures(telemetry_pb2.ListFailuresRequest(miner_id=miner_id))
    assert all((e.mode, e.source) == (OUTAGE, DERIVED) for e in reply.failures)
    return [
        (
            e.event_id,
            e.occurred_at.ToDatetime(),
            e.repaired_at.ToDatetime() if e.HasField("repaired_at") else None,
        )
        for e in reversed(reply.failures)
    ]


def naive(step: int) -> object:
    return at(step).replace(tzinfo=None)


def hashrates(miner_id: str, values: list[float], start: int = 0) -> telemetry_pb2.WriteMetricsRequest:
    return batch(*(metric(miner_id, start + i, hashrate_ths=h) for i, h in enumerate(values)))


def test_zero_hashrate_stretch_becomes_one_outage_with_its_repair(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    request = hashrates("10.4.0.1", [100.0] * 4 + [0.0] * 10 + [100.0] * 3)  # zero for 50 min
    telemetry.WriteMetrics(request)
    (event,) = outages(telemetry, "10.4.0.1")
    assert event[1:] == (naive(4), naive(14))
    reply = telemetry.ListFailures(telemetry_pb2.ListFailuresRequest(miner_id="10.4.0.1"))
    assert reply.failures[0].note.startswith("derived: no hashrate")
    # Re-sending the batch, or scanning again, never duplicates it.
    telemetry.WriteMetrics(request)
    assert outages(telemetry, "10.4.0.1") == [event]


def test_short_zero_stretch_is_not_an_outage(telemetry: telemetry_pb2_grpc.TelemetryServiceStub) -> None:
    telemetry.WriteMetrics(hashrates("10.4.1.1", [100.0] * 3 + [0.0] * 6 + [100.0] * 3))  # 30 min
    assert outages(telemetry, "10.4.1.1") == []


def test_open_outage_is_repaired_when_the_miner_hashes_again(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    telemetry.WriteMetrics(hashrates("10.4.2.1", [100.0] * 3 + [0.0] * 9))
    (open_event,) = outages(telemetry, "10.4.2.1")
    assert open_event[1:] == (naive(3), None)
    telemetry.WriteMetrics(hashrates("10.4.2.1", [0.0, 0.0, 100.0], start=12))
    assert outages(telemetry, "10.4.2.1") == [(open_event[0], naive(3), naive(14))]


def test_planned_states_never_produce_outages(telemetry: telemetry_pb2_grpc.TelemetryServiceStub) -> None:
    telemetry.WriteMetrics(hashrates("10.4.3.1", [100.0] * 4))
    for kind, start, end in (
        (telemetry_pb2.PLANNED_STATE_KIND_CURTAILMENT, 4, 16),
        (telemetry_pb2.PLANNED_STATE_KIND_MAINTENANCE, 14, 30),  # overlaps the curtailment
    ):
        telemetry.SetPlannedState(
            telemetry_pb2.SetPlannedStateRequest(
                miner_id="10.4.3.1", kind=kind, start=stamp(at(start)), end=stamp(at(end))
            )
        )
    # Zero through the curtailment, silent through the maintenance, back at its end.
    telemetry.WriteMetrics(hashrates("10.4.3.1", [0.0] * 12, start=4))
    telemetry.WriteMetrics(batch(*(metric("10.4.3.9", step) for step in range(40))))  # the fleet reports
    telemetry.WriteMetrics(hashrates("10.4.3.1", [100.0] * 4, start=30))
    assert outages(telemetry, "10.4.3.1") == []
    # A miner that does not come back after its maintenance is an outage again.
    telemetry.WriteMetrics(hashrates("10.4.3.1", [0.0] * 8 + [100.0], start=34))
    assert [e[1:] for e in outages(telemetry, "10.4.3.1")] == [(naive(34), naive(42))]


def test_silence_while_the_fleet_reports_is_an_outage_until_late_samples_fill_it(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    # Later than every sample the earlier tests wrote, so these two miners are the fleet's newest.
    silent = [*range(300, 303), *range(313, 316)]  # nothing for 50 min
    everyone = range(300, 316)
    telemetry.WriteMetrics(
        batch(*(metric("10.4.4.1", step) for step in silent), *(metric("10.4.4.2", s) for s in everyone))
    )
    assert [e[1:] for e in outages(telemetry, "10.4.4.1")] == [(naive(303), naive(313))]
    assert outages(telemetry, "10.4.4.2") == []
    # The collector's buffer arrives late: the miner was hashing all along.
    telemetry.WriteMetrics(batch(*(metric("10.4.4.1", step) for step in range(303, 313))))
    assert outages(telemetry, "10.4.4.1") == []


def test_silence_of_the_whole_fleet_is_not_an_outage(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    # Two miners silent over the same hour (a collector outage); nobody else reports in it. Later
    # than every other sample of this module.
    steps = [*range(500, 503), *range(515, 518)]
    telemetry.WriteMetrics(batch(*(metric(m, s) for m in ("10.4.5.1", "10.4.5.2") for s in steps)))
    assert outages(telemetry, "10.4.5.1") == [] and outages(telemetry, "10.4.5.2") == []


def test_fleet_scan_opens_an_outage_for_a_silent_miner_and_its_return_closes_it(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    # Newer than every other sample of this module; the fleet (10.4.6.2) keeps reporting.
    telemetry.WriteMetrics(
        batch(
            *(metric("10.4.6.1", s) for s in range(530, 533)),
            *(metric("10.4.6.2", s) for s in range(530, 545)),
        )
    )
    assert outages(telemetry, "10.4.6.1") == []  # a batch never calls a still-silent miner down
    scan_fleet(server.app.store, server.settings)
    (event,) = outages(telemetry, "10.4.6.1")
    assert event[1:] == (naive(533), None)
    assert scan_fleet(server.app.store, server.settings).added == 0  # idempotent
    telemetry.WriteMetrics(batch(metric("10.4.6.1", 546)))
    assert outages(telemetry, "10.4.6.1") == [(event[0], naive(533), naive(546))]
