"""Repairs: a repair time added to a failure recorded earlier (RecordRepair, REST POST
/api/advanced/failures/{event_id}/repair), and a repair derived from the first hashing sample after
the miner was down when none is recorded, marked as derived."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from mining.analytics.v1alpha1 import common_pb2, telemetry_pb2, telemetry_pb2_grpc

from tests.harness import Stack, start_stack
from tests.ingest.builders import at, batch, metric, stamp, violations
from tests.ingest.conftest import QUIET

MANUAL, DERIVED = common_pb2.EVENT_SOURCE_MANUAL, common_pb2.EVENT_SOURCE_DERIVED


def down_for_four_hours(miner_id: str) -> telemetry_pb2.WriteMetricsRequest:
    """Hashing, zero hashrate from step 6 for 4 h, hashing again from step 54."""
    return batch(
        *(metric(miner_id, step, hashrate_ths=0.0 if 6 <= step < 54 else 100.0) for step in range(60))
    )


def fail(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub, miner_id: str, occurred: int
) -> telemetry_pb2.FailureEvent:
    return telemetry.RecordFailure(
        telemetry_pb2.RecordFailureRequest(
            miner_id=miner_id, occurred_at=stamp(at(occurred)), mode=common_pb2.FAILURE_MODE_FAN
        )
    )


def only_failure(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub, miner_id: str
) -> telemetry_pb2.FailureEvent:
    (event,) = telemetry.ListFailures(telemetry_pb2.ListFailuresRequest(miner_id=miner_id)).failures
    return event


def test_repair_time_is_added_to_a_failure_recorded_earlier(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    telemetry.WriteMetrics(batch(metric("10.14.0.1", 0)))
    event = fail(telemetry, "10.14.0.1", occurred=1)  # recorded as it happens: no repair yet
    assert not event.HasField("repaired_at")
    assert event.repair_source == common_pb2.EVENT_SOURCE_UNSPECIFIED
    repaired = telemetry.RecordRepair(
        telemetry_pb2.RecordRepairRequest(
            event_id=event.event_id, repaired_at=stamp(at(30)), note="fan swapped"
        )
    )
    assert (repaired.event_id, repaired.repaired_at.ToDatetime()) == (
        event.event_id,
        at(30).replace(tzinfo=None),
    )
    assert (repaired.repair_source, repaired.mode, repaired.note) == (
        MANUAL,
        common_pb2.FAILURE_MODE_FAN,
        "fan swapped",
    )
    assert only_failure(telemetry, "10.14.0.1") == repaired


def test_repair_of_an_unknown_event_or_before_the_failure_is_refused(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        telemetry.RecordRepair(telemetry_pb2.RecordRepairRequest(event_id="no-such-event"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-event" in (missing.value.details() or "")
    telemetry.WriteMetrics(batch(metric("10.14.1.1", 0)))
    event = fail(telemetry, "10.14.1.1", occurred=10)
    with pytest.raises(grpc.RpcError) as early:
        telemetry.RecordRepair(
            telemetry_pb2.RecordRepairRequest(event_id=event.event_id, repaired_at=stamp(at(9)))
        )
    assert early.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(early.value) == ("INVALID_ARGUMENT", ["repaired_at"])
    assert not only_failure(telemetry, "10.14.1.1").HasField("repaired_at")  # nothing changed


def test_repair_is_derived_from_the_first_hashing_sample_after_the_failure(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    telemetry.WriteMetrics(down_for_four_hours("10.14.2.1"))
    event = fail(telemetry, "10.14.2.1", occurred=7)  # recorded after the import, without a repair
    assert (event.repaired_at.ToDatetime(), event.repair_source) == (at(54).replace(tzinfo=None), DERIVED)
    assert only_failure(telemetry, "10.14.2.1") == event


def test_failure_recorded_before_its_telemetry_is_repaired_when_the_miner_hashes_again(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    telemetry.WriteMetrics(batch(metric("10.14.3.1", 0)))
    fail(telemetry, "10.14.3.1", occurred=6)
    # Still down: hashing degraded for a while, then zero; no repair yet.
    telemetry.WriteMetrics(
        batch(*(metric("10.14.3.1", step, hashrate_ths=60.0 if step < 20 else 0.0) for step in range(1, 40)))
    )
    assert not only_failure(telemetry, "10.14.3.1").HasField("repaired_at")
    telemetry.WriteMetrics(batch(*(metric("10.14.3.1", step) for step in range(40, 44))))
    event = only_failure(telemetry, "10.14.3.1")
    assert (event.repaired_at.ToDatetime(), event.repair_source) == (at(40).replace(tzinfo=None), DERIVED)
    # A repair recorded later replaces the derived one.
    repaired = telemetry.RecordRepair(
        telemetry_pb2.RecordRepairRequest(event_id=event.event_id, repaired_at=stamp(at(38)))
    )
    assert (repaired.repaired_at.ToDatetime(), repaired.repair_source) == (
        at(38).replace(tzinfo=None),
        MANUAL,
    )


def test_failure_after_silence_is_repaired_when_samples_return(
    telemetry: telemetry_pb2_grpc.TelemetryServiceStub,
) -> None:
    """Silent (no samples) from the failure on: the first hashing sample after the gap is the repair."""
    telemetry.WriteMetrics(batch(*(metric("10.14.4.1", step) for step in range(5))))
    fail(telemetry, "10.14.4.1", occurred=5)
    telemetry.WriteMetrics(batch(*(metric("10.14.4.1", step) for step in range(30, 33))))
    event = only_failure(telemetry, "10.14.4.1")
    assert (event.repaired_at.ToDatetime(), event.repair_source) == (at(30).replace(tzinfo=None), DERIVED)


@pytest.fixture(scope="module")
def rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(Path(tmp_path_factory.mktemp("repairs-rest")), **QUIET)
    yield running
    running.close()


def test_repair_over_rest(rest: Stack) -> None:
    body = {"miner_id": "10.14.5.1", "timestamp": at(0).isoformat(), "hashrate_ths": 100.0}
    assert rest.rest("POST", "/api/advanced/metrics", {"samples": [body]}).status == 200
    failure = rest.rest(
        "POST", "/api/advanced/failures", {"miner_id": "10.14.5.1", "mode": "FAILURE_MODE_PSU"}
    )
    assert failure.status == 200, failure.body
    event_id = failure.json()["event_id"]
    reply = rest.rest(
        "POST", f"/api/advanced/failures/{event_id}/repair", {"repaired_at": "2099-01-01T00:00:00Z"}
    )
    assert reply.status == 400 and "repaired_at" in reply.json()["message"]  # in the future
    reply = rest.rest("POST", f"/api/advanced/failures/{event_id}/repair", {"note": "PSU replaced"})
    assert reply.status == 200, reply.body
    body = reply.json()
    assert (body["event_id"], body["repair_source"], body["note"]) == (
        event_id,
        "EVENT_SOURCE_MANUAL",
        "PSU replaced",
    )
    assert body["repaired_at"] >= failure.json()["occurred_at"]
    assert rest.rest("POST", "/api/advanced/failures/nope/repair", {}).status == 404
