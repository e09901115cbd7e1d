"""What the domain needs from a store, in domain types: the seam between the domain and an engine.

Two engines implement it: `DuckDBStore` (server/store/db.py, one embedded file, the default) and
`PostgresStore` (server/store/postgres/, a shared PostgreSQL database, `--store postgresql://...`).
`open_store` (server/store/open.py) picks one from the store URL. The semantics of every method are
the same on both; the store tests run each against both engines (tests/store/conftest.py).

Conventions for every method: miner ids given may be aliases (an old IP, the serial, the MAC) and
results carry the miner's own miner_id; times are timezone-aware UTC (a naive time given is taken as
UTC); an unknown miner raises MinerNotFound; a write is one transaction (all of it or none of it); a
closed store raises StoreClosed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from server.records import (
    BoardReading,
    FailureEvent,
    Miner,
    MinerCondition,
    MinerSeries,
    PlannedState,
    Sample,
    StoreCounts,
    WriteResult,
)
from server.store.history import RiskPoint, TelemetryRows
from server.store.outages import OutageSync


class FleetStore(Protocol):
    """A fleet's miners, telemetry, events, risk history and training jobs."""

    # ---- lifecycle -----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool: ...

    @property
    def sample_interval_s(self) -> int:
        """The telemetry grid interval (seconds) the feature query buckets samples into."""
        ...

    @property
    def description(self) -> str:
        """Where the data lives, for logs: a file path or a URL without its password."""
        ...

    def close(self) -> None:
        """Close; later calls raise StoreClosed. Closing twice is harmless."""
        ...

    def schema_version(self) -> int:
        """The highest applied migration of this engine's list."""
        ...

    def size_bytes(self) -> int:
        """Bytes the store takes on disk (file plus log, or the database's relations)."""
        ...

    def copy_to(self, target: Path) -> None:
        """A consistent backup of the store into the file `target`, taken while it serves; an engine
        with its own backup tools raises FailedPrecondition naming them."""
        ...

    def checkpoint(self) -> None:
        """Make a large write durable and compact (after a seed); may do nothing."""
        ...

    # ---- miners --------------------------------------------------------------------------------

    def upsert_miners(self, records: Sequence[Miner]) -> list[str]: ...

    def get_miner(self, miner_id: str) -> Miner | None: ...

    def list_miners(self) -> list[Miner]: ...

    def lookup_miners(self, aliases: Sequence[str]) -> dict[str, Miner]: ...

    def miner_stats(self) -> dict[str, tuple[int, datetime | None]]:
        """miner_id -> (sample count, newest sample time) for every miner."""
        ...

    # ---- samples -------------------------------------------------------------------------------

    def write_samples(
        self,
        batch: Sequence[Sample],
        *,
        auto_register: bool = True,
        default_hardware_model: str = "unknown",
        identities: Mapping[str, Miner] | None = None,
    ) -> WriteResult: ...

    def bulk_append_columns(
        self,
        miner_id: np.ndarray,
        ts: np.ndarray,
        *,
        hashrate_ths: np.ndarray,
        temperature_c: np.ndarray,
        fan_speed_rpm: np.ndarray,
        power_w: np.ndarray,
        accepted_shares: np.ndarray,
        rejected_shares: np.ndarray,
        board_hashrate_ths: np.ndarray | None = None,
        board_temperature_c: np.ndarray | None = None,
        fan_speeds_rpm: np.ndarray | None = None,
        board_readings: Sequence[Sequence[BoardReading]] | None = None,
        fan_readings: Sequence[Sequence[float]] | None = None,
        quality: int | np.ndarray = 0,
        auto_register: bool = True,
        default_hardware_model: str = "unknown",
        identities: Mapping[str, Miner] | None = None,
    ) -> WriteResult:
        """Samples in columns (N rows each); semantics in server/store/samples.py."""
        ...

    def read_samples(
        self,
        miner_id: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> list[Sample]: ...

    def counts(self) -> StoreCounts: ...

    def newest_sample(self) -> datetime | None: ...

    def miner_newest_sample(self, miner_id: str) -> datetime | None: ...

    # ---- features ------------------------------------------------------------------------------

    def load_series(
        self,
        miner_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> dict[str, MinerSeries]:
        """Feature series (definition in server/store/features.py) of miners in [start, end)."""
        ...

    def recent_series(self, miner_id: str, n_samples: int) -> MinerSeries:
        """A miner's window: the last n_samples grid rows ending at its newest sample."""
        ...

    def read_telemetry(self, miner_id: str, start: datetime, end: datetime, step_s: int) -> TelemetryRows:
        """A miner's readings and features per step (definition in server/store/history.py)."""
        ...

    # ---- failure events, planned states, outages, feedback --------------------------------------

    def add_failure(self, event: FailureEvent, *, silent: timedelta | None = None) -> FailureEvent: ...

    def add_failures(self, records: Sequence[FailureEvent], *, silent: timedelta | None = None) -> None: ...

    def get_failure(self, event_id: str) -> FailureEvent | None: ...

    def list_failures(self, miner_id: str | None = None, limit: int = 100) -> list[FailureEvent]: ...

    def record_repair(
        self, event_id: str, repaired_at: datetime, note: str | None
    ) -> FailureEvent | None: ...

    def derive_repairs(self, miner_ids: Sequence[str], silent: timedelta) -> int: ...

    def miner_conditions(self, last_seen: dict[str, datetime] | None = None) -> dict[str, MinerCondition]: ...

    def add_planned_state(self, state: PlannedState) -> None: ...

    def add_planned_states(self, records: Sequence[PlannedState]) -> None: ...

    def list_planned_states(self, miner_id: str | None = None) -> list[PlannedState]: ...

    def sync_derived_outages(
        self,
        miner_ids: Sequence[str] | None,
        since: datetime,
        min_duration: timedelta,
        *,
        open_silence: bool = True,
    ) -> OutageSync:
        """Derive outages from telemetry and reconcile them (definition in server/store/outages.py)."""
        ...

    def add_feedback(
        self,
        miner_id: str,
        verdict: int,
        model_version: str = "",
        note: str = "",
        recorded_at: datetime | None = None,
    ) -> str: ...

    def list_feedback(self, miner_id: str | None = None, limit: int = 100) -> list[dict[str, object]]: ...

    # ---- retention -----------------------------------------------------------------------------

    def roll_up_samples(self, retention: timedelta) -> tuple[int, int]:
        """Fold raw samples past retention into hourly rows; returns (hourly rows, raw deleted)."""
        ...

    def count_past_horizon(self, aliases: np.ndarray, ts: np.ndarray, retention: timedelta) -> int: ...

    def recent_times(
        self, aliases: np.ndarray, until: np.ndarray, lookback: timedelta, limit: int
    ) -> dict[str, list[datetime]]:
        """alias -> its miner's newest `limit` sample times in [until - lookback, until), oldest first."""
        ...

    def read_hourly(self, miner_id: str) -> list[dict[str, object]]: ...

    # ---- risk history --------------------------------------------------------------------------

    def write_risk_points(self, points: Sequence[RiskPoint]) -> int: ...

    def read_risk_points(self, miner_id: str, start: datetime, end: datetime) -> list[RiskPoint]: ...

    def prune_risk_points(self, before: datetime) -> int: ...

    # ---- training jobs -------------------------------------------------------------------------

    def save_job(self, job_id: str, record: dict[str, Any]) -> None: ...

    def get_job(self, job_id: str) -> dict[str, Any] | None: ...

    def list_jobs(self, kind: int | None = None, limit: int = 50) -> list[dict[str, Any]]: ...

    def find_job_by_request_id(self, request_id: str) -> dict[str, Any] | None: ...
