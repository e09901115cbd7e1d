"""Prometheus metrics: RPCs, ingestion, batching, per-miner scores, models, training, fleet state.

Each server owns a registry (no global state, so tests can run several servers in one process) and
serves it over HTTP on metrics_host:metrics_port (loopback by default). RPC metrics are recorded by
the metrics interceptor; fleet, store, model and training gauges are computed on scrape from
in-memory state and a few cheap store reads (cached), never on the request path.

Per-miner series (risk score, anomaly flag, staleness, planned state) are one series per miner and
metric, labelled miner_id, site and hardware_model; `per_miner_metrics=False` leaves them out. The
alert rules in deploy/prometheus/alerts.yml are written on these names: rename nothing lightly.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

import grpc
import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from server.config import Settings
from server.domain.active_models import ActiveModels
from server.domain.feature_cache import FeatureCache
from server.domain.jobs import JobRecord, JobState
from server.domain.scores import LatestScores
from server.records import FEATURE_COLUMNS, Miner, RiskLevel
from server.store import FleetStore

log = logging.getLogger(__name__)

# RPC latency buckets in seconds: sub-millisecond reads up to minute-long fleet scoring.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Dynamic-batch sizes (requests per forward pass); batch_max_size is at most 4096.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# Store reads behind the gauges (last sample per miner, miner records, planned states, feedback)
# are cached this long, so frequent scrapes stay cheap.
STORE_READ_TTL_S = 30.0
MINER_LABELS = ["miner_id", "site", "hardware_model"]
FEEDBACK_WINDOW = 10_000  # newest verdicts read for the live precision
# Latest readings exported per miner (feature column -> unit), for the dashboard's one-miner view.
# The name is the value of the `reading` label of mfh_miner_reading.
READINGS = {
    "hashrate": "TH/s",
    "temperature": "C",
    "fan_speed": "RPM",
    "power": "W",
    "rejection_rate": "ratio",
}


def build_version() -> str:
    try:
        return metadata.version("mining-fleet-health")
    except metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """The server's metrics and the registry that serves them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mfh_rpc_requests",
            "RPCs handled, by method and final status code.",
            ["method", "code"],
            registry=r,
        )
        self.errors = Counter(
            "mfh_rpc_errors",
            "RPCs that ended with a status other than OK (client cancellations are not errors).",
            ["method", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "mfh_rpc_duration_seconds",
            "RPC duration from the first byte to the status, by method (streams: their whole life).",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.samples_ingested = Counter(
            "mfh_samples_ingested", "Telemetry samples written (WriteMetrics and IngestMetrics).", registry=r
        )
        self.subscribers = Gauge("mfh_subscribers", "Open score subscriptions.", registry=r)
        self.rate_limited = Counter(
            "mfh_rate_limited", "Calls refused by the per-client rate limit.", ["method"], registry=r
        )
        self.refused = Counter(
            "mfh_refused_calls",
            "Calls refused before they ran (UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED).",
            ["outcome"],
            registry=r,
        )
        self.batch_size = Histogram(
            "mfh_batch_size",
            "Prediction requests coalesced into one forward pass by the dynamic batcher.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.site_events = Gauge(
            "mfh_site_event_active",
            "1 while a site-wide event of this kind is open at the site, 0 once it closed.",
            ["site", "kind"],
            registry=r,
        )
        build = Gauge(
            "mfh_build_info",
            "Always 1: the server's version and the Python and gRPC it runs on.",
            ["version", "python_version", "grpc_version"],
            registry=r,
        )
        build.labels(build_version(), platform.python_version(), grpc.__version__).set(1)
        # The standard process_* (CPU, memory, open files, start time), python_info and python_gc_*.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self._http: Any = None
        self._http_thread: threading.Thread | None = None

    def set_site_event(self, site: str, kind: str, active: bool) -> None:
        """Marks a site-wide event of `kind` at `site` open (1) or closed (0) for the SiteEvent alert."""
        self.site_events.labels(site, kind).set(1.0 if active else 0.0)

    def add(self, collector: Collector) -> None:
        self.registry.register(collector)

    def serve(self, host: str, port: int) -> int:
        """Starts the /metrics HTTP endpoint; returns its port."""
        self._http, self._http_thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._http.server_port)

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(5)
            self._http_thread = None


class _Cached:
    """A store read kept for STORE_READ_TTL_S seconds (monotonic), refreshed on demand."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self._read = read
        self._value: Any = None
        self._at = -STORE_READ_TTL_S
        self._lock = threading.Lock()

    def get(self, *, refresh: bool = False) -> Any:
        with self._lock:
            if refresh or time.monotonic() - self._at >= STORE_READ_TTL_S:
                self._value = self._read()
                self._at = time.monotonic()
            return self._value


class FleetCollector(Collector):
    """Gauges computed on scrape: risk levels, per-miner scores, staleness, planned states, models,
    training, store size, and the settings the alert rules compare against."""

    def __init__(
        self,
        store: FleetStore,
        scores: LatestScores,
        models: ActiveModels,
        settings: Settings,
        cache: FeatureCache | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._scores = scores
        self._models = models
        self._settings = settings
        self._clock = clock or (lambda: datetime.now(UTC))
        self._miners = _Cached(lambda: {m.miner_id: m for m in store.list_miners()})
        # miner_stats is one GROUP BY over the samples.
        self._last_seen = _Cached(lambda: {k: v[1] for k, v in store.miner_stats().items()})
        self._planned = _Cached(store.list_planned_states)
        self._feedback = _Cached(lambda: store.list_feedback(None, FEEDBACK_WINDOW))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self._clock()
        yield from self._settings_gauges()
        yield from self._scores_gauges(now)
        yield from self._model_gauges()
        if not self._store.is_open:
            return
        try:
            yield self._store_size()
            yield self._newest_sample_age(now)
            yield from self._training()
            yield from self._live_precision()
            if self._settings.per_miner_metrics:
                yield from self._per_miner(now)
        except Exception:  # noqa: BLE001 - a scrape must never fail because the store is closing
            log.debug("metrics scrape: store gauges skipped", exc_info=True)

    def _settings_gauges(self) -> Iterator[GaugeMetricFamily]:
        # The rules compare against these, so a setting changes the server and its alerts together.
        cutoffs = GaugeMetricFamily(
            "mfh_risk_cutoff", "Risk score at which a level starts (setting risk_cutoffs).", labels=["level"]
        )
        for level, cutoff in zip(("MEDIUM", "HIGH", "CRITICAL"), self._settings.risk_cutoffs, strict=True):
            cutoffs.add_metric([level], cutoff)
        yield cutoffs
        yield GaugeMetricFamily(
            "mfh_silent_after_seconds",
            "No telemetry for this long makes a miner silent (setting outage_after_minutes).",
            value=self._settings.outage_after_minutes * 60.0,
        )
        yield GaugeMetricFamily(
            "mfh_per_miner_metrics_enabled",
            "1 when per-miner series are exported (setting per_miner_metrics).",
            value=1.0 if self._settings.per_miner_metrics else 0.0,
        )

    def _scores_gauges(self, now: datetime) -> Iterator[GaugeMetricFamily]:
        scores = self._scores.snapshot().values()
        by_level = GaugeMetricFamily(
            "mfh_miners_by_risk_level", "Miners by the risk level of their latest score.", labels=["level"]
        )
        for level in (RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH, RiskLevel.CRITICAL):
            by_level.add_metric([level.name], sum(1 for s in scores if s.risk_level == level))
        yield by_level
        hour_ago = now - timedelta(hours=1)
        yield GaugeMetricFamily(
            "mfh_anomalous_miners_last_hour",
            "Miners whose latest anomaly score, over a window ending in the last hour, is an anomaly.",
            value=sum(1 for s in scores if s.is_anomaly and s.window_end and s.window_end >= hour_ago),
        )

    def _model_gauges(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "mfh_model_info", "Always 1: the version of each kind's active model.", labels=["kind", "version"]
        )
        trained = GaugeMetricFamily(
            "mfh_model_trained_timestamp_seconds",
            "When the active model of this kind was trained (Unix seconds).",
            labels=["kind"],
        )
        activated = GaugeMetricFamily(
            "mfh_model_activated_timestamp_seconds",
            "When a model of this kind last became active in this server (start, promotion, rollback).",
            labels=["kind"],
        )
        for kind, loaded in (("lstm", self._models.lstm), ("autoencoder", self._models.autoencoder)):
            if loaded is None:
                continue
            info.add_metric([kind, loaded.summary.version], 1.0)
            if loaded.summary.trained_at is not None:
                trained.add_metric([kind], loaded.summary.trained_at.timestamp())
            if kind in self._models.activated_at:
                activated.add_metric([kind], self._models.activated_at[kind])
        yield info
        yield trained
        yield activated

    def _live_precision(self) -> Iterator[GaugeMetricFamily]:
        """Technicians' verdicts (RecordFeedback) on the active LSTM's alerts: confirmed failures over
        all verdicts. Absent until a verdict exists for the active version."""
        lstm = self._models.lstm
        verdicts = GaugeMetricFamily(
            "mfh_model_feedback_verdicts",
            "Verdicts recorded on the active LSTM version's alerts, by verdict (newest 10,000 read).",
            labels=["kind", "verdict"],
        )
        precision = GaugeMetricFamily(
            "mfh_model_live_precision",
            "Confirmed failures / all verdicts recorded on the active model version's alerts.",
            labels=["kind"],
        )
        if lstm is not None:
            version = lstm.summary.version
            rows = [r for r in self._feedback.get() if r.get("model_version") == version]
            confirmed = sum(1 for r in rows if int(str(r.get("verdict"))) == 1)
            false_alarms = sum(1 for r in rows if int(str(r.get("verdict"))) == 2)
            verdicts.add_metric(["lstm", "CONFIRMED"], confirmed)
            verdicts.add_metric(["lstm", "FALSE_ALARM"], false_alarms)
            if confirmed + false_alarms:
                precision.add_metric(["lstm"], confirmed / (confirmed + false_alarms))
        yield verdicts
        yield precision

    def _store_size(self) -> GaugeMetricFamily:
        size = self._store.size_bytes()
        return GaugeMetricFamily(
            "mfh_store_size_bytes",
            "Store size on disk (DuckDB file and log, or PostgreSQL relations).",
            value=size,
        )

    def _newest_sample_age(self, now: datetime) -> GaugeMetricFamily:
        seen = [t for t in self._last_seen.get().values() if t is not None]
        family = GaugeMetricFamily(
            "mfh_newest_sample_age_seconds", "Seconds since the newest sample of any miner (fleet-wide)."
        )
        if seen:
            family.add_metric([], max(0.0, (now - max(seen)).total_seconds()))
        return family

    def _miner_labels(self, miner_ids: set[str]) -> dict[str, Miner]:
        miners: dict[str, Miner] = self._miners.get()
        if not miner_ids <= miners.keys():  # a miner registered since the last read
            miners = self._miners.get(refresh=True)
        return miners

    def _per_miner(self, now: datetime) -> Iterator[GaugeMetricFamily]:
        scores = self._scores.snapshot()
        last_seen: dict[str, datetime | None] = self._last_seen.get()
        miners = self._miner_labels(set(scores) | set(last_seen))

        def labels(miner_id: str) -> list[str]:
            miner = miners.get(miner_id)
            return [miner_id, miner.site if miner else "", miner.hardware_model if miner else ""]

        risk = GaugeMetricFamily(
            "mfh_miner_risk_score", "Latest failure-risk score of each miner (0-1).", labels=MINER_LABELS
        )
        anomaly = GaugeMetricFamily(
            "mfh_miner_anomaly",
            "1 when the miner's latest window is an anomaly, else 0.",
            labels=MINER_LABELS,
        )
        for miner_id, score in sorted(scores.items()):
            if score.model_version:  # scored by an LSTM
                risk.add_metric(labels(miner_id), score.risk_score)
            anomaly.add_metric(labels(miner_id), 1.0 if score.is_anomaly else 0.0)
        yield risk
        yield anomaly
        staleness = GaugeMetricFamily(
            "mfh_data_staleness_seconds",
            "Seconds since the newest sample of each miner.",
            labels=MINER_LABELS,
        )
        for miner_id, seen in sorted(last_seen.items()):
            if seen is not None:
                staleness.add_metric(labels(miner_id), max(0.0, (now - seen).total_seconds()))
        yield staleness
        planned = GaugeMetricFamily(
            "mfh_miner_planned_state",
            "1 while the miner is in a planned state (curtailment, maintenance), by its kind.",
            labels=[*MINER_LABELS, "kind"],
        )
        current: dict[tuple[str, str], None] = {}
        for state in self._planned.get():
            if state.start <= now < state.end:
                current[(state.miner_id, state.kind.name)] = None
        for miner_id, kind in sorted(current):
            planned.add_metric([*labels(miner_id), kind], 1.0)
        yield planned
        yield self._readings(labels)

    def _readings(self, labels: Callable[[str], list[str]]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "mfh_miner_reading",
            "Latest reading of each miner in the last hour: hashrate TH/s, temperature C, fan RPM, power W.",
            labels=[*MINER_LABELS, "reading"],
        )
        columns = [(name, FEATURE_COLUMNS.index(name)) for name in READINGS]
        for _, series in sorted(
            self._cache.items() if self._cache is not None else [], key=lambda e: e[0].miner_id
        ):
            recent = series.values[-12:]  # (T, F): the last hour; a reading missing for longer is absent
            for name, column in columns:
                finite = recent[:, column][~np.isnan(recent[:, column])]
                if finite.size:
                    family.add_metric([*labels(series.miner_id), name], float(finite[-1]))
        return family

    def _training(self) -> Iterator[GaugeMetricFamily]:
        latest: dict[str, JobRecord] = {}
        for raw in self._store.list_jobs(None, 20):  # newest first
            job = JobRecord.from_dict(raw)
            latest.setdefault(job.kind.name, job)
        running = GaugeMetricFamily(
            "mfh_training_running", "1 while a training job of this kind runs.", labels=["kind"]
        )
        epoch = GaugeMetricFamily(
            "mfh_training_epoch", "Epochs done by the latest training job of this kind.", labels=["kind"]
        )
        loss = GaugeMetricFamily(
            "mfh_training_loss", "Latest epoch's loss of the latest job, by split.", labels=["kind", "split"]
        )
        state = GaugeMetricFamily(
            "mfh_training_last_job_state",
            "1 for the state of the latest training job of this kind (QUEUED ... FAILED, INTERRUPTED).",
            labels=["kind", "state", "job_id"],
        )
        for kind, job in sorted(latest.items()):
            running.add_metric([kind], 1.0 if job.state in (JobState.QUEUED, JobState.RUNNING) else 0.0)
            epoch.add_metric([kind], job.epoch)
            loss.add_metric([kind, "train"], job.train_loss)
            loss.add_metric([kind, "validation"], job.val_loss)
            state.add_metric([kind, job.state.name, job.job_id], 1.0)
        yield running
        yield epoch
        yield loss
        yield state


class RescoreCollector(Collector):
    """Fleet rescoring after a model became active: progress of the latest run, computed on scrape."""

    def __init__(self, progress: Callable[[], Any]) -> None:
        self._progress = progress  # () -> server.domain.rescoring.RescoreProgress

    def collect(self) -> Iterator[GaugeMetricFamily]:
        p = self._progress()
        yield GaugeMetricFamily(
            "mfh_rescore_running", "1 while the fleet is being re-scored.", value=int(p.running)
        )
        yield GaugeMetricFamily(
            "mfh_rescore_miners_total", "Miners the latest fleet rescoring covers.", value=p.miners_total
        )
        yield GaugeMetricFamily(
            "mfh_rescore_miners_done",
            "Miners the latest fleet rescoring has done so far.",
            value=p.miners_done,
        )
        yield GaugeMetricFamily(
            "mfh_rescore_runs", "Fleet rescorings finished since start (model changes).", value=p.runs
        )
        yield GaugeMetricFamily(
            "mfh_rescore_last_duration_seconds",
            "Wall time of the latest fleet rescoring.",
            value=p.last_duration_s,
        )
