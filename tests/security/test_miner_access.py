"""One miner-access rule over every RPC that takes a miner id or a miner filter.

A token scoped to one site can neither read, write, stream nor probe another site's miners, and
"not yours" answers exactly like "does not exist" (same status, same body but for the id). Through
Envoy where the RPC has a REST route, over gRPC where it has none (IngestMetrics, the stream's filter).
Each case also runs on the token's own miner, which must answer differently: the check is live.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from mining.analytics.v1alpha1 import scoring_pb2, scoring_pb2_grpc, telemetry_pb2, telemetry_pb2_grpc

from tests.harness import Response
from tests.security.conftest import SiteStack

OWN, OTHER, ABSENT = "192.168.1.100", "192.168.1.102", "10.254.0.9"  # site-a, demo-row-1, none
OTHER_SERIAL, ABSENT_SERIAL = "SIM000002", "SIM999999"


def _now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _answer(reply: Response, miner_id: str) -> tuple[int, str]:
    """The status and the body with the asked id (and volatile fields) taken out."""
    try:
        document = reply.json()
    except ValueError:
        return reply.status, reply.body.decode(errors="replace").replace(miner_id, "<id>")
    for volatile in ("elapsed_ms",):
        if isinstance(document, dict):
            document.pop(volatile, None)
    return reply.status, json.dumps(document, sort_keys=True).replace(miner_id, "<id>")


Case = Callable[[SiteStack, str], Response]

REST_CASES: dict[str, Case] = {
    "GetMiner": lambda s, m: s.rest("GET", f"/api/advanced/miners/{m}"),
    "PredictFailureRisk": lambda s, m: s.rest("GET", f"/api/advanced/predict/failure-risk/{m}"),
    "DetectAnomalies": lambda s, m: s.rest("GET", f"/api/advanced/detect/anomalies/{m}"),
    "ListFailures": lambda s, m: s.rest("GET", f"/api/advanced/failures?miner_id={m}"),
    "RecordFailure": lambda s, m: s.rest(
        "POST", "/api/advanced/failures", {"miner_id": m, "mode": "FAILURE_MODE_FAN", "note": "probe"}
    ),
    "SetPlannedState": lambda s, m: s.rest(
        "POST",
        "/api/advanced/planned-states",
        {
            "miner_id": m,
            "kind": "PLANNED_STATE_KIND_MAINTENANCE",
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-01T01:00:00Z",
        },
    ),
    "RecordFeedback": lambda s, m: s.rest(
        "POST", "/api/advanced/feedback", {"miner_id": m, "verdict": "FEEDBACK_VERDICT_CONFIRMED"}
    ),
    "WriteMetrics": lambda s, m: s.rest(
        "POST",
        "/api/advanced/metrics",
        {"samples": [{"miner_id": m, "timestamp": _now_iso(), "hashrate_ths": 100.0}]},
    ),
    "ScoreFleet(miner_ids)": lambda s, m: s.rest("GET", f"/api/advanced/fleet/scores?miner_ids={m}"),
}


def _site_of(m: str) -> str:
    return "site-a" if m == OWN else "demo-row-1"


@pytest.mark.parametrize("name", sorted(REST_CASES))
def test_other_sites_miner_answers_like_an_absent_one(sites: SiteStack, name: str) -> None:
    case = REST_CASES[name]
    other, absent = _answer(case(sites, OTHER), OTHER), _answer(case(sites, ABSENT), ABSENT)
    assert other == absent, f"{name}: another site's miner answers {other}, an absent one {absent}"
    assert other[0] in (200, 400, 404), other  # 200 for a filter: nothing matched
    own = _answer(case(sites, OWN), OWN)
    assert own[0] == 200 and own != other, f"{name} on the token's own miner: {own}"


def test_probing_by_serial_answers_like_an_absent_serial(sites: SiteStack) -> None:
    other = _answer(sites.rest("GET", f"/api/advanced/miners/{OTHER_SERIAL}"), OTHER_SERIAL)
    absent = _answer(sites.rest("GET", f"/api/advanced/miners/{ABSENT_SERIAL}"), ABSENT_SERIAL)
    assert other == absent and other[0] == 404, (other, absent)


def test_upsert_of_another_sites_miner_answers_like_an_absent_one(sites: SiteStack) -> None:
    body = {"hardware_model": "Takeover 9000", "site": "demo-row-1"}
    other = _answer(sites.rest("PUT", f"/api/advanced/miners/{OTHER}", body), OTHER)
    absent = _answer(sites.rest("PUT", f"/api/advanced/miners/{ABSENT}", body), ABSENT)
    assert other == absent and other[0] == 403, (other, absent)
    record = sites.rest("GET", f"/api/advanced/miners/{OTHER}", token="admin").json()
    assert record["hardware_model"] == "Antminer S21" and record["site"] == "demo-row-1", record


def test_list_miners_by_another_site_answers_like_an_absent_site(sites: SiteStack) -> None:
    other = _answer(sites.rest("GET", "/api/advanced/miners?site=demo-row-1"), "demo-row-1")
    absent = _answer(sites.rest("GET", "/api/advanced/miners?site=no-such-site"), "no-such-site")
    assert other == absent and other[0] == 200, (other, absent)
    own = sites.rest("GET", "/api/advanced/miners?site=site-a").json()
    assert sorted(m["miner_id"] for m in own["miners"]) == ["192.168.1.100", "192.168.1.101"]


def test_ingest_stream_refuses_another_sites_miner_like_an_absent_one(sites: SiteStack) -> None:
    stub = telemetry_pb2_grpc.TelemetryServiceStub(sites.stack.channel)

    def ingest(miner_id: str) -> tuple[grpc.StatusCode, str]:
        sample = telemetry_pb2.MetricSample(miner_id=miner_id, hashrate_ths=90.0)
        sample.timestamp.FromDatetime(datetime.now(UTC))
        request = telemetry_pb2.WriteMetricsRequest(samples=[sample])
        try:
            for _ in stub.IngestMetrics(iter([request]), metadata=sites.metadata("site-a"), timeout=30):
                pass
        except grpc.RpcError as error:
            return error.code(), error.details().replace(miner_id, "<id>")
        return grpc.StatusCode.OK, ""

    assert ingest(OTHER) == ingest(ABSENT)
    assert ingest(OTHER)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert ingest(OWN) == (grpc.StatusCode.OK, "")


def test_subscription_never_streams_another_sites_miner(sites: SiteStack) -> None:
    """Subscribed to its own miner and another site's, the scoped token gets only its own updates."""
    stub = scoring_pb2_grpc.ScoringServiceStub(sites.stack.channel)
    seen: list[str] = []
    stream = stub.SubscribeScores(
        scoring_pb2.SubscribeScoresRequest(miner_ids=[OWN, OTHER, ABSENT], heartbeat_seconds=1),
        metadata=sites.metadata("site-a"),
        timeout=120,
    )
    ready, done = threading.Event(), threading.Event()

    def read() -> None:
        try:
            for event in stream:
                ready.set()  # the first heartbeat: the subscription is registered
                if event.HasField("update"):
                    seen.append(event.update.miner_id)
                    if event.update.miner_id == OWN:
                        done.set()
                        return
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(60), "no heartbeat"
    telemetry = telemetry_pb2_grpc.TelemetryServiceStub(sites.stack.channel)
    base = datetime.now(UTC) - timedelta(seconds=30)
    samples = []
    for miner_id in (OTHER, OWN):  # the other site's miner first: its update would arrive first
        sample = telemetry_pb2.MetricSample(miner_id=miner_id, hashrate_ths=95.0, temperature_c=70.0)
        sample.timestamp.FromDatetime(base)
        samples.append(sample)
    telemetry.WriteMetrics(
        telemetry_pb2.WriteMetricsRequest(samples=samples), metadata=sites.metadata("admin"), timeout=30
    )
    assert done.wait(90), f"no update for the token's own miner; saw {seen}"
    stream.cancel()
    assert OTHER not in seen and seen[-1] == OWN, seen
