"""The fleet path's anomaly flags: the decision DetectAnomalies serves, re-decided per site at most
every `anomaly_fleet_decision_interval_s` (240 s by default).

Fleet scoring (ScoreFleet, rescoring rounds) scores every miner's latest window; deciding a site
scores its miners' last FLEET_DECISION_RANGE with their baselines, which costs far more, so a site
decided less than the interval ago keeps its decision and a miner's flag may lag a new window by
that long. State: when each site was last decided, and each miner's last decided window and flag.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from server.config import Settings
from server.domain.anomaly_decision import MinerDecision
from server.domain.scores import LatestScores
from server.domain.site_decisions import MAX_SITE_PEERS, SiteDecider
from server.models.inference import AnomalyScorer
from server.records import Miner, MinerScore
from server.store import FleetStore

FLEET_DECISION_RANGE = timedelta(hours=6)
"""Windows the fleet path decides before its latest one (k of n and hysteresis look back)."""


class FleetDecisions:
    """Per-site decision times and per-miner flags of the fleet path; thread-safe."""

    def __init__(
        self,
        store: FleetStore,
        decider: SiteDecider,
        scores: LatestScores,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._decider = decider
        self._scores = scores
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._decided_at: dict[str, float] = {}  # site key -> clock time of its last decision
        self._flags: dict[str, tuple[int, bool]] = {}  # miner -> (last decided window end s, is_anomaly)

    def due(self, site_key: str) -> bool:
        """Whether the site is to be decided now (never decided, or last decided at least the
        interval ago); a True answer counts as deciding it now."""
        now = self._clock()
        with self._lock:
            last = self._decided_at.get(site_key)
            if last is not None and now - last < self._settings.anomaly_fleet_decision_interval_s:
                return False
            self._decided_at[site_key] = now
            return True

    def record(self, decisions: dict[str, MinerDecision]) -> None:
        """Keeps each miner's latest decided window and its flag."""
        with self._lock:
            for miner_id, decision in decisions.items():
                if decision.ends.size:
                    self._flags[miner_id] = (int(decision.ends[-1]), bool(decision.is_anomaly[-1]))

    def flagged(self, score: MinerScore) -> bool:
        """The decision of the score's own window, or of the one before it within a sample interval."""
        with self._lock:
            flag = self._flags.get(score.miner_id)
        window_end = int(score.window_end.timestamp()) if score.window_end else 0
        return flag is not None and flag[1] and window_end - flag[0] <= self._settings.sample_interval_s

    def decide_latest(self, scorer: AnomalyScorer, scores: list[MinerScore]) -> list[MinerScore]:
        """Each scored miner's site is decided (when due) in groups of up to MAX_SITE_PEERS + 1 miners
        over the last FLEET_DECISION_RANGE, and a score's is_anomaly becomes its latest window's
        decision. Updates the latest scores; returns the new scores. Blocking."""
        if not scores:
            return scores
        by_site: dict[str, list[Miner]] = {}
        for m in self._store.list_miners():
            by_site.setdefault(m.site or m.miner_id, []).append(m)
        site_of = {m.miner_id: key for key, members in by_site.items() for m in members}
        wanted = {site_of[s.miner_id] for s in scores if s.miner_id in site_of}
        for key in sorted(wanted):
            if not self.due(key):
                continue
            members = sorted(by_site[key], key=lambda m: m.miner_id)
            site = members[0].site
            for offset in range(0, len(members), MAX_SITE_PEERS + 1):
                group = members[offset : offset + MAX_SITE_PEERS + 1]
                ids = {m.miner_id for m in group}
                # the group's newest scored window: this round's, else the latest known
                known = [p for i in ids if (p := self._scores.get(i)) is not None]
                ends = [s.window_end for s in (*scores, *known) if s.miner_id in ids and s.window_end]
                if not ends:
                    continue
                newest = max(e for e in ends if e is not None)
                end = newest + timedelta(seconds=1)
                decided = self._decider.decide_group(scorer, site, group, end - FLEET_DECISION_RANGE, end)
                self.record(decided.decisions)
        decided_scores = []
        for score in scores:
            decided_score = replace(score, is_anomaly=self.flagged(score))
            self._scores.put(decided_score)
            decided_scores.append(decided_score)
        return decided_scores
