"""Prometheus metrics (RPC counts, errors, latency, ingestion, fleet gauges), the audit log, and
Envoy's admin staying on loopback."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf.timestamp_pb2 import Timestamp
from mining.analytics.v1alpha1 import fleet_pb2, fleet_pb2_grpc, telemetry_pb2, telemetry_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from server.envoy import TEMPLATE, render_config
from tests.harness import ServerThread, Stack, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    running = start_server(Path(tmp_path_factory.mktemp("ops")), metrics_port=0)
    yield running
    running.stop()


def _scrape(server: ServerThread) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    port = server.app.ops.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _write(channel: grpc.Channel, miner_id: str, n: int) -> telemetry_pb2.WriteMetricsResponse:
    start = datetime.now(UTC) - timedelta(minutes=5 * n)
    samples = []
    for i in range(n):
        stamp = Timestamp()
        stamp.FromDatetime(start + timedelta(minutes=5 * i))
        samples.append(telemetry_pb2.MetricSample(miner_id=miner_id, timestamp=stamp, temperature_c=70.0))
    stub = telemetry_pb2_grpc.TelemetryServiceStub(channel)
    return stub.WriteMetrics(telemetry_pb2.WriteMetricsRequest(samples=samples, batch_id="b-1"), timeout=30)


def test_metrics_count_requests_errors_latency_and_samples(server: ServerThread) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        fleet = fleet_pb2_grpc.FleetServiceStub(channel)
        fleet.Status(fleet_pb2.StatusRequest(), timeout=30)
        with pytest.raises(grpc.RpcError):
            fleet.GetMiner(fleet_pb2.GetMinerRequest(miner_id="10.9.9.9"), timeout=30)
        assert _write(channel, "metrics-miner", 3).written == 3
    metrics = _scrape(server)
    assert metrics[("mfh_rpc_requests_total", (("code", "OK"), ("method", "FleetService/Status")))] >= 1
    assert (
        metrics[("mfh_rpc_errors_total", (("code", "NOT_FOUND"), ("method", "FleetService/GetMiner")))] == 1
    )
    assert metrics[("mfh_rpc_duration_seconds_count", (("method", "FleetService/Status"),))] >= 1
    assert metrics[("mfh_samples_ingested_total", ())] == 3
    assert metrics[("mfh_subscribers", ())] == 0
    assert metrics[("mfh_store_size_bytes", ())] > 0
    assert ("mfh_miners_by_risk_level", (("level", "CRITICAL"),)) in metrics
    assert ("mfh_anomalous_miners_last_hour", ()) in metrics
    (staleness,) = [
        value
        for (name, labels), value in metrics.items()
        if name == "mfh_data_staleness_seconds" and ("miner_id", "metrics-miner") in labels
    ]
    assert 0 <= staleness < 3600


def test_metrics_endpoint_binds_loopback_by_default(server: ServerThread) -> None:
    assert server.settings.metrics_host == "127.0.0.1"
    assert server.app.ops.metrics._http.server_address[0] == "127.0.0.1"


def test_audit_log_records_who_wrote_what(server: ServerThread) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        _write(channel, "audit-miner", 2)
    lines = server.settings.audit_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    writes = [e for e in entries if e["action"] == "write_metrics" and e.get("written") == 2]
    assert writes, entries
    entry = writes[-1]
    assert entry["who"] == "127.0.0.1"  # auth off: the peer address
    assert entry["outcome"] == "OK" and entry["batch_id"] == "b-1"
    assert datetime.fromisoformat(entry["time"]) <= datetime.now(UTC)


def test_envoy_admin_listens_on_loopback_only(stack: Stack) -> None:
    config = render_config(grpc_host="127.0.0.1", grpc_port=1, http_host="0.0.0.0", http_port=2, admin_port=3)
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    committed = yaml.safe_load(TEMPLATE.read_text())
    assert committed["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    admin = (stack.envoy.workdir / "admin_address").read_text().strip()
    assert admin.startswith("127.0.0.1:")
