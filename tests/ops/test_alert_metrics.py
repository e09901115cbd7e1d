"""The metrics the alert rules are written on: per-miner scores labelled by site and hardware model
(behind per_miner_metrics), model info and activation time, build info, process metrics, the batch-size
histogram, the site-event gauge, and cancelled client streams not counted as errors."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from mining.analytics.v1alpha1 import (
    common_pb2,
    fleet_pb2,
    fleet_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
)
from prometheus_client.parser import text_string_to_metric_families

from server.domain.active_models import ModelSummary, ServingModel
from tests.harness import ServerThread, start_server

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    running = start_server(Path(tmp_path_factory.mktemp("alert-metrics")), outage_after_minutes=20.0)
    yield running
    running.stop()


def scrape(server: ServerThread) -> Series:
    port = server.app.ops.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def named(series: Series, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (metric, labels), value in series.items() if metric == name}


def test_build_info_process_metrics_and_settings_the_rules_compare_against(server: ServerThread) -> None:
    series = scrape(server)
    (build_labels,) = named(series, "mfh_build_info")
    assert dict(build_labels)["version"] == "0.1.0"
    assert {"python_version", "grpc_version"} <= dict(build_labels).keys()
    assert series[("process_resident_memory_bytes", ())] > 0
    assert series[("process_start_time_seconds", ())] > 0
    assert ("python_info", ()) not in series  # python_info carries labels
    assert named(series, "python_info")
    assert named(series, "mfh_risk_cutoff") == {
        (("level", "MEDIUM"),): 0.25,
        (("level", "HIGH"),): 0.5,
        (("level", "CRITICAL"),): 0.75,
    }
    assert series[("mfh_silent_after_seconds", ())] == 20 * 60
    assert series[("mfh_per_miner_metrics_enabled", ())] == 1


def test_staleness_and_planned_state_carry_site_and_hardware_model(server: ServerThread) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        fleet_pb2_grpc.FleetServiceStub(channel).UpsertMiner(
            fleet_pb2.UpsertMinerRequest(
                miner=common_pb2.Miner(miner_id="10.7.0.1", hardware_model="Antminer S19 Pro", site="north")
            ),
            timeout=30,
        )
        telemetry = telemetry_pb2_grpc.TelemetryServiceStub(channel)
        stamp = Timestamp()
        stamp.FromDatetime(datetime.now(UTC) - timedelta(minutes=10))
        telemetry.WriteMetrics(
            telemetry_pb2.WriteMetricsRequest(
                samples=[telemetry_pb2.MetricSample(miner_id="10.7.0.1", timestamp=stamp, temperature_c=70)]
            ),
            timeout=30,
        )
        start, end = Timestamp(), Timestamp()
        start.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
        end.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
        telemetry.SetPlannedState(
            telemetry_pb2.SetPlannedStateRequest(
                miner_id="10.7.0.1",
                kind=telemetry_pb2.PLANNED_STATE_KIND_MAINTENANCE,
                start=start,
                end=end,
            ),
            timeout=30,
        )
    for collector in _fleet_collectors(server):
        collector._last_seen.get(refresh=True)
        collector._planned.get(refresh=True)
    series = scrape(server)
    labels = (("hardware_model", "Antminer S19 Pro"), ("miner_id", "10.7.0.1"), ("site", "north"))
    assert 600 <= named(series, "mfh_data_staleness_seconds")[labels] < 3600
    assert named(series, "mfh_miner_planned_state")[(labels[0], ("kind", "MAINTENANCE"), *labels[1:])] == 1
    assert series[("mfh_newest_sample_age_seconds", ())] >= 0

    def temperature() -> float | None:
        return named(scrape(server), "mfh_miner_reading").get(
            (labels[0], labels[1], ("reading", "temperature"), labels[2])
        )

    deadline = time.monotonic() + 30  # the feature cache refreshes after ingestion, off the write path
    while temperature() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert temperature() == 70.0


def _fleet_collectors(server: ServerThread) -> list[object]:
    from server.ops.metrics import FleetCollector

    registry = server.app.ops.metrics.registry
    return [c for c in registry._collector_to_names if isinstance(c, FleetCollector)]


def test_per_miner_risk_and_anomaly_gauges_follow_the_latest_scores(server: ServerThread) -> None:
    from server.records import MinerScore, RiskLevel

    now = datetime.now(UTC)
    scores = server.app.scoring._scores
    scores.put(MinerScore("10.7.0.1", 0.81, RiskLevel.CRITICAL, now, "lstm-v1", True, 3.5))
    series = scrape(server)
    labels = (("hardware_model", "Antminer S19 Pro"), ("miner_id", "10.7.0.1"), ("site", "north"))
    assert named(series, "mfh_miner_risk_score")[labels] == pytest.approx(0.81)
    assert named(series, "mfh_miner_anomaly")[labels] == 1
    scores.put(MinerScore("10.7.0.1", 0.1, RiskLevel.LOW, now, "lstm-v1", False, 0.2))
    series = scrape(server)
    assert named(series, "mfh_miner_risk_score")[labels] == pytest.approx(0.1)
    assert named(series, "mfh_miner_anomaly")[labels] == 0


def test_model_info_and_activation_time_follow_the_active_models(server: ServerThread) -> None:
    models = server.app.models
    before = time.time()
    trained = datetime(2026, 1, 2, tzinfo=UTC)
    summary = ModelSummary(version="lstm-test-1", trained_at=trained, feature_columns=(), sequence_length=24)
    previous = models.lstm
    try:
        models.set_lstm(ServingModel(model=None, summary=summary))
        series = scrape(server)
        assert named(series, "mfh_model_info")[(("kind", "lstm"), ("version", "lstm-test-1"))] == 1
        assert series[("mfh_model_trained_timestamp_seconds", (("kind", "lstm"),))] == trained.timestamp()
        activated = series[("mfh_model_activated_timestamp_seconds", (("kind", "lstm"),))]
        assert before <= activated <= time.time()
        models.set_lstm(
            ServingModel(model=None, summary=summary)
        )  # the same version again: no new activation
        again = scrape(server)[("mfh_model_activated_timestamp_seconds", (("kind", "lstm"),))]
        assert again == activated
    finally:
        models.set_lstm(previous)


def test_site_event_setter_opens_and_closes_the_gauge(server: ServerThread) -> None:
    metrics = server.app.ops.metrics
    metrics.set_site_event("north", "power", True)
    assert scrape(server)[("mfh_site_event_active", (("kind", "power"), ("site", "north")))] == 1
    metrics.set_site_event("north", "power", False)
    assert scrape(server)[("mfh_site_event_active", (("kind", "power"), ("site", "north")))] == 0


def test_dynamic_batches_are_observed_in_the_batch_size_histogram(server: ServerThread) -> None:
    import asyncio

    import numpy as np

    batcher = server.app.scoring.batchers.get("histogram-test", lambda x: x.sum(axis=1))

    async def burst() -> None:
        await asyncio.gather(*(batcher.submit(np.ones(3)) for _ in range(5)))

    before = scrape(server).get(("mfh_batch_size_count", ()), 0.0)
    before_sum = scrape(server).get(("mfh_batch_size_sum", ()), 0.0)
    server.call(burst())
    series = scrape(server)
    assert series[("mfh_batch_size_sum", ())] - before_sum == 5  # every request in some batch
    assert 1 <= series[("mfh_batch_size_count", ())] - before <= 5


def test_a_stream_the_client_cancels_is_not_an_error(server: ServerThread) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stream = scoring_pb2_grpc.ScoringServiceStub(channel).SubscribeScores(
            scoring_pb2.SubscribeScoresRequest(), timeout=60
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and scrape(server).get(("mfh_subscribers", ()), 0) < 1:
            time.sleep(0.05)
        assert scrape(server)[("mfh_subscribers", ())] == 1
        stream.cancel()
        method = "ScoringService/SubscribeScores"
        while time.monotonic() < deadline:
            requests = named(scrape(server), "mfh_rpc_requests_total")
            if (("code", "CANCELLED"), ("method", method)) in requests:
                break
            time.sleep(0.05)
    series = scrape(server)
    assert series[("mfh_rpc_requests_total", (("code", "CANCELLED"), ("method", method)))] == 1
    errors = named(series, "mfh_rpc_errors_total")
    assert not [labels for labels in errors if ("method", method) in labels]


def test_per_miner_series_can_be_turned_off(tmp_path: Path) -> None:
    from server.records import MinerScore, RiskLevel

    running = start_server(tmp_path, per_miner_metrics=False)
    try:
        some_miner = running.app.store.list_miners()[0].miner_id
        running.app.scoring._scores.put(
            MinerScore(some_miner, 0.9, RiskLevel.CRITICAL, datetime.now(UTC), "lstm-v1", True, 3.0)
        )
        series = scrape(running)
    finally:
        running.stop()
    names = {name for name, _ in series}
    per_miner = {"mfh_miner_risk_score", "mfh_miner_anomaly", "mfh_data_staleness_seconds"}
    assert not names & (per_miner | {"mfh_miner_planned_state", "mfh_miner_reading"})
    assert series[("mfh_per_miner_metrics_enabled", ())] == 0
    assert series[("mfh_miners_by_risk_level", (("level", "CRITICAL"),))] == 1
    assert series[("mfh_newest_sample_age_seconds", ())] >= 0
