"""Events that agree: a recorded failure or planned state supersedes a derived outage that overlaps
it, whichever came first, so ListFailures and the training labels (the same table) see one event."""

from __future__ import annotations

from mining.analytics.v1alpha1 import common_pb2, telemetry_pb2, telemetry_pb2_grpc

from tests.harness import ServerThread
from tests.ingest.builders import at, batch, metric, stamp

OUTAGE, DERIVED, MANUAL = (
    common_pb2.FAILURE_MODE_OUTAGE,
    common_pb2.EVENT_SOURCE_DERIVED,
    common_pb2.EVENT_SOURCE_MANUAL,
)
CURTAILMENT = telemetry_pb2.PLANNED_STATE_KIND_CURTAILMENT


def events(telemetry: telemetry_pb2_grpc.TelemetryServiceStub, miner_id: str) -> list[tuple[int, int]]:
    """(mode, source) of the miner's failure events, oldest first."""
    reply = telemetry.ListFailures(telemetry_pb2.ListFailuresRequest(miner_id=miner_id))
    return [(e.mode, e.source) for e in reversed(reply.failures)]


def down_for_four_hours(miner_id: str) -> telemetry_pb2.WriteMetricsRequest:
    """Hashing, zero hashrate from step 6 for 4 h, hashing again from step 54."""
    return batch(
        *(metric(miner_id, step, hashrate_ths=0.0 if 6 <= step < 54 else 100.0) for step in range(60))
    )


def record_failure(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub, miner_id: str, occurred: int, repaired: int | None
) -> None:
    request = telemetry_pb2.RecordFailureRequest(
        miner_id=miner_id, occurred_at=stamp(at(occurred)), mode=common_pb2.FAILURE_MODE_PSU
    )
    if repaired is not None:
        request.repaired_at.CopyFrom(stamp(at(repaired)))
    telemetry.RecordFailure(request)


def test_failure_recorded_after_the_import_supersedes_the_derived_outage(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    telemetry.WriteMetrics(down_for_four_hours("10.13.0.1"))
    assert events(telemetry, "10.13.0.1") == [(OUTAGE, DERIVED)]
    record_failure(telemetry, "10.13.0.1", occurred=8, repaired=54)  # the ticket says 10 min later
    assert events(telemetry, "10.13.0.1") == [(common_pb2.FAILURE_MODE_PSU, MANUAL)]
    # The training labels read the same events.
    failures = server.app.store.list_failures("10.13.0.1")
    assert [(f.source, f.occurred_at) for f in failures] == [(MANUAL, at(8))]
    # Importing the same telemetry again does not bring the outage back.
    telemetry.WriteMetrics(down_for_four_hours("10.13.0.1"))
    assert events(telemetry, "10.13.0.1") == [(common_pb2.FAILURE_MODE_PSU, MANUAL)]


def test_unrepaired_failure_recorded_after_the_import_supersedes_the_derived_outage(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    telemetry.WriteMetrics(down_for_four_hours("10.13.1.1"))
    record_failure(telemetry, "10.13.1.1", occurred=7, repaired=None)
    assert events(telemetry, "10.13.1.1") == [(common_pb2.FAILURE_MODE_PSU, MANUAL)]


def test_failure_recorded_before_the_import_keeps_the_outage_from_being_derived(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    telemetry.WriteMetrics(batch(metric("10.13.2.1", 0)))
    record_failure(telemetry, "10.13.2.1", occurred=6, repaired=None)
    telemetry.WriteMetrics(down_for_four_hours("10.13.2.1"))
    assert events(telemetry, "10.13.2.1") == [(common_pb2.FAILURE_MODE_PSU, MANUAL)]


def test_planned_curtailment_recorded_after_the_import_supersedes_the_derived_outage(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    telemetry.WriteMetrics(down_for_four_hours("10.13.3.1"))
    assert events(telemetry, "10.13.3.1") == [(OUTAGE, DERIVED)]
    # The curtailment record starts 50 min after hashing stopped (a sloppy schedule).
    telemetry.SetPlannedState(
        telemetry_pb2.SetPlannedStateRequest(
            miner_id="10.13.3.1", kind=CURTAILMENT, start=stamp(at(16)), end=stamp(at(54))
        )
    )
    assert events(telemetry, "10.13.3.1") == []
    telemetry.WriteMetrics(down_for_four_hours("10.13.3.1"))
    assert events(telemetry, "10.13.3.1") == []


def test_planned_curtailment_recorded_before_the_import_keeps_the_outage_from_being_derived(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    telemetry.WriteMetrics(batch(metric("10.13.4.1", 0)))
    telemetry.SetPlannedState(
        telemetry_pb2.SetPlannedStateRequest(
            miner_id="10.13.4.1", kind=CURTAILMENT, start=stamp(at(16)), end=stamp(at(54))
        )
    )
    telemetry.WriteMetrics(down_for_four_hours("10.13.4.1"))
    assert events(telemetry, "10.13.4.1") == []


def test_outage_apart_from_a_recorded_failure_stays(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    telemetry.WriteMetrics(down_for_four_hours("10.13.5.1"))
    record_failure(telemetry, "10.13.5.1", occurred=58, repaired=59)  # after the outage, not in it
    assert events(telemetry, "10.13.5.1") == [(OUTAGE, DERIVED), (common_pb2.FAILURE_MODE_PSU, MANUAL)]
