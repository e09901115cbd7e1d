"""Plain domain records shared by the store, the models and the domain layer.

No protobuf and no SQL here: the transport layer converts these to and from messages, the store
reads and writes them. Times are timezone-aware UTC `datetime`s.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

# The 11 model inputs, in order. The first six are the raw metrics (share counters as per-interval
# deltas, never the cumulative count); the last five are derived in SQL (see server/store/features.py).
FEATURE_COLUMNS: tuple[str, ...] = (
    "hashrate",
    "temperature",
    "fan_speed",
    "power",
    "accepted_shares",
    "rejected_shares",
    "rejection_rate",
    "efficiency",
    "temperature_trend",
    "hashrate_stability",
    "power_efficiency_trend",
)

# Possible readings that a working sensor does not give. Ingestion stores them as reported and flags
# the sample QUALITY_SENSOR_GLITCH; the feature grid reads such a field as missing (store/features.py).
PLAUSIBLE_TEMPERATURE_C = (0.0, 130.0)
PLAUSIBLE_FAN_RPM = 12_000.0
PLAUSIBLE_HASHRATE_FACTOR = 3.0  # times the miner's nominal hashrate

# Unit of each feature, for explanations.
FEATURE_UNITS: dict[str, str] = {
    "hashrate": "TH/s",
    "temperature": "C",
    "fan_speed": "RPM",
    "power": "W",
    "accepted_shares": "shares/interval",
    "rejected_shares": "shares/interval",
    "rejection_rate": "ratio",
    "efficiency": "TH/s per W",
    "temperature_trend": "C/h",
    "hashrate_stability": "ratio",
    "power_efficiency_trend": "TH/s per W per h",
}


class FailureMode(enum.IntEnum):
    """Failed component or cause; values match the proto enum FailureMode."""

    UNSPECIFIED = 0
    FAN = 1
    THERMAL = 2
    HASH_BOARD = 3
    PSU = 4
    POOL = 5
    CHIP = 6
    REBOOT_LOOP = 7
    CONTROL_BOARD = 8
    OUTAGE = 9
    OTHER = 10


class EventSource(enum.IntEnum):
    """Where an event came from; values match the proto enum EventSource."""

    UNSPECIFIED = 0
    MANUAL = 1
    DERIVED = 2
    SIMULATOR = 3


class PlannedStateKind(enum.IntEnum):
    """Planned states; values match the proto enum PlannedStateKind."""

    UNSPECIFIED = 0
    CURTAILMENT = 1
    MAINTENANCE = 2


@dataclass(frozen=True, slots=True)
class Miner:
    """A miner's record."""

    miner_id: str
    hardware_model: str
    make: str = ""
    nominal_hashrate_ths: float = 0.0
    nominal_power_w: float = 0.0
    serial: str = ""
    mac: str = ""
    site: str = ""


@dataclass(frozen=True, slots=True)
class BoardReading:
    """One hash board's readings."""

    index: int
    hashrate_ths: float | None = None
    temperature_c: float | None = None
    chip_temperature_c: float | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """One telemetry sample. None means the reading is missing (never stored as 0)."""

    miner_id: str
    timestamp: datetime
    hashrate_ths: float | None = None
    temperature_c: float | None = None
    fan_speed_rpm: float | None = None
    power_w: float | None = None
    accepted_shares: int | None = None  # cumulative since last reboot
    rejected_shares: int | None = None  # cumulative since last reboot
    boards: tuple[BoardReading, ...] = ()
    fan_speeds_rpm: tuple[float, ...] = ()
    quality: int = 0  # bit set of QUALITY_* flags (server/store/samples.py)


@dataclass(frozen=True, slots=True)
class FailureEvent:
    """A failure or outage of one miner."""

    event_id: str
    miner_id: str
    occurred_at: datetime
    mode: FailureMode
    source: EventSource
    repaired_at: datetime | None = None
    note: str = ""
    repair_source: EventSource = EventSource.UNSPECIFIED
    """Where repaired_at came from (UNSPECIFIED: as `source`, or unrepaired); see events.py."""


