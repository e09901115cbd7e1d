"""Fixtures for the store tests: every `store` test runs on both engines, a real DuckDB file in
tmp_path and a real PostgreSQL database of its own (the session's server, tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.store import FleetStore, open_store

ENGINES = ("duckdb", "postgresql")


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "fleet.duckdb"


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, store_path: Path) -> str:
    """The store URL of this test's engine: the DuckDB file path, or a fresh PostgreSQL database."""
    if request.param == "duckdb":
        return str(store_path)
    return str(request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture
def store(store_url: str, store_path: Path) -> Iterator[FleetStore]:
    opened = open_store(store_url, default_path=store_path)
    yield opened
    opened.close()
