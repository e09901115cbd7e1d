"""FleetNorms: per hardware model medians over the store's last hours, cached for a TTL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.domain.fleet_norms import FleetNorms
from server.records import Miner
from server.store import Store
from tests.store.store_builders import sample


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "fleet.duckdb")
    opened.upsert_miners([Miner("10.0.0.1", "S19"), Miner("10.0.0.2", "S19"), Miner("10.0.0.3", "M30S")])
    # 12 hours: the last 6 of them count. S19s run at 60 and 80 C there, the M30S at 90 C.
    opened.write_samples(
        [sample("10.0.0.1", step, temperature_c=20.0 if step < 72 else 60.0) for step in range(144)]
        + [sample("10.0.0.2", step, temperature_c=80.0) for step in range(144)]
        + [sample("10.0.0.3", step, temperature_c=90.0, hashrate_ths=None) for step in range(144)]
    )
    yield opened
    opened.close()


def test_norms_are_medians_of_the_models_miners_over_the_last_hours(store: Store) -> None:
    norms = FleetNorms(store)
    s19 = norms.for_model("S19")
    assert s19["temperature"] == pytest.approx(70.0)  # the 20 C hours are older than the window
    assert s19["hashrate"] == pytest.approx(100.0)
    m30 = norms.for_model("M30S")
    assert m30["temperature"] == pytest.approx(90.0)
    assert "hashrate" not in m30  # no peer reported it: no norm, not NaN
    assert norms.for_model("unknown model") == {}


def test_norms_are_kept_for_the_ttl_then_recomputed(store: Store) -> None:
    clock = Clock()
    norms = FleetNorms(store, ttl_s=600.0, clock=clock)
    assert norms.for_model("S19")["temperature"] == pytest.approx(70.0)
    store.write_samples([sample("10.0.0.2", step, temperature_c=100.0) for step in range(144)])
    clock.now += 599.0
    assert norms.for_model("S19")["temperature"] == pytest.approx(70.0)  # cached
    clock.now += 1.0
    assert norms.for_model("S19")["temperature"] == pytest.approx(80.0)  # recomputed at the TTL
