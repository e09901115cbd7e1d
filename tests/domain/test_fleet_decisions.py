"""FleetDecisions: a site is re-decided at most every interval; a score's flag is its window's decision."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from server.config import Settings
from server.domain.anomaly_decision import MinerDecision
from server.domain.fleet_decisions import FleetDecisions
from server.domain.scores import LatestScores
from server.domain.site_decisions import SiteDecider
from server.records import MinerScore, RiskLevel
from server.store import Store

T = 1_767_225_600  # 2026-01-01 00:00 UTC


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _decision(ends: list[int], flags: list[bool]) -> MinerDecision:
    n = len(ends)
    zeros = np.zeros(n)
    return MinerDecision(
        np.array(ends, np.int64), zeros, zeros, zeros, np.array(flags), np.zeros(n, np.int64), np.array(flags)
    )


def _score(miner_id: str, end_s: int) -> MinerScore:
    return MinerScore(miner_id, 0.2, RiskLevel.LOW, datetime.fromtimestamp(end_s, UTC), "v1", False, 0.1)


def _decisions(tmp_path: Path, clock: Clock, interval_s: float = 240.0) -> FleetDecisions:
    settings = Settings(data_dir=tmp_path, anomaly_fleet_decision_interval_s=interval_s)
    store = Store.open(tmp_path / "fleet.duckdb")
    return FleetDecisions(store, SiteDecider(store, settings), LatestScores(), settings, clock=clock)


def test_a_site_is_due_once_per_interval(tmp_path: Path) -> None:
    clock = Clock()
    decisions = _decisions(tmp_path, clock)
    assert decisions.due("north") and decisions.due("south")
    clock.now = 239.0
    assert not decisions.due("north")
    clock.now = 240.0
    assert decisions.due("north") and not decisions.due("north")


def test_interval_zero_decides_every_round(tmp_path: Path) -> None:
    decisions = _decisions(tmp_path, Clock(), interval_s=0.0)
    assert all(decisions.due("north") for _ in range(3))


def test_a_score_carries_the_decision_of_its_window_or_the_one_before(tmp_path: Path) -> None:
    decisions = _decisions(tmp_path, Clock())
    decisions.record(
        {"a": _decision([T - 300, T], [False, True]), "b": _decision([T], [False]), "c": _decision([], [])}
    )
    assert decisions.flagged(_score("a", T))
    assert decisions.flagged(_score("a", T + 300))  # one sample interval newer: the flag holds
    assert not decisions.flagged(_score("a", T + 600))  # older decision than that: not flagged
    assert not decisions.flagged(_score("b", T))
    assert not decisions.flagged(_score("c", T)) and not decisions.flagged(_score("unknown", T))
