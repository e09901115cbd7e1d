"""Training-job records: states, parameters and transitions, persisted in the store as JSON.

A job is a small state machine. Its record changes only through its transitions (queue, wait, start,
progress, succeed, fail, cancel, interrupt); each returns the next record and checks the move in one
place (MOVES), so a finished job can never be moved again:

    QUEUED ──start──▶ RUNNING ──progress──▶ RUNNING
      │                  │
      └──────────────────┴──▶ SUCCEEDED (from RUNNING only) | FAILED | CANCELLED | INTERRUPTED

The defaults of a training request live in server/models/train_config.py (TRAINING_DEFAULTS).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from server.models import ModelKind
from server.models.train_config import MAX_BATCH_SIZE, MAX_EPOCHS, TRAINING_DEFAULTS


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
        return not MOVES[self]


MOVES: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset(
        {JobState.QUEUED, JobState.RUNNING, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED}
    ),
    JobState.RUNNING: frozenset(
        {JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED}
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.INTERRUPTED: frozenset(),
    JobState.UNSPECIFIED: frozenset(),
}
"""The states each state may move to; a final state moves nowhere."""


@dataclass(frozen=True, slots=True)
class TrainParams:
    epochs: int
    batch_size: int
    validation_split: float
    seed: int


__all__ = ["MAX_BATCH_SIZE", "MAX_EPOCHS", "TRAINING_DEFAULTS", "JobRecord", "JobState", "TrainParams"]


class IllegalTransition(RuntimeError):
    """A job was asked to make a move its state does not allow (a bug, never a client's error)."""


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

    # -- transitions: each returns the next record; the current one is left as it was ---------------

    @classmethod
    def queue(cls, job_id: str, kind: ModelKind, params: TrainParams, request_id: str = "") -> JobRecord:
        """A new job, QUEUED."""
        return cls(job_id=job_id, kind=kind, params=params, request_id=request_id, message="queued")

    def wait(self) -> JobRecord:
        """Still QUEUED, behind the running training job."""
        return self._move(JobState.QUEUED, message="queued: waits for the running training job to finish")

    def start(self) -> JobRecord:
        """RUNNING: the worker process has started."""
        return self._move(JobState.RUNNING, started_at=_now(), message="training")

    def progress(
        self,
        *,
        elapsed_seconds: float,
        epoch: int,
        train_loss: float,
        val_loss: float,
        samples_per_second: float,
    ) -> JobRecord:
        """RUNNING: one more epoch done."""
        return self._move(
            JobState.RUNNING,
            elapsed_seconds=elapsed_seconds,
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            samples_per_second=samples_per_second,
            message=f"epoch {epoch}/{self.params.epochs} train_loss={train_loss:.5f} val_loss={val_loss:.5f}",
        )

    def succeed(
        self,
        *,
        elapsed_seconds: float,
        model_version: str,
        promoted: bool,
        promotion_note: str = "",
        training_note: str = "",
        **outcome: Any,
    ) -> JobRecord:
        """SUCCEEDED: a model was registered (and made active when `promoted`; else promotion_note
        says why the active model stays); training_note says how it was validated."""
        kept = (
            " and made it active"
            if promoted
            else f"; {promotion_note or 'the active model is as good or better, kept it'}"
        )
        if training_note:
            kept += f"; {training_note}"
        return self._move(
            JobState.SUCCEEDED,
            finished_at=_now(),
            elapsed_seconds=elapsed_seconds,
            model_version=model_version,
            promoted=promoted,
            message=f"registered {model_version}{kept}",
            **outcome,
        )

    def fail(self, error: str, *, elapsed_seconds: float | None = None) -> JobRecord:
        """FAILED, with what went wrong (safe to show a client)."""
        elapsed = self.elapsed_seconds if elapsed_seconds is None else elapsed_seconds
        return self._move(
            JobState.FAILED, finished_at=_now(), elapsed_seconds=elapsed, error=error, message="failed"
        )

    def cancel(self, message: str = "cancelled", *, elapsed_seconds: float | None = None) -> JobRecord:
        """CANCELLED on request, before it trained or (message says so) after an epoch."""
        elapsed = self.elapsed_seconds if elapsed_seconds is None else elapsed_seconds
        return self._move(JobState.CANCELLED, finished_at=_now(), elapsed_seconds=elapsed, message=message)

    def interrupt(self, error: str, message: str, *, elapsed_seconds: float | None = None) -> JobRecord:
        """INTERRUPTED: the server stopped (or restarted) while the job was queued or running."""
        elapsed = self.elapsed_seconds if elapsed_seconds is None else elapsed_seconds
        return self._move(
            JobState.INTERRUPTED, finished_at=_now(), elapsed_seconds=elapsed, error=error, message=message
        )

    def _move(self, to: JobState, **changes: Any) -> JobRecord:
        """The one place that checks a move."""
        if to not in MOVES[self.state]:
            raise IllegalTransition(f"job {self.job_id}: {self.state.name} cannot move to {to.name}")
        return replace(self, state=to, **changes)

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
