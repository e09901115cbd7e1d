"""Failure events, planned states (curtailment, maintenance) and operator feedback on predictions.

Events and states are keyed by their id: writing the same id again replaces the row (last write wins).
Callers pass resolved miner_ids.

A failure's repair_source says where its repaired_at came from: stored NULL means "as the event's own
source" (a recorded or simulated repair, a derived outage's end); DERIVED on a recorded failure means
the server took it from telemetry (see outages.derive_repairs). Read back, it is UNSPECIFIED while
the event is unrepaired.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from server.records import (
    EventSource,
    FailureEvent,
    FailureMode,
    MinerCondition,
    PlannedState,
    PlannedStateKind,
)
from server.store.samples import to_utc_naive
from server.store.sql import SqlCursor


def _utc(ts: datetime | None) -> datetime | None:
    return ts.replace(tzinfo=UTC) if ts is not None else None


def add_failures(cur: SqlCursor, events: Sequence[FailureEvent]) -> None:
    if not events:
        return
    cur.executemany(
        "INSERT INTO failure_events (event_id, miner_id, occurred_at, mode, source, repaired_at, "
        "note, repair_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO UPDATE SET "
        "miner_id = excluded.miner_id, occurred_at = excluded.occurred_at, mode = excluded.mode, "
        "source = excluded.source, repaired_at = excluded.repaired_at, note = excluded.note, "
        "repair_source = excluded.repair_source",
        [
            [
                e.event_id,
                e.miner_id,
                to_utc_naive(e.occurred_at),
                int(e.mode),
                int(e.source),
                to_utc_naive(e.repaired_at) if e.repaired_at else None,
                e.note,
                int(e.repair_source) if e.repaired_at and e.repair_source not in (0, e.source) else None,
            ]
            for e in events
        ],
    )


_FAILURE_COLUMNS = "event_id, miner_id, occurred_at, mode, source, repaired_at, note, repair_source"


def _failure(row: tuple[Any, ...]) -> FailureEvent:
    event_id, mid, occurred_at, mode, source, repaired_at, note, repair_source = row
    return FailureEvent(
        event_id=str(event_id),
        miner_id=str(mid),
        occurred_at=occurred_at.replace(tzinfo=UTC),
        mode=FailureMode(mode),
        source=EventSource(source),
        repaired_at=_utc(repaired_at),
        note=str(note),
        repair_source=EventSource(repair_source or source)
        if repaired_at is not None
        else EventSource.UNSPECIFIED,
    )


def get_failure(cur: SqlCursor, event_id: str) -> FailureEvent | None:
    row = cur.execute(
        f"SELECT {_FAILURE_COLUMNS} FROM failure_events WHERE event_id = ?", [event_id]
    ).fetchone()
    return _failure(row) if row else None


def set_repair(cur: SqlCursor, event_id: str, repaired_at: datetime, note: str | None) -> None:
    """Record a repair time (a recorded repair: repair_source as the event's own source)."""
    cur.execute(
        "UPDATE failure_events SET repaired_at = ?, repair_source = NULL, note = coalesce(?, note) "
        "WHERE event_id = ?",
        [to_utc_naive(repaired_at), note, event_id],
    )


def list_failures(cur: SqlCursor, miner_id: str | None, limit: int) -> list[FailureEvent]:
    rows = cur.execute(
        f"""
        SELECT {_FAILURE_COLUMNS} FROM failure_events
        WHERE $1::VARCHAR IS NULL OR miner_id = $1
        ORDER BY occurred_at DESC, event_id LIMIT $2
        """,
        [miner_id, limit],
    ).fetchall()
    return [_failure(row) for row in rows]


def miner_conditions(
    cur: SqlCursor, last_seen: dict[str, datetime] | None = None
) -> dict[str, MinerCondition]:
    """Every miner's newest sample, oldest open recorded failure, open derived outage and newest
    repair up to its newest sample, in one query. `last_seen` (miner_id -> newest sample time, e.g.
    from the scores just computed) spares the scan of every sample; miners not in it then have none."""
    seen = "SELECT miner_id, max(ts) AS last_seen FROM samples GROUP BY miner_id"
    if last_seen is not None:
        cur.register(
            "given_seen",
            {
                "miner_id": np.array(list(last_seen), dtype=object),
                "last_seen": np.array([to_utc_naive(t) for t in last_seen.values()], dtype="datetime64[us]"),
            },
        )
        seen = "SELECT miner_id, last_seen FROM given_seen"
    rows = cur.execute(
        f"""
        WITH seen AS ({seen}),
        failed AS (
            SELECT miner_id, min(occurred_at) AS at, (array_agg(mode ORDER BY occurred_at))[1] AS mode
            FROM failure_events
            WHERE repaired_at IS NULL AND source <> $derived GROUP BY miner_id
        ),
        outage AS (
            SELECT miner_id, min(occurred_at) AS at FROM failure_events
            WHERE repaired_at IS NULL AND source = $derived GROUP BY miner_id
        ),
        repaired AS (
            SELECT f.miner_id, max(f.repaired_at) AS at FROM failure_events f JOIN seen s USING (miner_id)
            WHERE f.repaired_at IS NOT NULL AND f.repaired_at <= s.last_seen GROUP BY f.miner_id
        )
        SELECT m.miner_id, s.last_seen, f.at, f.mode, o.at, r.at
        FROM miners m LEFT JOIN seen s USING (miner_id) LEFT JOIN failed f USING (miner_id)
            LEFT JOIN outage o USING (miner_id) LEFT JOIN repaired r USING (miner_id)
        """,
        {"derived": int(EventSource.DERIVED)},
    ).fetchall()
    return {
        str(miner_id): MinerCondition(
            _utc(last_seen), _utc(failed_at), int(mode or 0), _utc(outage_at), _utc(repair)
        )
        for miner_id, last_seen, failed_at, mode, outage_at, repair in rows
    }


def add_planned_states(cur: SqlCursor, states: Sequence[PlannedState]) -> None:
    if not states:
        return
    cur.executemany(
        "INSERT INTO planned_states (state_id, miner_id, kind, start_at, end_at, note) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (state_id) DO UPDATE SET miner_id = excluded.miner_id, "
        "kind = excluded.kind, start_at = excluded.start_at, end_at = excluded.end_at, note = excluded.note",
        [
            [s.state_id, s.miner_id, int(s.kind), to_utc_naive(s.start), to_utc_naive(s.end), s.note]
            for s in states
        ],
    )


def list_planned_states(cur: SqlCursor, miner_id: str | None) -> list[PlannedState]:
    rows = cur.execute(
        """
        SELECT state_id, miner_id, kind, start_at, end_at, note FROM planned_states
        WHERE $1::VARCHAR IS NULL OR miner_id = $1
        ORDER BY start_at, miner_id, state_id
        """,
        [miner_id],
    ).fetchall()
    return [
        PlannedState(
            state_id=str(state_id),
            miner_id=str(mid),
            kind=PlannedStateKind(kind),
            start=start.replace(tzinfo=UTC),
            end=end.replace(tzinfo=UTC),
            note=str(note),
        )
        for state_id, mid, kind, start, end, note in rows
    ]


def add_feedback(
    cur: SqlCursor,
    miner_id: str,
    verdict: int,
    model_version: str,
    note: str,
    recorded_at: datetime,
) -> str:
    feedback_id = uuid.uuid4().hex
    cur.execute(
        "INSERT INTO feedback (feedback_id, miner_id, verdict, model_version, note, recorded_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [feedback_id, miner_id, verdict, model_version, note, to_utc_naive(recorded_at)],
    )
    return feedback_id


def list_feedback(cur: SqlCursor, miner_id: str | None, limit: int) -> list[dict[str, object]]:
    rows = cur.execute(
        """
        SELECT feedback_id, miner_id, verdict, model_version, note, recorded_at FROM feedback
        WHERE $1::VARCHAR IS NULL OR miner_id = $1
        ORDER BY recorded_at DESC, feedback_id LIMIT $2
        """,
        [miner_id, limit],
    ).fetchall()
    keys = ("feedback_id", "miner_id", "verdict", "model_version", "note", "recorded_at")
    return [dict(zip(keys, (*row[:5], row[5].replace(tzinfo=UTC)), strict=True)) for row in rows]
