"""Miners and aliases, failure events, planned states, feedback and training jobs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from store_builders import T0, at, sample

from server.errors import MinerNotFound
from server.records import EventSource, FailureEvent, FailureMode, Miner, PlannedState, PlannedStateKind
from server.store import Store


def test_miner_keeps_its_history_when_its_ip_changes(store: Store) -> None:
    store.upsert_miners(
        [Miner("192.168.1.100", "Antminer S19 Pro", "Bitmain", 110, 3250, "SN1", "AA-BB-CC-00-00-01")]
    )
    store.write_samples([sample("192.168.1.100", 0)])
    # The miner comes back at a new IP, reported with its serial.
    ids = store.upsert_miners([Miner("192.168.1.150", "Antminer S19 Pro", serial="SN1", site="row-2")])
    assert ids == ["192.168.1.100"]
    result = store.write_samples([sample("192.168.1.150", 1)])
    assert result.miners_registered == 0 and result.miner_ids == {"192.168.1.100"}
    assert len(store.read_samples("192.168.1.100")) == 2
    for alias in ("192.168.1.100", "192.168.1.150", "SN1", "aa:bb:cc:00:00:01", "AA-BB-CC-00-00-01"):
        miner = store.get_miner(alias)
        assert miner is not None and miner.miner_id == "192.168.1.100", alias
    miner = store.get_miner("SN1")
    assert miner is not None and (miner.site, miner.make, miner.nominal_hashrate_ths) == (
        "row-2",
        "Bitmain",
        110,
    )
    assert [m.miner_id for m in store.list_miners()] == ["192.168.1.100"]
    assert store.get_miner("192.168.1.151") is None


def test_another_miners_own_id_is_never_taken_over(store: Store) -> None:
    store.upsert_miners([Miner("10.0.0.1", "S19", serial="A"), Miner("10.0.0.2", "S19", serial="B")])
    # Miner B claims 10.0.0.1 as its id: B is found by serial, 10.0.0.1 still names miner A.
    assert store.upsert_miners([Miner("10.0.0.1", "S19", serial="B")]) == ["10.0.0.2"]
    miner = store.get_miner("10.0.0.1")
    assert miner is not None and miner.serial == "A"


def _failure(event_id: str, miner_id: str, hours: int, mode: FailureMode = FailureMode.FAN) -> FailureEvent:
    return FailureEvent(
        event_id=event_id,
        miner_id=miner_id,
        occurred_at=T0 + timedelta(hours=hours),
        mode=mode,
        source=EventSource.MANUAL,
        repaired_at=T0 + timedelta(hours=hours + 4),
        note="fan replaced",
    )


def test_failures_round_trip_newest_first(store: Store) -> None:
    store.upsert_miners([Miner("10.0.0.1", "S19", serial="SN1"), Miner("10.0.0.2", "S21")])
    store.add_failure(_failure("e1", "10.0.0.1", 1))
    store.add_failures([_failure("e2", "SN1", 5, FailureMode.PSU), _failure("e3", "10.0.0.2", 3)])
    assert [e.event_id for e in store.list_failures()] == ["e2", "e3", "e1"]
    assert store.list_failures("10.0.0.1", limit=1) == [
        FailureEvent(
            "e2",
            "10.0.0.1",
            T0 + timedelta(hours=5),
            FailureMode.PSU,
            EventSource.MANUAL,
            T0 + timedelta(hours=9),
            "fan replaced",
            repair_source=EventSource.MANUAL,  # a recorded repair
        )
    ]
    store.add_failure(_failure("e1", "10.0.0.1", 1, FailureMode.HASH_BOARD))  # same id replaces
    assert store.counts().failure_events == 3
    assert {e.event_id: e.mode for e in store.list_failures()}["e1"] == FailureMode.HASH_BOARD


def test_failure_for_an_unknown_miner_is_refused_whole(store: Store) -> None:
    store.upsert_miners([Miner("10.0.0.1", "S19")])
    with pytest.raises(MinerNotFound):
        store.add_failures([_failure("e1", "10.0.0.1", 1), _failure("e2", "10.0.0.7", 2)])
    assert store.list_failures() == []


def test_planned_states_round_trip(store: Store) -> None:
    store.upsert_miners([Miner("10.0.0.1", "S19")])
    state = PlannedState("p1", "10.0.0.1", PlannedStateKind.CURTAILMENT, at(10), at(40), "demand response")
    store.add_planned_state(state)
    store.add_planned_state(PlannedState("p0", "10.0.0.1", PlannedStateKind.MAINTENANCE, at(0), at(2)))
    assert store.list_planned_states("10.0.0.1") == [
        PlannedState("p0", "10.0.0.1", PlannedStateKind.MAINTENANCE, at(0), at(2)),
        state,
    ]
    assert store.list_planned_states() == store.list_planned_states("10.0.0.1")


def test_feedback_is_recorded(store: Store) -> None:
    store.upsert_miners([Miner("10.0.0.1", "S19")])
    feedback_id = store.add_feedback("10.0.0.1", 1, "lstm-3", "fan was failing", recorded_at=at(3))
    assert store.list_feedback("10.0.0.1") == [
        {
            "feedback_id": feedback_id,
            "miner_id": "10.0.0.1",
            "verdict": 1,
            "model_version": "lstm-3",
            "note": "fan was failing",
            "recorded_at": at(3),
        }
    ]
    with pytest.raises(MinerNotFound):
        store.add_feedback("10.0.0.99", 0)


def test_jobs_survive_close_and_reopen(store_path: Path) -> None:
    store = Store.open(store_path)
    store.save_job(
        "job-1",
        {
            "job_id": "job-1",
            "kind": 1,
            "state": "RUNNING",
            "created_at": at(0).isoformat(),
            "request_id": "req-1",
            "progress": 0.5,
        },
    )
    store.save_job("job-2", {"job_id": "job-2", "kind": 2, "state": "QUEUED", "created_at": at(5)})
    store.save_job(
        "job-1",
        {
            "job_id": "job-1",
            "kind": 1,
            "state": "SUCCEEDED",
            "created_at": at(0).isoformat(),
            "request_id": "req-1",
            "progress": 1.0,
        },
    )
    store.close()
    store = Store.open(store_path)
    try:
        job = store.get_job("job-1")
        assert job is not None and job["state"] == "SUCCEEDED" and job["progress"] == 1.0
        assert [j["job_id"] for j in store.list_jobs()] == ["job-2", "job-1"]
        assert [j["job_id"] for j in store.list_jobs(kind=1)] == ["job-1"]
        assert store.list_jobs(limit=1)[0]["created_at"] == at(5).isoformat()  # JSON round trip
        assert store.find_job_by_request_id("req-1") == job
        assert store.find_job_by_request_id("req-404") is None
        assert store.get_job("job-404") is None
    finally:
        store.close()
