"""Fleet status and miners: what the store holds and what the models say about it."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from server import __version__
from server.config import Settings
from server.domain import liveness, validation
from server.domain.access import MinerAccess
from server.domain.active_models import ActiveModels, ModelSummary
from server.domain.scores import LatestScores
from server.errors import InvalidArgument, PermissionDenied
from server.hardware import known_model
from server.models.registry import ModelRegistry, ModelVersionInfo
from server.records import FEATURE_COLUMNS, Miner, MinerScore, MinerStatus, RiskLevel, StoreCounts
from server.store import FleetStore


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
    status: MinerStatus = liveness.LIVE
    """Live, down, stale or recovering (see liveness.py)."""
    warnings: tuple[str, ...] = ()
    """UpsertMiner only: e.g. a hardware model the catalogue does not know."""


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
        store: FleetStore,
        models: ActiveModels,
        scores: LatestScores,
        settings: Settings,
        on_miner_changed: Callable[[list[str]], None] | None = None,
        access: MinerAccess | None = None,
    ) -> None:
        self._access = access or MinerAccess(store)
        self._on_miner_changed = on_miner_changed  # e.g. the feature cache re-reading the record
        self._store = store
        self._models = models
        self._scores = scores
        self._settings = settings

    async def status(self) -> StatusInfo:
        counts = await asyncio.to_thread(self._store.counts)
        if self._access.scoped():  # a scoped token learns only about its own miners
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
        visible = self._access.visible_ids_blocking() or frozenset()
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
        miner = await self._access.resolve(miner_id)
        stats = await asyncio.to_thread(self._store.miner_stats)
        count, last_seen = stats.get(miner.miner_id, (0, None))
        statuses = liveness.statuses(await asyncio.to_thread(self._store.miner_conditions), self._settings)
        status = statuses.get(miner.miner_id, liveness.LIVE)
        return MinerView(miner, count, last_seen, self._scores.get(miner.miner_id), status)

    async def upsert_miner(self, miner: Miner) -> MinerView:
        validation.miner_record(miner, "miner")
        # Identity resolution (serial, then MAC, then the id) decides which miner this changes: every
        # key that names a miner must name one the caller may see, and so must the record it leaves.
        keys = [k for k in (miner.serial.strip(), miner.mac.strip(), miner.miner_id) if k]
        known = await asyncio.to_thread(self._store.lookup_miners, keys)
        target = next((known[k] for k in keys if k in known), None)
        result = replace(miner, site=miner.site or (target.site if target else ""))
        if not (self._access.allows(result) and self._access.may_claim(keys, known)):
            # The same answer whether the miner exists or not: nothing leaks.
            raise PermissionDenied(
                "miner.miner_id: this token may only register or change miners in its own scope",
                reason="OUT_OF_SCOPE",
            )
        miner, warnings = with_nameplate(miner)  # fills what the record leaves empty
        stored = await asyncio.to_thread(self._store.upsert_miners, [miner])
        if self._on_miner_changed is not None:
            await asyncio.to_thread(self._on_miner_changed, stored)
        # the miner changed, which the path id may only alias
        return replace(await self.get_miner(stored[0]), warnings=warnings)

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
        statuses = liveness.statuses(await asyncio.to_thread(self._store.miner_conditions), self._settings)
        scores = self._scores.snapshot()
        views = []
        for miner in self._access.visible(miners):
            if hardware_model and miner.hardware_model != hardware_model:
                continue
            if site and miner.site != site:
                continue
            score = scores.get(miner.miner_id)
            if min_risk_level and (score is None or score.risk_level < min_risk_level):
                continue
            count, last_seen = stats.get(miner.miner_id, (0, None))
            status = statuses.get(miner.miner_id, liveness.LIVE)
            views.append(MinerView(miner, count, last_seen, score, status))
        # Live miners first, then recovering, down, stale (liveness.RANK); within each, highest risk
        # first, then by id: a total order, so keyset page tokens are stable.
        views.sort(key=_sort_key)
        start = 0
        if after is not None:
            while start < len(views) and _sort_key(views[start]) <= after:
                start += 1
        page = views[start : start + page_size]
        more = start + page_size < len(views)
        token = _encode_token(_sort_key(page[-1])) if page and more else ""
        return MinerPage(page, token, len(views))


def with_nameplate(miner: Miner) -> tuple[Miner, tuple[str, ...]]:
    """A registered miner with the catalogue's model name, make and nameplate figures filled in where
    the record leaves them empty (0 or ""); values given win. An unknown model is kept as given,
    with a warning saying so."""
    catalogued = known_model(miner.hardware_model)
    if catalogued is None:
        return miner, (
            f"hardware_model {miner.hardware_model!r} is not in the catalogue: make and nominal hashrate "
            "and power stay as given (0 = unknown), and the models compare the miner with its own median",
        )
    return replace(
        miner,
        hardware_model=catalogued.name,
        make=miner.make or catalogued.make,
        nominal_hashrate_ths=miner.nominal_hashrate_ths or catalogued.hashrate_ths,
        nominal_power_w=miner.nominal_power_w or catalogued.power_w,
    ), ()


def _sort_key(view: MinerView) -> tuple[int, float, str]:
    risk = view.score.risk_score if view.score else -1.0
    return (liveness.RANK[view.status.state], -risk, view.miner.miner_id)


def _encode_token(key: tuple[int, float, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_token(token: str) -> tuple[int, float, str] | None:
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
        if len(key) == 2:  # a token from before miner states: (negated risk, id) among live miners
            key = [0, *key]
        rank, risk, miner_id = key
        return (int(rank), float(risk), str(miner_id))
    except (ValueError, TypeError) as exc:
        raise InvalidArgument.for_field(
            "page_token", "is not a token this server issued; pass next_page_token from the previous page"
        ) from exc
