"""Prometheus metrics: RPC counts, errors and latency, ingestion, subscribers, training, fleet state.

Each server owns a registry (no global state, so tests can run several servers in one process) and
serves it over HTTP on metrics_host:metrics_port (loopback by default). RPC metrics are recorded by
the metrics interceptor; fleet, store and training gauges are computed on scrape from in-memory
state and a few cheap store reads (cached), never on the request path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from server.domain.jobs import JobRecord, JobState
from server.domain.scores import LatestScores
from server.records import RiskLevel
from server.store import Store

log = logging.getLogger(__name__)

# RPC latency buckets in seconds: sub-millisecond reads up to minute-long fleet scoring.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STALENESS_TTL_S = 30.0


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
            "mfh_rpc_errors", "RPCs that ended with a status other than OK.", ["method", "code"], registry=r
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
        self._http: Any = None
        self._http_thread: threading.Thread | None = None

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


class FleetCollector(Collector):
    """Gauges computed on scrape: risk levels, anomalies, data staleness, store size, training progress."""

    def __init__(
        self, store: Store, scores: LatestScores, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._store = store
        self._scores = scores
        self._clock = clock or (lambda: datetime.now(UTC))
        self._last_seen: dict[str, datetime | None] = {}
        self._last_seen_at = -STALENESS_TTL_S
        self._lock = threading.Lock()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self._clock()
        yield from self._scores_gauges(now)
        if not self._store.is_open:
            return
        try:
            yield self._store_size()
            yield self._staleness(now)
            yield from self._training()
        except Exception:  # noqa: BLE001 - a scrape must never fail because the store is closing
            log.debug("metrics scrape: store gauges skipped", exc_info=True)

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

    def _store_size(self) -> GaugeMetricFamily:
        path: Path = self._store.path
        size = sum(p.stat().st_size for p in (path, path.with_name(path.name + ".wal")) if p.exists())
        return GaugeMetricFamily("mfh_store_size_bytes", "DuckDB file plus its write-ahead log.", value=size)

    def _staleness(self, now: datetime) -> GaugeMetricFamily:
        # miner_stats is one GROUP BY over the samples: cached so frequent scrapes stay cheap.
        with self._lock:
            if time.monotonic() - self._last_seen_at >= STALENESS_TTL_S:
                self._last_seen = {k: v[1] for k, v in self._store.miner_stats().items()}
                self._last_seen_at = time.monotonic()
            last_seen = dict(self._last_seen)
        family = GaugeMetricFamily(
            "mfh_data_staleness_seconds",
            "Seconds since the newest sample of each miner.",
            labels=["miner_id"],
        )
        for miner_id, seen in sorted(last_seen.items()):
            if seen is not None:
                family.add_metric([miner_id], max(0.0, (now - seen).total_seconds()))
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
        for kind, job in sorted(latest.items()):
            running.add_metric([kind], 1.0 if job.state in (JobState.QUEUED, JobState.RUNNING) else 0.0)
            epoch.add_metric([kind], job.epoch)
            loss.add_metric([kind, "train"], job.train_loss)
            loss.add_metric([kind, "validation"], job.val_loss)
        yield running
        yield epoch
        yield loss
