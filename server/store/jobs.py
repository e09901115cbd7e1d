"""Training-job records, so jobs survive restarts.

A job is a JSON-able dict written whole (upsert by job_id) as JSON text; `kind`, `state`, `created_at`
and `request_id` are copied into columns for lookups. Reading returns the JSON round trip of what was
saved (a datetime saved in the record comes back as its ISO-8601 string).
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Any

from server.store.samples import to_utc_naive
from server.store.sql import SqlCursor, fetch_one


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"job record value of type {type(value).__name__} is not JSON-able")


def _created_at(value: object, now: datetime) -> datetime:
    """created_at from a record: a datetime, an ISO-8601 string or epoch seconds; now when absent."""
    if isinstance(value, datetime):
        return to_utc_naive(value)
    if isinstance(value, str) and value:
        return to_utc_naive(datetime.fromisoformat(value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC).replace(tzinfo=None)
    return now


def save_job(cur: SqlCursor, job_id: str, record: dict[str, Any]) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    text = json.dumps(record, default=_json_default, sort_keys=True)
    existing = fetch_one(cur, "SELECT created_at FROM training_jobs WHERE job_id = ?", [job_id])
    created_at = _created_at(record.get("created_at"), existing[0] if existing else now)
    request_id = record.get("request_id") or None
    state = record.get("state", "")
    cur.execute(
        "INSERT INTO training_jobs "
        "(job_id, kind, state, created_at, updated_at, request_id, record) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (job_id) DO UPDATE SET kind = excluded.kind, state = excluded.state, "
        "created_at = excluded.created_at, updated_at = excluded.updated_at, "
        "request_id = excluded.request_id, record = excluded.record",
        [
            job_id,
            int(record.get("kind", 0)),
            str(state.value if isinstance(state, enum.Enum) else state),
            created_at,
            now,
            str(request_id) if request_id is not None else None,
            text,
        ],
    )


def _load(row: tuple[Any, ...] | None) -> dict[str, Any] | None:
    return json.loads(row[0]) if row else None


def get_job(cur: SqlCursor, job_id: str) -> dict[str, Any] | None:
    return _load(fetch_one(cur, "SELECT record FROM training_jobs WHERE job_id = ?", [job_id]))


def find_job_by_request_id(cur: SqlCursor, request_id: str) -> dict[str, Any] | None:
    row = fetch_one(
        cur,
        "SELECT record FROM training_jobs WHERE request_id = ? ORDER BY created_at DESC LIMIT 1",
        [request_id],
    )
    return _load(row)


def list_jobs(cur: SqlCursor, kind: int | None, limit: int) -> list[dict[str, Any]]:
    rows = cur.execute(
        """
        SELECT record FROM training_jobs WHERE $1::INTEGER IS NULL OR kind = $1
        ORDER BY created_at DESC, job_id DESC LIMIT $2
        """,
        [kind, limit],
    ).fetchall()
    return [json.loads(row[0]) for row in rows]
