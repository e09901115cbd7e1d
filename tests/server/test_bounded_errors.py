"""Errors stay small however bad the request (issue 11, item 8).

A batch of 10,000 invalid samples lists the first 20 violations and says the total in ErrorInfo
metadata; no error body or trailer exceeds 4 KiB, over gRPC, through Envoy and from the CLI. An
overlong miner id in a REST path answers 400 in the usual shape.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from mining.analytics.v1alpha1 import telemetry_pb2, telemetry_pb2_grpc

from tests.harness import Stack, start_stack

BAD_ROWS = 10_000
LIMIT = 4096


@pytest.fixture(scope="module")
def errors_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(Path(tmp_path_factory.mktemp("errors")))
    yield running
    running.close()


def _bad_samples() -> list[telemetry_pb2.MetricSample]:
    start = datetime.now(UTC) - timedelta(days=1)
    samples = []
    for i in range(BAD_ROWS):
        sample = telemetry_pb2.MetricSample(miner_id=f"10.80.{i // 250}.{i % 250}", temperature_c=-300.0)
        sample.timestamp.FromDatetime(start + timedelta(seconds=i))
        samples.append(sample)
    return samples


def test_ten_thousand_bad_rows_over_grpc_list_twenty_and_the_total(errors_stack: Stack) -> None:
    stub = telemetry_pb2_grpc.TelemetryServiceStub(errors_stack.channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.WriteMetrics(telemetry_pb2.WriteMetricsRequest(samples=_bad_samples()), timeout=60)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailers = error.trailing_metadata() or ()
    assert sum(len(k) + len(v) for k, v in trailers) < LIMIT, [(k, len(v)) for k, v in trailers]
    assert len(error.details()) < LIMIT
    assert "10000 invalid field(s)" in error.details()
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(bad.DESCRIPTOR):
            detail.Unpack(bad)
    assert info.reason == "INVALID_SAMPLES"
    assert info.metadata["violations"] == "10000" and info.metadata["violations_listed"] == "20"
    assert [v.field for v in bad.field_violations] == [f"samples[{i}].temperature_c" for i in range(20)]


def test_ten_thousand_bad_rows_through_envoy_answer_a_small_400(errors_stack: Stack) -> None:
    start = datetime.now(UTC) - timedelta(days=1)
    samples = [
        {
            "miner_id": f"10.81.{i // 250}.{i % 250}",
            "timestamp": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
            "temperature_c": -300.0,
        }
        for i in range(BAD_ROWS)
    ]
    reply = errors_stack.rest("POST", "/api/advanced/metrics", {"samples": samples})
    assert reply.status == 400, (reply.status, reply.body[:300])
    assert len(reply.body) < LIMIT, len(reply.body)
    body = reply.json()
    assert body["code"] == 3 and "10000 invalid field(s)" in body["message"]
    info = next(d for d in body["details"] if d["@type"].endswith("ErrorInfo"))
    assert info["metadata"]["violations"] == "10000"
    bad = next(d for d in body["details"] if d["@type"].endswith("BadRequest"))
    assert len(bad["field_violations"]) == 20


def test_ten_thousand_bad_rows_from_the_cli_print_a_short_error(errors_stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    lines = ["miner_id,timestamp,temperature_c"]
    lines += [f"10.82.0.{i % 200},{(start + timedelta(minutes=i)).isoformat()},-300" for i in range(BAD_ROWS)]
    path.write_text("\n".join(lines) + "\n")
    cli = Path(sys.executable).parent / "mining-health"
    result = subprocess.run(
        [str(cli), "--target", errors_stack.grpc_target, "import", str(path), "--batch-size", str(BAD_ROWS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "10000 invalid field(s)" in result.stderr
    assert len(result.stderr) < LIMIT, len(result.stderr)


@pytest.mark.parametrize("length", [10_000, 20_000])
def test_an_overlong_miner_id_in_a_rest_path_answers_400(errors_stack: Stack, length: int) -> None:
    miner_id = "1" * length
    for path in (
        f"/api/advanced/predict/failure-risk/{miner_id}",
        f"/api/advanced/miners/{miner_id}",
        f"/api/advanced/failures?miner_id={miner_id}",
    ):
        reply = errors_stack.rest("GET", path)
        assert reply.status == 400, (path[:60], reply.status, reply.body[:300])
        assert len(reply.body) < LIMIT
        body = reply.json()
        assert body["code"] == 3 and "at most 128 characters" in body["message"], body
