"""Outage events derived from telemetry, so training has labels without manual entry.

Definition. Per miner, within a scan window [since, ...):
- An *up point* is a sample with hashrate > 0, or the edge of a planned state (curtailment,
  maintenance): its start, and its end when no other planned state covers it. A *down point* is a
  sample with hashrate = 0. Samples inside a planned state, and samples without a hashrate reading,
  are neither.
- Between two consecutive up points the miner was not hashing: the stretch starts at its first
  down point, or (no down point: silence) one sample interval after the up point that opens it; it
  ends at the next up point (`repaired_at`), or is still open, evaluated up to the newest sample of
  the whole fleet (the data's "now", so tests and backfills never depend on the wall clock).
- A stretch longer than `min_duration` is an outage (FAILURE_MODE_OUTAGE, EVENT_SOURCE_DERIVED),
  except: a stretch opened by a planned state's start (the planned period itself); a silent stretch
  (no down point) during which no other miner reported either (a collector or network outage, not
  a miner's); and a stretch that a recorded event supersedes (`superseded_sql`: it overlaps a failure
  from another source or a planned state; the recorded event is the label).

Sync. Derived events are reconciled with the stored ones in one transaction, so running it again
changes nothing: a stored derived outage that overlaps a newly derived one is updated in place
(same event_id; it keeps an `occurred_at` from before the window), one that the data no longer
supports (a late sample filled the gap) is deleted, new ones are inserted. The window is widened to
the start of any still-open derived outage of the miners scanned, so it can be closed. Recording a
failure or a planned state deletes the derived outages it supersedes (`drop_superseded`), so the
rule holds whichever came first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from server.records import EventSource, FailureMode
from server.store.samples import to_utc_naive
from server.store.sql import SqlCursor, fetch_one

NOTE = "derived: no hashrate (zero or no samples) for longer than {minutes:g} min"


@dataclass(frozen=True, slots=True)
class OutageSync:
    """What one sync did."""

    added: int = 0
    updated: int = 0
    removed: int = 0


def _stretches_sql(interval_s: int) -> str:
    return f"""
    WITH planned AS (
        SELECT miner_id, start_at, end_at FROM planned_states
        WHERE miner_id IN (SELECT miner_id FROM scan) AND end_at >= $since
    ),
    pts AS (
        SELECT s.miner_id, s.ts, (s.hashrate_ths > 0)::INTEGER AS up, 'sample' AS kind
        FROM samples s
        WHERE s.miner_id IN (SELECT miner_id FROM scan) AND s.ts >= $since AND s.hashrate_ths IS NOT NULL
            AND NOT EXISTS (
                SELECT 1 FROM planned p
                WHERE p.miner_id = s.miner_id AND s.ts >= p.start_at AND s.ts < p.end_at
            )
        UNION ALL
        SELECT miner_id, start_at, 1, 'planned_start' FROM planned p
        UNION ALL
        SELECT p.miner_id, p.end_at, 1, 'planned_end' FROM planned p
        WHERE NOT EXISTS (
            SELECT 1 FROM planned q
            WHERE q.miner_id = p.miner_id AND q.start_at <= p.end_at AND q.end_at > p.end_at
        )
    ),
    grouped AS (
        SELECT *, sum(up) OVER (PARTITION BY miner_id ORDER BY ts, up DESC ROWS UNBOUNDED PRECEDING) AS g
        FROM pts
    ),
    stretches AS (
        SELECT miner_id, g,
            min(ts) FILTER (WHERE up = 1) AS last_up,
            (array_agg(kind ORDER BY ts) FILTER (WHERE up = 1))[1] AS opened_by,
            min(ts) FILTER (WHERE up = 0) AS first_down
        FROM grouped GROUP BY miner_id, g
    ),
    bounded AS (
        SELECT *, lead(last_up) OVER (PARTITION BY miner_id ORDER BY g) AS next_up FROM stretches
    ),
    candidates AS (
        SELECT miner_id, last_up, first_down,
            coalesce(first_down, last_up + INTERVAL '{int(interval_s)} seconds') AS occurred_at,
            next_up AS repaired_at
        FROM bounded
        WHERE coalesce(opened_by, '') <> 'planned_start' AND (first_down IS NOT NULL OR last_up IS NOT NULL)
    )
    SELECT c.miner_id, c.occurred_at, c.repaired_at FROM candidates c
    WHERE coalesce(c.repaired_at, $newest) - c.occurred_at > $min_duration
        AND ($open_silence OR c.first_down IS NOT NULL OR c.repaired_at IS NOT NULL)
        AND (c.first_down IS NOT NULL OR EXISTS (
            SELECT 1 FROM samples o
            WHERE o.miner_id <> c.miner_id AND o.ts > c.last_up AND o.ts < coalesce(c.repaired_at, $newest)
        ))
        AND NOT {superseded_sql("c.miner_id", "c.occurred_at", "coalesce(c.repaired_at, $newest)")}
    ORDER BY c.miner_id, c.occurred_at
    """


def superseded_sql(miner: str, start: str, end: str) -> str:
    """The one rule for when a derived outage (of `miner`, from `start` to `end`: SQL expressions)
    yields to a recorded event: it overlaps a failure from another source (down from occurred_at to
    its repair, or from then on while unrepaired) or a planned state (curtailment, maintenance).
    Whichever was recorded first, one event remains."""
    return f"""(EXISTS (
            SELECT 1 FROM failure_events f
            WHERE f.miner_id = {miner} AND f.source <> {int(EventSource.DERIVED)}
                AND f.occurred_at <= {end}
                AND coalesce(f.repaired_at, 'infinity'::TIMESTAMP) >= {start}
        ) OR EXISTS (
            SELECT 1 FROM planned_states p
            WHERE p.miner_id = {miner} AND p.start_at <= {end} AND p.end_at > {start}
        ))"""


def drop_superseded(cur: SqlCursor, miner_ids: Sequence[str]) -> int:
    """Delete the given miners' derived outages that a recorded failure or planned state supersedes
    (see superseded_sql), inside the caller's transaction; returns how many."""
    if not miner_ids:
        return 0
    row = fetch_one(cur, "SELECT max(ts) FROM samples")
    newest = row[0] if row and row[0] is not None else datetime(9999, 1, 1)
    doomed = cur.execute(
        f"""
        SELECT e.event_id FROM failure_events e
        WHERE e.source = $derived AND e.mode = $outage AND e.miner_id IN (SELECT unnest($miners::VARCHAR[]))
            AND {superseded_sql("e.miner_id", "e.occurred_at", "coalesce(e.repaired_at, $newest)")}
        """,
        {
            "derived": int(EventSource.DERIVED),
            "outage": int(FailureMode.OUTAGE),
            "miners": list(miner_ids),
            "newest": newest,
        },
    ).fetchall()
    if doomed:
        cur.execute(
            "DELETE FROM failure_events WHERE event_id IN (SELECT unnest($1::VARCHAR[]))",
            [[str(event_id) for (event_id,) in doomed]],
        )
    return len(doomed)


