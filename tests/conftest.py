"""Shared fixtures: one running stack (server + Envoy + channel) for read-only tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Stack, start_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real server on port 0 with a temp DuckDB seeded with a small demo fleet, behind real Envoy.

    Shared by read-only tests; tests that change state start their own.
    """
    running = start_stack(Path(tmp_path_factory.mktemp("stack")))
    yield running
    running.close()
