"""Fixtures of the client tests: fake miners on loopback, a real server, a fake telemetry server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.clients.fake_miners import FakeMiner, Reply
from tests.clients.fake_server import FakeServer, start_fake_server

REPO_ROOT = Path(__file__).resolve().parents[2]

MinerFactory = Callable[..., Awaitable[FakeMiner]]


@pytest.fixture
async def fake_miner() -> AsyncIterator[MinerFactory]:
    """Starts fake miners: `await fake_miner(replies, mode=..., keep_open=...)`; all closed after the test."""
    started: list[FakeMiner] = []

    async def start(replies: dict[str, Reply] | None = None, **options: object) -> FakeMiner:
        miner = await FakeMiner(replies=dict(replies or {}), **options).start()  # type: ignore[arg-type]
        started.append(miner)
        return miner

    yield start
    for miner in started:
        await miner.close()


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Runs `python -m clients.cli ARGS...` as a user would, from the repository root."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MFH_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "clients.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
        env=environment,
    )


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = start_fake_server()
    yield server
    server.stop()