def sync_derived_outages(
    cur: SqlCursor,
    miner_ids: Sequence[str],
    since: datetime,
    min_duration: timedelta,
    interval_s: int,
    *,
    open_silence: bool = True,
) -> OutageSync:
    """Derive the outages of the given (resolved) miners from `since` on and reconcile them with the
    stored derived outages, inside the caller's transaction (see the module docstring).

    open_silence=False leaves out (and never deletes) outages that are silent up to now: a batch
    tells about the miners that sent it, and a miner whose data merely lags the fleet's (a late
    batch, a collector clock behind) is not silent; the periodic fleet scan decides those."""
    if not miner_ids:
        return OutageSync()
    cur.register("scan", {"miner_id": np.array(list(miner_ids), dtype=object)})
    outage, derived = int(FailureMode.OUTAGE), int(EventSource.DERIVED)
    since_naive = to_utc_naive(since)
    row = fetch_one(
        cur,
        "SELECT min(occurred_at) FROM failure_events WHERE source = ? AND mode = ? AND repaired_at IS NULL "
        "AND miner_id IN (SELECT miner_id FROM scan)",
        [derived, outage],
    )
    if row and row[0] is not None:
        since_naive = min(since_naive, row[0])
    row = fetch_one(cur, "SELECT max(ts) FROM samples")
    newest = row[0] if row else None
    if newest is None:
        return OutageSync()
    found = cur.execute(
        _stretches_sql(interval_s),
        {"since": since_naive, "newest": newest, "min_duration": min_duration, "open_silence": open_silence},
    ).fetchall()
    stored = cur.execute(
        """
        SELECT event_id, miner_id, occurred_at, repaired_at FROM failure_events
        WHERE source = $derived AND mode = $outage AND miner_id IN (SELECT miner_id FROM scan)
            AND (repaired_at IS NULL OR repaired_at >= $since)
        ORDER BY occurred_at
        """,
        {"derived": derived, "outage": outage, "since": since_naive},
    ).fetchall()
    far = datetime(9999, 1, 1)
    unmatched = {event_id: (mid, occ, rep) for event_id, mid, occ, rep in stored}
    added = updated = 0
    note = NOTE.format(minutes=min_duration.total_seconds() / 60)
    for miner_id, occurred_at, repaired_at in found:
        match = next(
            (
                event_id
                for event_id, (mid, occ, rep) in unmatched.items()
                if mid == miner_id and occ <= (repaired_at or far) and (rep or far) >= occurred_at
            ),
            None,
        )
        if match is None:
            cur.execute(
                "INSERT INTO failure_events (event_id, miner_id, occurred_at, mode, source, repaired_at, "
                "note) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [uuid.uuid4().hex, miner_id, occurred_at, outage, derived, repaired_at, note],
            )
            added += 1
            continue
        _, stored_occ, stored_rep = unmatched.pop(match)
        start = stored_occ if stored_occ < since_naive else occurred_at
        if (start, repaired_at) != (stored_occ, stored_rep):
            cur.execute(
                "UPDATE failure_events SET occurred_at = ?, repaired_at = ? WHERE event_id = ?",
                [start, repaired_at, match],
            )
            updated += 1
    stale = [
        event_id
        for event_id, (_, occ, rep) in unmatched.items()
        if occ >= since_naive and (open_silence or rep is not None)
    ]
    if stale:
        cur.execute("DELETE FROM failure_events WHERE event_id IN (SELECT unnest($1::VARCHAR[]))", [stale])
    return OutageSync(added, updated, len(stale))


