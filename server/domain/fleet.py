"""Fleet status and miners: what the store holds and what the models say about it."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from server import __version__, auth
from server.config import Settings
from server.domain import validation
from server.domain.active_models import ActiveModels, ModelSummary
from server.domain.scores import LatestScores
from server.errors import InvalidArgument, MinerNotFound, PermissionDenied
from server.models.registry import ModelRegistry, ModelVersionInfo
from server.records import FEATURE_COLUMNS, Miner, MinerScore, RiskLevel, StoreCounts
from server.store import Store


@dataclass(frozen=True, slots=True)
class StatusInfo:
    lstm: ModelSummary | None
    autoencoder: ModelSummary | None
    feature_columns: tuple[str, ...]
    sequence_length: int
    horizon_hours: int
    counts: StoreCounts
    server_version: str
    not_activated: dict[int, tuple[str, str]] = field(default_factory=dict)
    """ModelKind -> (newest version, why it is not active) when the newest version is not active."""


@dataclass(frozen=True, slots=True)
class MinerView:
    """A miner's record with its data coverage and latest scores."""

    miner: Miner
    sample_count: int
    last_seen: datetime | None
    score: MinerScore | None


@dataclass(frozen=True, slots=True)
class MinerPage:
    miners: list[MinerView]
    next_page_token: str
    total: int


MAX_PAGE_SIZE = 1000


class Fleet:
    """Status and miner listing."""

    def __init__(
        self,
        store: Store,
        models: ActiveModels,
        scores: LatestScores,
        settings: Settings,
        on_miner_changed: Callable[[list[str]], None] | None = None,
    ) -> None:
        self._on_miner_changed = on_miner_changed  # e.g. the feature cache re-reading the record
        self._store = store
        self._models = models
        self._scores = scores
        self._settings = settings

    async def status(self) -> StatusInfo:
        counts = await asyncio.to_thread(self._store.counts)
        if auth.current().scoped:  # a scoped token learns only about its own miners
            counts = await asyncio.to_thread(self._scoped_counts, counts)
        lstm, autoencoder = self._models.lstm, self._models.autoencoder
        not_activated = await asyncio.to_thread(self._not_activated)
        return StatusInfo(
            lstm=lstm.summary if lstm else None,
            autoencoder=autoencoder.summary if autoencoder else None,
            feature_columns=FEATURE_COLUMNS,
            sequence_length=self._settings.sequence_length,
            horizon_hours=self._settings.horizon_hours,
            counts=counts,
            server_version=__version__,
            not_activated=not_activated,
        )

    def _not_activated(self) -> dict[int, tuple[str, str]]:
        """Per kind, the newest registered version when it is not the active one, and why."""
        out: dict[int, tuple[str, str]] = {}
        newest: dict[int, ModelVersionInfo] = {}
        for info in ModelRegistry(self._settings.models_dir).list():  # newest first
            newest.setdefault(int(info.kind), info)
        for kind, info in newest.items():
            if not info.active:
                note = info.promotion_note or "registered; another version is active"
                out[kind] = (info.version, note)
        return out

    def _scoped_counts(self, counts: StoreCounts) -> StoreCounts:
        visible = {m.miner_id for m in auth.visible(self._store.list_miners())}
        stats = self._store.miner_stats()
        seen = [last for count, last in (stats.get(m, (0, None)) for m in visible) if last is not None]
        failures = self._store.list_failures(None, 10_000_000)
        return StoreCounts(
            miners=len(visible),
            samples=sum(stats[m][0] for m in visible if m in stats),
            failure_events=sum(1 for e in failures if e.miner_id in visible),
            data_start=counts.data_start if seen else None,
            data_end=max(seen) if seen else None,
        )

    async def get_miner(self, miner_id: str) -> MinerView:
        validation.miner_id(miner_id)
        miner = await asyncio.to_thread(self._store.get_miner, miner_id)
        if miner is None or not auth.can_see(miner):  # out of the caller's scope reads as absent
            raise MinerNotFound(miner_id)
        stats = await asyncio.to_thread(self._store.miner_stats)
        count, last_seen = stats.get(miner.miner_id, (0, None))
        return MinerView(miner, count, last_seen, self._scores.get(miner.miner_id))

    async def upsert_miner(self, miner: Miner) -> MinerView:
        validation.miner_id(miner.miner_id, "miner.miner_id")
        if not miner.hardware_model:
            raise InvalidArgument.for_field("miner.hardware_model", "is required, e.g. 'Antminer S19 Pro'")
        for name in ("nominal_hashrate_ths", "nominal_power_w"):
            if not getattr(miner, name) >= 0:
                raise InvalidArgument.for_field(f"miner.{name}", "must be >= 0")
        if auth.current().scoped:
            existing = await asyncio.to_thread(self._store.get_miner, miner.miner_id)
            if not auth.can_see(miner) or (existing is not None and not auth.can_see(existing)):
                # The same answer whether the miner exists or not: nothing leaks.
                raise PermissionDenied(
                    "miner.miner_id: this token may only register or change miners in its own scope",
                    reason="OUT_OF_SCOPE",
                )
        stored = await asyncio.to_thread(self._store.upsert_miners, [miner])
        if self._on_miner_changed is not None:
            await asyncio.to_thread(self._on_miner_changed, stored)
        return await self.get_miner(miner.miner_id)

    async def list_miners(
        self,
        *,
        page_size: int,
        page_token: str,
        min_risk_level: RiskLevel,
        hardware_model: str,
        site: str,
    ) -> MinerPage:
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidArgument.for_field("page_size", f"must be between 0 and {MAX_PAGE_SIZE} (0 = 100)")
        page_size = page_size or 100
        after = _decode_token(page_token)
        miners = await asyncio.to_thread(self._store.list_miners)
        stats = await asyncio.to_thread(self._store.miner_stats)
        scores = self._scores.snapshot()
        views = []
        for miner in auth.visible(miners):
            if hardware_model and miner.hardware_model != hardware_model:
                continue
            if site and miner.site != site:
                continue
            score = scores.get(miner.miner_id)
            if min_risk_level and (score is None or score.risk_level < min_risk_level):
                continue
            count, last_seen = stats.get(miner.miner_id, (0, None))
            views.append(MinerView(miner, count, last_seen, score))
        # Highest risk first, then by id: a total order, so keyset page tokens are stable.
        views.sort(key=_sort_key)
        start = 0
        if after is not None:
            while start < len(views) and _sort_key(views[start]) <= after:
                start += 1
        page = views[start : start + page_size]
        more = start + page_size < len(views)
        token = _encode_token(_sort_key(page[-1])) if page and more else ""
        return MinerPage(page, token, len(views))


def _sort_key(view: MinerView) -> tuple[float, str]:
    risk = view.score.risk_score if view.score else -1.0
    return (-risk, view.miner.miner_id)


def _encode_token(key: tuple[float, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_token(token: str) -> tuple[float, str] | None:
    if not token:
        return None
    try:
        risk, miner_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return (float(risk), str(miner_id))
    except (ValueError, TypeError) as exc:
        raise InvalidArgument.for_field(
            "page_token", "is not a token this server issued; pass next_page_token from the previous page"
        ) from exc
