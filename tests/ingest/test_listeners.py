"""The Ingest domain service's contract with its listeners: touched miners and the backfill flag."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from server import auth
from server.config import Settings
from server.domain.ingest import ColumnInput, Ingest
from server.store import Store


def readings(*samples: tuple[str, datetime]) -> ColumnInput:
    """Healthy readings of (miner_id, time) samples, as the transport hands them to Ingest."""
    n = len(samples)
    values = {"hashrate_ths": 100.0, "temperature_c": 70.0, "fan_speed_rpm": 4000.0, "power_w": 3200.0}
    return ColumnInput(
        miner_id=np.array([miner_id for miner_id, _ in samples], dtype=object),
        ts_us=np.array([int(ts.timestamp() * 1_000_000) for _, ts in samples], dtype=np.int64),
        metrics={
            **{name: np.full(n, value) for name, value in values.items()},
            "accepted_shares": np.full(n, 1000.0),
            "rejected_shares": np.full(n, 5.0),
        },
    )


def test_listeners_get_the_touched_miners_and_whether_the_batch_is_a_backfill(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "fleet.duckdb")
    ingest = Ingest(store, Settings(data_dir=tmp_path, backfill_after_minutes=60))
    heard: list[tuple[set[str], bool]] = []
    ingest.add_listener(lambda miners, backfill: heard.append((miners, backfill)))
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        with auth.acting_as(auth.SYSTEM):  # outside an RPC nothing may write unless it says who it is
            asyncio.run(ingest.write(readings(("10.9.0.1", now - timedelta(minutes=5)), ("10.9.0.2", now))))
            old = [("10.9.0.1", now - timedelta(hours=3, minutes=5 * step)) for step in range(3)]
            asyncio.run(ingest.write(readings(*old)))
    finally:
        store.close()
    assert heard == [({"10.9.0.1", "10.9.0.2"}, False), ({"10.9.0.1"}, True)]