def derive_repairs(cur: SqlCursor, miner_ids: Sequence[str], silent: timedelta) -> int:
    """Give the given miners' unrepaired recorded failures (any source but DERIVED) the repair that
    their telemetry shows, marked repair_source DERIVED, inside the caller's transaction; returns
    how many. The repair is the first sample with hashrate > 0 after the failure that follows the
    miner being down: a zero-hashrate sample just before it, or no sample for longer than `silent`
    (a miner still hashing, even degraded, after its failure is not yet repaired)."""
    if not miner_ids:
        return 0
    found = cur.execute(
        """
        WITH open AS (
            SELECT event_id, miner_id, occurred_at FROM failure_events
            WHERE repaired_at IS NULL AND source <> $derived
                AND miner_id IN (SELECT unnest($miners::VARCHAR[]))
        ),
        s AS (
            SELECT miner_id, ts, hashrate_ths,
                lag(ts) OVER w AS prev_ts, lag(hashrate_ths) OVER w AS prev_hashrate
            FROM samples
            WHERE miner_id IN (SELECT miner_id FROM open) AND hashrate_ths IS NOT NULL
                AND ts >= (SELECT min(occurred_at) FROM open) - $silent
            WINDOW w AS (PARTITION BY miner_id ORDER BY ts)
        )
        SELECT o.event_id, min(s.ts) FROM open o JOIN s
            ON s.miner_id = o.miner_id AND s.ts > o.occurred_at AND s.hashrate_ths > 0
                AND (s.prev_hashrate = 0 OR s.prev_ts IS NULL OR s.ts - s.prev_ts > $silent)
        GROUP BY o.event_id
        """,
        {"derived": int(EventSource.DERIVED), "miners": list(miner_ids), "silent": silent},
    ).fetchall()
    if found:
        cur.executemany(
            "UPDATE failure_events SET repaired_at = ?, repair_source = ? WHERE event_id = ?",
            [[repaired_at, int(EventSource.DERIVED), event_id] for event_id, repaired_at in found],
        )
    return len(found)


def newest_sample(cur: SqlCursor) -> datetime | None:
    """The newest sample time of the whole fleet (UTC), or None for an empty store."""
    row = fetch_one(cur, "SELECT max(ts) FROM samples")
    return row[0].replace(tzinfo=UTC) if row and row[0] is not None else None
