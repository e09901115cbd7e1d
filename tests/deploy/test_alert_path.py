"""An alert's whole path with the real binaries: telemetry of a failing miner ingested through the API,
scored by a real (tiny) LSTM, scraped by real Prometheus running deploy/prometheus/alerts.yml, routed by
real Alertmanager on deploy/alertmanager/alertmanager.yml, delivered to a webhook receiver the test runs;
resolved after healthy telemetry; held back by a silence made through Alertmanager's API.

The periods are the fast ones of deploy/monitoring.py (scrape and evaluation 1 s, `for:` 3 s, grouping
1 s). The tiny LSTM (40 miners, 10 days, 3 epochs) scores the precursors it learned at about 0.45 and
healthy windows at about 0.04, below the product's default HIGH cut-off of 0.5: the server here runs
with risk_cutoffs (0.2, 0.3, 0.9), which the rule reads from mfh_risk_cutoff, so the test also proves
that the alert follows the setting.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from mining.analytics.v1alpha1 import (
    common_pb2,
    fleet_pb2,
    fleet_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

from deploy import monitoring
from server.records import FailureMode, Sample
from tests.deploy.conftest import http_json, requires_binaries
from tests.harness import ServerThread, start_server

pytestmark = requires_binaries

HIGH_CUTOFF = 0.3
HEALTHY_SPAN = timedelta(hours=12)  # healthy telemetry that follows the failing run-up
TRAIN_FLEET = {"demo_miners": 40, "demo_days": 10.0, "demo_seed": 11}
SAMPLE_FIELDS = (
    "hashrate_ths",
    "temperature_c",
    "fan_speed_rpm",
    "power_w",
    "accepted_shares",
    "rejected_shares",
)
BOARD_FIELDS = ("hashrate_ths", "temperature_c", "chip_temperature_c")


@dataclass
class Alerting:
    server: ServerThread
    channel: grpc.Channel
    stack: monitoring.Monitoring
    webhook: monitoring.WebhookReceiver

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.server.app.ops.metrics_port}/metrics"


@pytest.fixture(scope="module")
def alerting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alerting]:
    data_dir = Path(tmp_path_factory.mktemp("alert-path"))
    server = start_server(
        data_dir,
        **TRAIN_FLEET,
        risk_cutoffs=(0.2, HIGH_CUTOFF, 0.9),
        backfill_after_minutes=24 * 60.0,  # replays end hours back and must still be rescored
        outage_scan_interval_s=0,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    webhook = monitoring.WebhookReceiver()
    stack = None
    try:
        _train_lstm(channel)
        stack = monitoring.start(
            data_dir / "monitoring",
            metrics_target=f"127.0.0.1:{server.app.ops.metrics_port}",
            webhook_url=webhook.url,
            periods=monitoring.FAST,
        )
        yield Alerting(server, channel, stack, webhook)
    finally:
        if stack is not None:
            stack.stop()
        webhook.stop()
        channel.close()
        server.stop()


def _train_lstm(channel: grpc.Channel) -> None:
    training = training_pb2_grpc.TrainingServiceStub(channel)
    job = training.Train(training_pb2.TrainRequest(model_kind=common_pb2.LSTM, epochs=3, seed=5), timeout=60)
    for update in training.WatchTrainJob(training_pb2.WatchTrainJobRequest(job_id=job.job_id), timeout=600):
        final = update
    assert final.state == training_pb2.JOB_STATE_SUCCEEDED, final


def _stamp(moment: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(moment)
    return out


def _proto(sample: Sample, miner_id: str, shift: timedelta) -> telemetry_pb2.MetricSample:
    readings = {k: getattr(sample, k) for k in SAMPLE_FIELDS if getattr(sample, k) is not None}
    boards = [
        telemetry_pb2.BoardReading(
            index=b.index, **{k: getattr(b, k) for k in BOARD_FIELDS if getattr(b, k) is not None}
        )
        for b in sample.boards
    ]
    return telemetry_pb2.MetricSample(
        miner_id=miner_id,
        timestamp=_stamp(sample.timestamp + shift),
        boards=boards,
        fan_speeds_rpm=list(sample.fan_speeds_rpm),
        **readings,
    )


def _replay(
    alerting: Alerting, source_id: str, start: datetime, end: datetime, as_id: str, end_at: datetime
) -> float:
    """Writes source_id's stored samples in [start, end) as miner as_id, shifted to end at end_at, through
    WriteMetrics; returns the wall time when the write was acknowledged."""
    store = alerting.server.app.store
    source = store.get_miner(source_id)
    assert source is not None
    fleet_pb2_grpc.FleetServiceStub(alerting.channel).UpsertMiner(
        fleet_pb2.UpsertMinerRequest(
            miner=common_pb2.Miner(
                miner_id=as_id,
                hardware_model=source.hardware_model,
                make=source.make,
                nominal_hashrate_ths=source.nominal_hashrate_ths,
                nominal_power_w=source.nominal_power_w,
                site="north",
            )
        ),
        timeout=30,
    )
    samples = store.read_samples(source_id, start, end)
    assert samples, f"no samples of {source_id} in [{start}, {end})"
    shift = end_at - samples[-1].timestamp
    reply = telemetry_pb2_grpc.TelemetryServiceStub(alerting.channel).WriteMetrics(
        telemetry_pb2.WriteMetricsRequest(samples=[_proto(s, as_id, shift) for s in samples]), timeout=60
    )
    assert reply.written == len(samples)
    return time.time()


def _failing_source(alerting: Alerting) -> tuple[str, datetime]:
    """A hash-board failure of the training fleet: (miner, the moment 10 minutes before it)."""
    failures = alerting.server.app.store.list_failures(limit=10_000)
    first = next(f for f in sorted(failures, key=lambda f: f.occurred_at) if f.mode == FailureMode.HASH_BOARD)
    return first.miner_id, first.occurred_at - timedelta(minutes=10)


def _healthy_source(alerting: Alerting, hardware_model: str) -> str:
    """A miner of the same hardware model with no recorded failure."""
    store = alerting.server.app.store
    failed = {f.miner_id for f in store.list_failures(limit=10_000)}
    return next(
        m.miner_id
        for m in sorted(store.list_miners(), key=lambda m: m.miner_id)
        if m.hardware_model == hardware_model and m.miner_id not in failed
    )


def _risk_gauge(alerting: Alerting, miner_id: str) -> float | None:
    with urllib.request.urlopen(alerting.metrics_url, timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("mfh_miner_risk_score{") and f'miner_id="{miner_id}"' in line:
                return float(line.rsplit(" ", 1)[1])
    return None


def _wait(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def _prometheus_alert(alerting: Alerting, miner_id: str, state: str) -> dict[str, Any] | None:
    alerts = http_json(alerting.stack.prometheus.url + "/api/v1/alerts")["data"]["alerts"]
    return next(
        (
            a
            for a in alerts
            if a["labels"].get("alertname") == "MinerFailureRiskHigh"
            and a["labels"].get("miner_id") == miner_id
            and a["state"] == state
        ),
        None,
    )


def _is(alert_status: str, miner_id: str) -> Any:
    def match(notification: monitoring.Notification) -> bool:
        return any(
            alert["status"] == alert_status
            and alert["labels"].get("alertname") == "MinerFailureRiskHigh"
            and alert["labels"].get("miner_id") == miner_id
            for alert in notification.payload.get("alerts", [])
        )

    return match


def test_a_failing_miner_pages_through_the_webhook_and_resolves_when_healthy(alerting: Alerting) -> None:
    source_id, before_failure = _failing_source(alerting)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    failing_end = now - HEALTHY_SPAN
    miner_id = "replay-hash-board"

    # 1. Telemetry of a failing miner: 32 h of a hash-board failure's run-up, ending two hours ago.
    started = time.time()
    acked = _replay(
        alerting, source_id, before_failure - timedelta(hours=32), before_failure, miner_id, failing_end
    )
    risk = _wait(
        "risk gauge at or above HIGH",
        lambda: (r := _risk_gauge(alerting, miner_id)) and r >= HIGH_CUTOFF and r,
    )
    scored = time.time()
    pending = _wait(
        "Prometheus alert pending or firing",
        lambda: (
            _prometheus_alert(alerting, miner_id, "pending")
            or _prometheus_alert(alerting, miner_id, "firing")
        ),
    )
    seen_pending = time.time()
    firing = _wait("Prometheus alert firing", lambda: _prometheus_alert(alerting, miner_id, "firing"))
    seen_firing = time.time()
    notification = alerting.webhook.wait_for(_is("firing", miner_id), timeout=60)

    (alert,) = [a for a in notification.payload["alerts"] if a["labels"]["miner_id"] == miner_id]
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["site"] == "north"
    assert alert["labels"]["scope"] == "miner"
    assert alert["labels"]["hardware_model"] == alerting.server.app.store.get_miner(source_id).hardware_model
    assert alert["annotations"]["risk_url"].endswith(f"/api/advanced/predict/failure-risk/{miner_id}")
    assert "inspection" in alert["annotations"]["action"]
    assert notification.path == "/alerts"  # the warning route's receiver (operators-webhook)
    assert risk >= HIGH_CUTOFF and float(firing["value"]) >= HIGH_CUTOFF

    # 2. Healthy telemetry after it: a healthy miner of the same model, up to now.
    healthy_id = _healthy_source(alerting, alerting.server.app.store.get_miner(source_id).hardware_model)
    newest = alerting.server.app.store.read_samples(healthy_id, limit=1)[0].timestamp
    healed_at = _replay(
        alerting,
        healthy_id,
        newest - HEALTHY_SPAN + timedelta(seconds=1),
        newest + timedelta(seconds=1),
        miner_id,
        now,
    )
    _wait(
        "risk gauge below HIGH",
        lambda: (r := _risk_gauge(alerting, miner_id)) is not None and r < HIGH_CUTOFF,
    )
    resolved = alerting.webhook.wait_for(_is("resolved", miner_id), timeout=60)

    timings = {
        "write acknowledged": acked - started,
        "risk gauge >= HIGH on /metrics": scored - started,
        "Prometheus alert pending": seen_pending - started,
        "Prometheus alert firing": seen_firing - started,
        "webhook notified (firing)": notification.received_at - started,
        "webhook notified (resolved) after healthy write": resolved.received_at - healed_at,
    }
    print("\nalert path timings (s):", json.dumps({k: round(v, 2) for k, v in timings.items()}, indent=1))
    print("pending since", pending["activeAt"], "risk", risk)
    assert timings["webhook notified (firing)"] >= timings["Prometheus alert firing"] - 0.5


def test_a_silence_made_through_alertmanagers_api_holds_the_alert_back(alerting: Alerting) -> None:
    source_id, before_failure = _failing_source(alerting)
    miner_id = "replay-silenced"
    am = alerting.stack.alertmanager.url
    silence = http_json(
        am + "/api/v2/silences",
        {
            "matchers": [
                {"name": "alertname", "value": "MinerFailureRiskHigh", "isRegex": False, "isEqual": True},
                {"name": "miner_id", "value": miner_id, "isRegex": False, "isEqual": True},
            ],
            "startsAt": datetime.now(UTC).isoformat(),
            "endsAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            "createdBy": "test",
            "comment": "planned repair",
        },
    )
    silence_id = silence["silenceID"]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    _replay(alerting, source_id, before_failure - timedelta(hours=32), before_failure, miner_id, now)

    _wait("Prometheus alert firing", lambda: _prometheus_alert(alerting, miner_id, "firing"))

    def suppressed() -> dict[str, Any] | None:
        for alert in http_json(am + "/api/v2/alerts?silenced=true"):
            if alert["labels"].get("miner_id") == miner_id:
                return alert if alert["status"]["state"] == "suppressed" else None
        return None

    alert = _wait("Alertmanager holds the alert as suppressed", suppressed)
    assert alert["status"]["silencedBy"] == [silence_id]
    time.sleep(3)  # three group intervals: a notification would have gone out by now
    assert not any(_is("firing", miner_id)(n) for n in alerting.webhook.notifications)

    # Expiring the silence lets the same alert through: the silence was what held it.
    request = urllib.request.Request(f"{am}/api/v2/silence/{silence_id}", method="DELETE")
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200
    alerting.webhook.wait_for(_is("firing", miner_id), timeout=60)
