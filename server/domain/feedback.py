"""Technicians' verdicts on risk alerts (RecordFeedback): confirmed or false alarm, per model version."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from datetime import UTC, datetime

from server.domain import validation
from server.domain.active_models import ActiveModels
from server.errors import InvalidArgument, MinerNotFound
from server.store import Store

MAX_NOTE = 1000


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

    def __init__(self, store: Store, models: ActiveModels) -> None:
        self._store = store
        self._models = models

    async def record(self, miner_id: str, verdict: int, model_version: str, note: str) -> Feedback:
        validation.miner_id(miner_id)
        if verdict not in (FeedbackVerdict.CONFIRMED, FeedbackVerdict.FALSE_ALARM):
            raise InvalidArgument.for_field(
                "verdict", "must be FEEDBACK_VERDICT_CONFIRMED or FEEDBACK_VERDICT_FALSE_ALARM"
            )
        if len(model_version) > 128:
            raise InvalidArgument.for_field("model_version", "must be at most 128 characters")
        if len(note) > MAX_NOTE:
            raise InvalidArgument.for_field("note", f"must be at most {MAX_NOTE} characters")
        miner = await asyncio.to_thread(self._store.get_miner, miner_id)
        if miner is None:
            raise MinerNotFound(miner_id)
        lstm = self._models.lstm
        version = model_version or (lstm.summary.version if lstm is not None else "")
        recorded_at = datetime.now(UTC)
        feedback_id = await asyncio.to_thread(
            self._store.add_feedback, miner.miner_id, int(verdict), version, note, recorded_at
        )
        return Feedback(feedback_id, miner.miner_id, FeedbackVerdict(verdict), version, recorded_at, note)
