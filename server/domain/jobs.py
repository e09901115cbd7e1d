"""Training-job records: states, parameters and defaults, persisted in the store as JSON."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from server.models import ModelKind


class JobState(enum.IntEnum):
    """Values match the proto enum JobState."""

    UNSPECIFIED = 0
    QUEUED = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    CANCELLED = 5
    INTERRUPTED = 6

    @property
    def final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED)


@dataclass(frozen=True, slots=True)
class TrainParams:
    epochs: int
    batch_size: int
    validation_split: float
    seed: int


# The documented defaults: (epochs, batch_size, validation_split).
DEFAULTS: dict[ModelKind, tuple[int, int, float]] = {
    ModelKind.LSTM: (50, 32, 0.2),
    ModelKind.AUTOENCODER: (100, 32, 0.1),
}
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 4096


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class JobRecord:
    """A training job and its progress."""

    job_id: str
    kind: ModelKind
    params: TrainParams
    state: JobState = JobState.QUEUED
    epoch: int = 0
    train_loss: float = 0.0
    val_loss: float = 0.0
    elapsed_seconds: float = 0.0
    samples_per_second: float = 0.0
    created_at: datetime = field(default_factory=_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    model_version: str = ""
    promoted: bool = False
    request_id: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["kind"] = int(self.kind)
        record["state"] = int(self.state)
        for name in ("created_at", "started_at", "finished_at"):
            value = getattr(self, name)
            record[name] = value.isoformat() if value else None
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> JobRecord:
        values = dict(record)
        values["kind"] = ModelKind(values["kind"])
        values["state"] = JobState(values["state"])
        values["params"] = TrainParams(**values["params"])
        for name in ("created_at", "started_at", "finished_at"):
            if values.get(name):
                values[name] = datetime.fromisoformat(values[name])
        return cls(**values)
