"""Anomaly decisions of a site's miners together, from their autoencoder errors and the store's context.

DetectAnomalies and the fleet path (server/domain/fleet_decisions.py) both decide a miner's windows
with its site peers: each miner against its own baseline, the site's same-time behaviour taken out,
planned states, failures and restarts as context (server/domain/anomaly_decision.py). A decision
that reaches the newest windows also updates the site's open events (`site_events`, for gauges).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from server.config import Settings
from server.domain.anomaly_decision import (
    DEFAULT_DECISION,
    SHORT_GAP_S,
    DecisionSettings,
    MinerDecision,
    MinerInput,
    Prior,
    context_reasons,
    decide_site,
    restarts,
    window_temperature,
)
from server.domain.site_events import SiteEvent, SiteEvents, kind_of, utc
from server.domain.window_memo import history_for
from server.errors import InsufficientHistory
from server.models.inference import AnomalyScorer, WindowBatch
from server.records import FEATURE_COLUMNS, Miner, MinerSeries
from server.store import FleetStore

MAX_SITE_PEERS = 40
"""DetectAnomalies scores at most this many other miners of the site (the site's same-time behaviour)."""


@dataclass(frozen=True, slots=True)
class GroupDecision:
    """The anomaly decision of a group of miners of one site (see SiteDecider.decide_group)."""

    items: dict[str, MinerInput]
    batches: dict[str, tuple[WindowBatch, np.ndarray]]  # miner -> (its windows, channel errors (N, C))
    decisions: dict[str, MinerDecision]
    events: list[SiteEvent]
    prior: Prior


class SiteDecider:
    """Decides groups of one site's miners; holds the decision settings and the latest site events."""

    def __init__(self, store: FleetStore, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self.decision: DecisionSettings = DEFAULT_DECISION
        self.site_events = SiteEvents()
        """The latest site events per site, as the anomaly decisions found them (for gauges)."""

    def peers(self, miner: Miner) -> list[Miner]:
        """The miner and up to MAX_SITE_PEERS others of its site (by id), the miner first."""
        if not miner.site:
            return [miner]
        others = sorted(
            (m for m in self._store.list_miners() if m.site == miner.site and m.miner_id != miner.miner_id),
            key=lambda m: m.miner_id,
        )
        return [miner, *others[:MAX_SITE_PEERS]]

    def _input(
        self,
        scorer: AnomalyScorer,
        miner: Miner,
        series: MinerSeries,
        baseline_start: datetime,
        start: datetime,
        end: datetime,
    ) -> tuple[MinerInput, WindowBatch, np.ndarray]:
        """One miner's windows from baseline_start to end (the baseline part on the baseline grid),
        their channel errors (N, C) and the context the store knows."""
        cfg, interval = self.decision, self._settings.sample_interval_s
        batch = scorer.prepare(series, miner, start=baseline_start, end=end)
        ends = batch.window_ends.astype(np.int64)
        keep = (ends >= int(start.timestamp()) - SHORT_GAP_S) | (  # k of n looks back a little
            (ends // interval) % cfg.baseline_stride == 0
        )
        batch = batch.select(keep)
        ends = ends[keep]
        channel_errors = scorer.channel_errors(batch.x) if batch.x.shape[0] else np.zeros((0, 1))
        errors = channel_errors.mean(axis=1) if batch.x.shape[0] else np.zeros(0)
        planned = [
            (int(p.start.timestamp()), int(p.end.timestamp()))
            for p in self._store.list_planned_states(miner.miner_id)
        ]
        downtime = [
            (int(f.occurred_at.timestamp()), int((f.repaired_at or datetime.now(UTC)).timestamp()))
            for f in self._store.list_failures(miner.miner_id, limit=10_000)
        ]
        grid = series.timestamps.astype("datetime64[s]").astype(np.int64)
        restart_times = restarts(
            grid,
            series.values[:, 0],
            series.observed,
            miner.nominal_hashrate_ths or 1.0,
            cfg.restart_idle_samples,
        )
        context = context_reasons(ends, planned, downtime, restart_times, cfg)
        last_hour = batch.raw[:, -12:, :]  # (N, 12, 11) raw features of each window's last hour
        temperature = window_temperature(last_hour[:, :, FEATURE_COLUMNS.index("temperature")])
        hashrate = window_temperature(
            last_hour[:, :, FEATURE_COLUMNS.index("hashrate")] / max(miner.nominal_hashrate_ths or 1.0, 1e-9)
        )
        rejection = window_temperature(last_hour[:, :, FEATURE_COLUMNS.index("rejection_rate")])
        item = MinerInput(ends, errors, context, temperature, hashrate, rejection, restart_times)
        return item, batch, channel_errors

    def decide_group(
        self,
        scorer: AnomalyScorer,
        site: str,
        peers: list[Miner],
        start: datetime,
        end: datetime,
        required: str = "",
    ) -> GroupDecision:
        """Scores a group of miners of one site from the start of the baseline and decides every
        window together (the site's same-time behaviour, site events); updates the site's open events
        when the range reaches the newest windows. `required` (a miner id) must have a window, else
        INSUFFICIENT_HISTORY; other miners without one are left out. Blocking."""
        cfg, interval = self.decision, self._settings.sample_interval_s
        baseline_start = start - timedelta(hours=cfg.baseline_hours)
        history = timedelta(seconds=history_for(scorer) * interval)
        series = self._store.load_series(
            [m.miner_id for m in peers], baseline_start - history, end + timedelta(seconds=1)
        )
        items: dict[str, MinerInput] = {}
        batches: dict[str, tuple[WindowBatch, np.ndarray]] = {}
        for peer in peers:
            one = series.get(peer.miner_id)
            if one is None or len(one) < scorer.window.sequence_length:
                if peer.miner_id == required:
                    have = int(np.sum(one.observed)) if one is not None else 0
                    raise InsufficientHistory(required, have, scorer.window.sequence_length)
                continue
            item, batch, channel_errors = self._input(scorer, peer, one, baseline_start, start, end)
            items[peer.miner_id] = item
            batches[peer.miner_id] = (batch, channel_errors)
        prior = Prior.from_errors(scorer.val_errors, cfg.scale_floor)
        if not items:
            return GroupDecision(items, batches, {}, [], prior)
        decisions, spans = decide_site(site or peers[0].miner_id, items, prior, cfg, interval)
        last_scored = max((int(i.ends[-1]) for i in items.values() if i.ends.size), default=0)
        events = []
        for span in spans:
            tops = []
            for peer_id in span.miner_ids:
                batch, channel_errors = batches[peer_id]
                ends = items[peer_id].ends
                inside = np.flatnonzero(
                    (ends >= span.start) & (ends <= span.end) & decisions[peer_id].deviates
                )
                if inside.size:
                    tops += scorer.top_features(channel_errors[inside])
            events.append(
                SiteEvent(
                    site=site,
                    kind=span.kind or kind_of(tops),
                    start=utc(span.start),
                    end=utc(span.end),
                    open=span.end >= last_scored,
                    miners_affected=span.peak_miners,
                    miners_reporting=span.reporting,
                    miner_ids=span.miner_ids,
                )
            )
        if site and end >= utc(last_scored) - timedelta(seconds=interval):
            self.site_events.update(site, [e for e in events if e.end >= start])
        return GroupDecision(items, batches, decisions, events, prior)
