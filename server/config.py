"""Typed settings: every port, path, size and timeout, from flags and MFH_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
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
    seed_demo_fleet: bool = True
    """Seed the store with the simulated demo fleet when it holds no miners."""
    demo_miners: int = Field(60, ge=1, le=100_000)
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
    train_seed: int = 42
    """Default training seed."""
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
    """Register unknown miners on their first sample; off, their samples are rejected (NOT_FOUND)."""
    max_batch_samples: int = Field(100_000, ge=1)
    """Most samples one WriteMetrics batch may carry."""
    grace_seconds: float = Field(5.0, ge=0)
    """Seconds in-flight requests get to finish on SIGTERM."""
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Largest gRPC message accepted, in bytes."""

    @property
    def db_path(self) -> Path:
        return self.data_dir / self.db_file

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"
