"""Technicians' verdicts on risk alerts (RecordFeedback): confirmed or false alarm, per model version."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from server.domain import validation
from server.domain.access import MinerAccess
from server.domain.active_models import ActiveModels
from server.errors import InvalidArgument, next_step
from server.store import FleetStore

MAX_NOTE = validation.MAX_NOTE


class FeedbackVerdict(enum.IntEnum):
    """Values match the proto enum FeedbackVerdict."""

    UNSPECIFIED = 0
    CONFIRMED = 1
    FALSE_ALARM = 2


@dataclass(frozen=True, slots=True)
class Feedback:
    """Stored feedback."""

    feedback_id: str
    miner_id: str
    verdict: FeedbackVerdict
    model_version: str
    recorded_at: datetime
    note: str = ""


class FeedbackLog:
    """Records verdicts; the model version defaults to the active LSTM's."""

    def __init__(
        self,
        store: FleetStore,
        models: ActiveModels,
        access: MinerAccess | None = None,
        known_versions: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self._store = store
        self._models = models
        self._access = access or MinerAccess(store)
        self._known_versions = known_versions  # the model registry's versions (None: not checked)

    async def record(self, miner_id: str, verdict: int, model_version: str, note: str) -> Feedback:
        if verdict not in (FeedbackVerdict.CONFIRMED, FeedbackVerdict.FALSE_ALARM):
            raise InvalidArgument.for_field(
                "verdict", "must be FEEDBACK_VERDICT_CONFIRMED or FEEDBACK_VERDICT_FALSE_ALARM"
            )
        if (violation := validation.text(model_version, "model_version")) is not None:
            raise InvalidArgument.for_fields([violation])
        if (
            model_version
            and self._known_versions is not None
            and model_version not in set(await asyncio.to_thread(self._known_versions))
        ):
            raise InvalidArgument.for_field(
                "model_version",
                f"{model_version!r} is not a version in the model registry; leave it empty for the "
                f"active LSTM or pick one from {next_step('TrainingService.ListModels')}",
            )
        validation.note(note)
        miner = await self._access.resolve(miner_id)  # out of the caller's scope reads as absent
        lstm = self._models.lstm
        version = model_version or (lstm.summary.version if lstm is not None else "")
        recorded_at = datetime.now(UTC)
        feedback_id = await asyncio.to_thread(
            self._store.add_feedback, miner.miner_id, int(verdict), version, note, recorded_at
        )
        return Feedback(feedback_id, miner.miner_id, FeedbackVerdict(verdict), version, recorded_at, note)