@dataclass(frozen=True, slots=True)
class PlannedState:
    """A planned period (curtailment, maintenance) that is never a failure."""

    state_id: str
    miner_id: str
    kind: PlannedStateKind
    start: datetime
    end: datetime
    note: str = ""


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """How much the store holds."""

    miners: int
    samples: int
    failure_events: int
    data_start: datetime | None
    data_end: datetime | None


@dataclass(slots=True)
class WriteResult:
    """What a batch write did."""

    written: int = 0
    duplicates: int = 0
    miners_registered: int = 0
    miner_ids: set[str] = field(default_factory=set)
    kept_raw: int = 0
    """Samples of the batch within raw retention of their miner's newest sample."""
    kept_hourly: int = 0
    """Samples of the batch past it: retention keeps them only as hourly roll-ups."""
    conflicts: int = 0
    """Samples superseded by a later sample of the same miner and time in the batch with other values."""
    conflict_details: list[SampleConflict] = field(default_factory=list)
    """The conflicting (miner, time) keys, at most MAX_CONFLICT_DETAILS."""


@dataclass(frozen=True, slots=True)
class SampleConflict:
    """Samples of one batch that name the same miner and time with different values."""

    miner_id: str
    timestamp: datetime
    samples: tuple[str, ...]
    """Where they were sent, in request order; the last one was stored."""
    fields: tuple[str, ...]
    """The fields whose values differ."""


@dataclass(slots=True)
class MinerSeries:
    """One miner's features on a regular time grid (one row per sample interval).

    Rows with no sample are kept, with NaN values and observed=False: gaps are explicit,
    never interpolated.
    """

    miner_id: str
    timestamps: np.ndarray  # (T,) datetime64[s], UTC, strictly increasing by the sample interval
    values: np.ndarray  # (T, F) float32, columns in FEATURE_COLUMNS order, NaN where missing
    observed: np.ndarray  # (T,) bool, True where a sample exists in that interval

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])


class MinerState(enum.IntEnum):
    """Whether a miner's latest score describes a working miner; values match the proto enum."""

    UNSPECIFIED = 0
    LIVE = 1
    DOWN = 2
    STALE = 3
    RECOVERING = 4


@dataclass(frozen=True, slots=True)
class MinerCondition:
    """What the store knows about a miner's health events (see server/domain/liveness.py)."""

    last_seen: datetime | None = None
    open_failure_at: datetime | None = None
    """The oldest recorded (not derived) failure without a repair."""
    open_failure_mode: int = 0
    open_outage_at: datetime | None = None
    """The start of a derived outage still open."""
    last_repair_at: datetime | None = None
    """The newest repair (or outage end) at or before last_seen."""


@dataclass(frozen=True, slots=True)
class MinerStatus:
    """A miner's state, since when and why, in words."""

    state: MinerState
    since: datetime | None = None
    reason: str = ""


class RiskLevel(enum.IntEnum):
    """Risk levels; values match the proto enum RiskLevel."""

    UNSPECIFIED = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def from_score(cls, risk_score: float, cutoffs: tuple[float, float, float]) -> RiskLevel:
        """LOW below cutoffs[0], MEDIUM below cutoffs[1], HIGH below cutoffs[2], else CRITICAL."""
        medium, high, critical = cutoffs
        if risk_score >= critical:
            return cls.CRITICAL
        if risk_score >= high:
            return cls.HIGH
        if risk_score >= medium:
            return cls.MEDIUM
        return cls.LOW


@dataclass(frozen=True, slots=True)
class MinerScore:
    """A miner's latest scores."""

    miner_id: str
    risk_score: float
    risk_level: RiskLevel
    window_end: datetime | None
    model_version: str
    is_anomaly: bool = False
    anomaly_score: float = 0.0
