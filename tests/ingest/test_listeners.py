"""The Ingest domain service's contract with its listeners: touched miners and the backfill flag."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from server import auth
from server.config import Settings
from server.domain.ingest import Ingest, SampleInput
from server.store import Store


def reading(miner_id: str, ts: datetime) -> SampleInput:
    return SampleInput(miner_id, ts, 100.0, 70.0, 4000.0, 3200.0, 1000, 5)


def test_listeners_get_the_touched_miners_and_whether_the_batch_is_a_backfill(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "fleet.duckdb")
    ingest = Ingest(store, Settings(data_dir=tmp_path, backfill_after_minutes=60))
    heard: list[tuple[set[str], bool]] = []
    ingest.add_listener(lambda miners, backfill: heard.append((miners, backfill)))
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        with auth.acting_as(auth.SYSTEM):  # outside an RPC nothing may write unless it says who it is
            asyncio.run(
                ingest.write([reading("10.9.0.1", now - timedelta(minutes=5)), reading("10.9.0.2", now)])
            )
            old = [reading("10.9.0.1", now - timedelta(hours=3, minutes=5 * step)) for step in range(3)]
            asyncio.run(ingest.write(old))
    finally:
        store.close()
    assert heard == [({"10.9.0.1", "10.9.0.2"}, False), ({"10.9.0.1"}, True)]
