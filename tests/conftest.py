"""Shared fixtures: one running stack (server + Envoy + channel) for read-only tests."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from server.ops.pg_local import LocalPostgres, local_postgres
from tests.harness import Stack, start_stack

# Servers started by tests (in process and as subprocesses) serve /metrics on a free port, never the
# fixed default 9464 that parallel runs on one machine would fight over.
os.environ.setdefault("MFH_METRICS_PORT", "0")
# Tiny test models (2 epochs on a few miners) cannot show a ROC-AUC interval above chance or a
# precursor recall: the promotion gate is off for the suite; tests/models/test_promotion_gate.py and
# the gate's API test turn it on with their own settings.
os.environ.setdefault("MFH_GATE_LSTM_MIN_AUC_LOWER", "0")
os.environ.setdefault("MFH_GATE_AUTOENCODER_MIN_RECALL", "0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright's sync API keeps an event loop running in the main thread
    for the rest of the session, after which asyncio.run() (used by other tests) refuses to start."""
    items.sort(key=lambda item: "tests/console/" in item.nodeid)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real server on port 0 with a temp DuckDB seeded with a small demo fleet, behind real Envoy.

    Shared by read-only tests; tests that change state start their own.
    """
    running = start_stack(Path(tmp_path_factory.mktemp("stack")))
    yield running
    running.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """A real PostgreSQL server for the session (initdb + pg_ctl in a temp dir, a free loopback port,
    run as the unprivileged `postgres` user when the suite runs as root); stopped with -m immediate."""
    with local_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: LocalPostgres) -> str:
    """URL of the session's PostgreSQL database (`postgresql://postgres@127.0.0.1:PORT/mfh`)."""
    return postgres_server.url


@pytest.fixture
def fresh_postgres_url(postgres_server: LocalPostgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of an empty database of this test's own on the session's server, dropped afterwards."""
    name = f"t{abs(hash(request.node.nodeid)) % 10**12}_{time.monotonic_ns() % 10**6}"
    yield postgres_server.create_database(name)
    postgres_server.drop_database(name)


STORE_ENGINES = ("duckdb", "postgresql")
"""The store engines the engine-parametrised fixtures run on (see store_engine)."""


@pytest.fixture(scope="module", params=STORE_ENGINES)
def store_engine(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Server settings for this module's store engine: {} (the DuckDB file in data_dir) or
    {"store": URL} of a fresh PostgreSQL database of the module's own, dropped afterwards. A module's
    server fixture that takes it runs every test of the module on both engines."""
    if request.param == "duckdb":
        yield {}
        return
    yield request.getfixturevalue("postgres_store")


@pytest.fixture(scope="module")
def postgres_store(
    postgres_server: LocalPostgres, request: pytest.FixtureRequest
) -> Iterator[dict[str, str]]:
    """Server settings {"store": URL} of a fresh PostgreSQL database of this module's own."""
    name = f"m{abs(hash(request.node.nodeid)) % 10**12}_{time.monotonic_ns() % 10**6}"
    yield {"store": postgres_server.create_database(name)}
    postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def trained_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own on which both models were trained (tiny: 2 epochs) through REST."""
    with trained(Path(tmp_path_factory.mktemp("trained"))) as running:
        yield running


@contextmanager
def trained(data_dir: Path, **overrides: Any) -> Iterator[Stack]:
    """A stack (the small demo fleet) on which both models were trained (2 epochs) through REST."""
    running = start_stack(data_dir, **overrides)
    try:
        for kind in ("lstm", "autoencoder"):
            reply = running.rest("POST", f"/api/advanced/train/{kind}", {"epochs": 2, "seed": 5})
            assert reply.status == 200, reply.body
            wait_for_job(running, reply.json()["job_id"])
        yield running
    finally:
        running.close()


def wait_for_job(stack: Stack, job_id: str, timeout: float = 300) -> dict[str, object]:
    """Polls the job over REST until it is final; returns its JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = stack.rest("GET", f"/api/advanced/train/jobs/{job_id}").json()
        if job["state"] not in ("JOB_STATE_QUEUED", "JOB_STATE_RUNNING"):
            assert job["state"] == "JOB_STATE_SUCCEEDED", job
            return dict(job)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s")
