"""Risk-history storage on a real DuckDB file: keys replace in place, retention prunes, the switch works."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from server.config import Settings
from server.domain.active_models import ActiveModels
from server.domain.history import History
from server.domain.housekeeping import apply_retention
from server.records import Miner, MinerScore, RiskLevel
from server.store import Store
from server.store.history import RiskPoint

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _point(miner_id: str, minutes: int, version: str, risk: float, anomaly_version: str = "") -> RiskPoint:
    return RiskPoint(
        miner_id=miner_id,
        window_end=T0 + timedelta(minutes=minutes),
        model_version=version,
        risk_score=risk,
        risk_level=RiskLevel.from_score(risk, (0.25, 0.5, 0.75)),
        is_anomaly=bool(anomaly_version),
        anomaly_score=0.5 if anomaly_version else 0.0,
        anomaly_model_version=anomaly_version,
        scored_at=T0 + timedelta(minutes=minutes, seconds=30),
    )


def _store(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "fleet.duckdb")
    store.upsert_miners(
        [Miner(miner_id=m, hardware_model="Antminer S19 Pro") for m in ("10.0.0.1", "10.0.0.2")]
    )
    return store


def test_the_same_window_and_version_reads_as_the_latest_scored_other_versions_add(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        store.write_risk_points([_point("10.0.0.1", 0, "v1", 0.1), _point("10.0.0.1", 5, "v1", 0.2)])
        rescored = replace(_point("10.0.0.1", 5, "v1", 0.9, "ae1"), scored_at=T0 + timedelta(hours=1))
        store.write_risk_points([rescored, _point("10.0.0.1", 5, "v2", 0.3)])
        store.write_risk_points([_point("10.0.0.2", 5, "v1", 0.4)])
        points = store.read_risk_points("10.0.0.1", T0, T0 + timedelta(hours=1))
        assert [(p.window_end - T0, p.model_version, p.risk_score) for p in points] == [
            (timedelta(0), "v1", 0.1),
            (timedelta(minutes=5), "v1", 0.9),
            (timedelta(minutes=5), "v2", 0.3),
        ]
        assert points[1].risk_level == RiskLevel.CRITICAL and points[1].anomaly_model_version == "ae1"
        assert points[1].is_anomaly and points[1].scored_at == T0 + timedelta(hours=1)
        # start inclusive, end exclusive
        assert (
            len(store.read_risk_points("10.0.0.1", T0 + timedelta(minutes=5), T0 + timedelta(hours=1))) == 2
        )
        assert len(store.read_risk_points("10.0.0.1", T0, T0 + timedelta(minutes=5))) == 1


def test_retention_deletes_points_older_than_the_setting(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, risk_history_retention_days=30)
    now = datetime.now(UTC)
    old, recent = (
        replace(_point("10.0.0.1", 0, "v1", r), window_end=now - timedelta(days=d))
        for r, d in ((0.1, 40), (0.2, 20))
    )
    with _store(tmp_path) as store:
        store.write_risk_points([old, recent])
        apply_retention(store, settings)  # risk points age by the wall clock
        (kept,) = store.read_risk_points("10.0.0.1", now - timedelta(days=90), now)
        assert kept.risk_score == 0.2


def test_points_survive_reopening_the_store(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        store.write_risk_points([_point("10.0.0.1", 0, "v1", 0.1)])
    with Store.open(tmp_path / "fleet.duckdb") as reopened:
        assert [p.risk_score for p in reopened.read_risk_points("10.0.0.1", T0, T0 + timedelta(days=1))] == [
            0.1
        ]


def test_recording_writes_nothing_when_risk_history_is_off(tmp_path: Path) -> None:
    score = MinerScore("10.0.0.1", 0.6, RiskLevel.HIGH, T0, "v1", is_anomaly=False, anomaly_score=0.0)
    with _store(tmp_path) as store:
        off = History(store, ActiveModels(), Settings(data_dir=tmp_path, risk_history=False))
        assert off.record([score]) == 0
        assert store.read_risk_points("10.0.0.1", T0, T0 + timedelta(days=1)) == []
        on = History(store, ActiveModels(), Settings(data_dir=tmp_path))
        assert on.record([score]) == 1
        (point,) = store.read_risk_points("10.0.0.1", T0, T0 + timedelta(days=1))
        assert (point.model_version, point.risk_level, point.anomaly_model_version) == (
            "v1",
            RiskLevel.HIGH,
            "",
        )
