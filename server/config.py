"""Typed settings: every port, path, size and timeout, from flags and MFH_* environment variables."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server settings. Each field reads from the env var MFH_<FIELD NAME> and from --field-name."""

    model_config = SettingsConfigDict(env_prefix="MFH_", extra="ignore", use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """Address the gRPC server binds."""
    grpc_port: int = Field(50051, ge=0, le=65535)
    """gRPC port; 0 picks a free one (tests)."""
    data_dir: Path = Path("var")
    """Folder holding the DuckDB file, the model registry and the job records."""
    db_file: str = "fleet.duckdb"
    """DuckDB file name inside data_dir."""
    store: str = ""
    """Store URL: empty = the DuckDB file data_dir/db_file; postgresql://user@host:port/db = PostgreSQL."""
    seed_demo_fleet: bool = True
    """Seed the store with the simulated demo fleet when it holds no miners."""
    demo_miners: int = Field(200, ge=1, le=100_000)
    """Miners in the demo fleet."""
    demo_days: float = Field(30.0, gt=0, le=3650)
    """Days of history in the demo fleet."""
    demo_seed: int = 7
    """Random seed of the demo fleet."""
    sample_interval_s: int = Field(300, ge=1)
    """Telemetry interval in seconds (5 minutes); the feature grid uses it."""
    sequence_length: int = Field(24, ge=2, le=2016)
    """Window length in samples fed to the models (24 x 5 min = 2 h)."""
    horizon_hours: int = Field(24, ge=1, le=24 * 30)
    """Failure-prediction horizon: the label is a failure within this many hours after the window."""
    risk_cutoffs: tuple[float, float, float] = (0.25, 0.5, 0.75)
    """Risk-score cut-offs for MEDIUM, HIGH and CRITICAL."""
    train_threads: int = Field(1, ge=1)
    """Torch threads for training (serving keeps the other core)."""
    serve_threads: int = Field(1, ge=1)
    """Torch threads for inference."""
    train_patience: int = Field(10, ge=1)
    """Early stopping: epochs without a better validation loss before training stops."""
    train_seed: int = 42
    """Default training seed."""
    gate_lstm_min_auc_lower: float = Field(0.55, ge=0.0, le=1.0)
    """Promotion gate: an LSTM is activated only when the lower end of its validation ROC-AUC 95 %
    interval (bootstrap over validation miners) reaches this (chance 0.5 + a 0.05 margin); 0 turns
    the check off."""
    gate_autoencoder_min_recall: float = Field(0.5, ge=0.0, le=1.0)
    """Promotion gate: an autoencoder is activated only when at least this share of the recorded
    failures (of every miner: it trains on healthy windows only) has a window above its threshold (the
    99th percentile of healthy validation errors, i.e. 1 % false alarms per window) in the 24 h
    before; 0 turns the check off."""
    log_level: str = "INFO"
    """Log level: DEBUG, INFO, WARNING, ERROR."""
    log_json: bool = False
    """Log one JSON object per line instead of plain text."""
    with_envoy: bool = False
    """Also start Envoy (REST on http_host:http_port, admin on loopback) and stop it on exit."""
    http_host: str = "127.0.0.1"
    """Address Envoy's REST/gRPC listener binds."""
    http_port: int = Field(5000, ge=0, le=65535)
    """Envoy's REST/gRPC listener port."""
    envoy_admin_port: int = Field(9901, ge=0, le=65535)
    """Envoy's admin port (always bound to 127.0.0.1)."""
    auto_register_miners: bool = True
    """Register unknown miners on their first sample; off, their batch is rejected (INVALID_ARGUMENT)."""
    max_batch_samples: int = Field(100_000, ge=1)
    """Most samples one WriteMetrics batch may carry."""
    backfill_after_minutes: float = Field(60.0, gt=0)
    """A batch whose newest sample is older than this is a backfill (an import of history): re-scored
    only when it moves a miner's latest window, once per import (see import_settle_ms)."""
    outage_after_minutes: float = Field(30.0, gt=0)
    """Silence: no hashrate (zero or no samples) for longer than this is a derived outage, and a miner
    this far behind the fleet's newest sample is listed STALE (ScoreFleet, ListMiners)."""
    outage_lookback_hours: float = Field(6.0, gt=0)
    """Derived outages: how far before a batch (or before the newest sample) each scan looks."""
    outage_scan_interval_s: float = Field(300.0, ge=0)
    """Seconds between fleet-wide outage scans (catches miners that went silent); 0 turns it off."""
    raw_retention_days: float = Field(90.0, gt=0)
    """Raw samples this much older than their miner's newest sample are rolled up into hourly rows
    (samples_hourly) and deleted; the age counts from the data, never the wall clock."""
    retention_interval_s: float = Field(3600.0, ge=0)
    """Seconds between retention roll-ups; 0 turns them off."""
    risk_history: bool = True
    """Store a risk-history point for every newly scored window (GET .../miners/{id}/risk-history)."""
    risk_history_retention_days: float = Field(365.0, gt=0)
    """Risk-history points whose window ended longer ago than this are deleted (with the roll-up)."""
    rescore_chunk_miners: int = Field(500, ge=1)
    """Fleet rescoring after a model change scores this many miners per step, with progress logged."""
    anomaly_fleet_decision_interval_s: float = Field(240.0, ge=0)
    """Fleet anomaly flags (ListMiners, subscriptions, gauges) re-decide a site at most this often;
    between decisions a miner's flag is its last decided window's (0 decides every round)."""
    batch_max_size: int = Field(64, ge=1, le=4096)
    """Dynamic batching: most prediction requests coalesced into one forward pass."""
    batch_max_delay_ms: float = Field(2.0, ge=0, le=1000)
    """Dynamic batching: longest a request waits for others to join its batch, in milliseconds."""
    rescore_interval_ms: float = Field(200.0, ge=0)
    """Re-scoring after ingestion: bursts for the same miners within this time are coalesced."""
    import_settle_ms: float = Field(2000.0, ge=0)
    """Backfill batches sent as separate WriteMetrics calls are one import until none came for this
    long; then each miner whose latest window moved is re-scored and published once (an IngestMetrics
    stream is one import until it ends)."""
    subscriber_queue: int = Field(256, ge=1)
    """Updates buffered per subscriber; a slower subscriber is told how many it missed."""
    grace_seconds: float = Field(5.0, ge=0)
    """Seconds in-flight requests get to finish on SIGTERM."""
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Largest gRPC message accepted, in bytes."""
    auth_tokens_file: Path | None = None
    """Tokens file (JSON) turning on bearer-token auth with roles and miner scopes; unset = auth off."""
    tls_cert_file: Path | None = None
    """PEM certificate of the gRPC server; with tls_key_file it serves TLS only."""
    tls_key_file: Path | None = None
    """PEM private key of the gRPC server's certificate."""
    tls_client_ca_file: Path | None = None
    """PEM CA bundle; when set the gRPC server requires client certificates signed by it (mTLS)."""
    http_tls_cert_file: Path | None = None
    """PEM certificate of Envoy's REST/gRPC listener; with http_tls_key_file it serves HTTPS only."""
    http_tls_key_file: Path | None = None
    """PEM private key of Envoy's listener certificate."""
    metrics_host: str = "127.0.0.1"
    """Address the Prometheus /metrics endpoint binds (loopback: scrape through a local agent)."""
    metrics_port: int = Field(9464, ge=-1, le=65535)
    """Prometheus /metrics port; 0 picks a free one, -1 turns the endpoint off."""
    backup_dir: Path | None = None
    """Where FleetService/Backup (POST /api/advanced/backup) writes backups; unset = data_dir/backups
    (put it on another disk to survive losing the data directory's)."""
    per_miner_metrics: bool = True
    """Export per-miner series on /metrics (risk, anomaly, staleness, planned state, readings)."""
    audit_log_file: Path | None = None
    """Audit log (JSON lines: who trained, cancelled, activated, wrote); unset = data_dir/audit.log."""
    expensive_calls_per_minute: float = Field(30.0, gt=0)
    """Rate limit per client (token name, else peer address) for Train and ScoreFleet: refill rate."""
    expensive_calls_burst: int = Field(10, ge=1)
    """Rate limit per client for Train and ScoreFleet: calls allowed back to back."""
    max_subscriptions: int = Field(256, ge=1)
    """Most concurrent score subscriptions; more answer RESOURCE_EXHAUSTED."""
    max_subscriptions_per_token: int = Field(16, ge=1)
    """Most concurrent score subscriptions of one token (or one client address with auth off)."""
    trusted_proxies: str = ""
    """Comma-separated proxy addresses or CIDRs whose x-forwarded-for names the client (e.g. a remote
    Envoy); empty = none. Envoy started with --with-envoy connects over a private Unix socket and is
    trusted without this."""

    @model_validator(mode="after")
    def _tls_files_in_pairs(self) -> Settings:
        for cert, key in (("tls_cert_file", "tls_key_file"), ("http_tls_cert_file", "http_tls_key_file")):
            if (getattr(self, cert) is None) != (getattr(self, key) is None):
                raise ValueError(f"{cert} and {key} go together: set both or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        return self

    @model_validator(mode="after")
    def _trusted_proxies_parse(self) -> Settings:
        self.trusted_proxy_networks  # noqa: B018 - parsing is the check
        return self

    @property
    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        networks = []
        for entry in (e.strip() for e in self.trusted_proxies.split(",")):
            if entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError as exc:
                    raise ValueError(f"trusted_proxies: {entry!r} is not an address or CIDR") from exc
        return networks

    @model_validator(mode="after")
    def _cutoffs_increase(self) -> Settings:
        medium, high, critical = self.risk_cutoffs
        if not 0.0 < medium < high < critical < 1.0:
            raise ValueError(f"risk_cutoffs must increase strictly inside (0, 1), got {self.risk_cutoffs}")
        return self

    @property
    def db_path(self) -> Path:
        return self.data_dir / self.db_file

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def backup_path(self) -> Path:
        return self.backup_dir or self.data_dir / "backups"

    @property
    def audit_path(self) -> Path:
        return self.audit_log_file or self.data_dir / "audit.log"
