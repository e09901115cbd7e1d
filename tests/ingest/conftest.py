"""Fixtures for the ingestion tests: a real server on an empty store (a temp DuckDB file, then a fresh
PostgreSQL database), no periodic tasks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from mining.analytics.v1alpha1 import telemetry_pb2_grpc

from tests.harness import ServerThread, start_server

# Periodic scans off: the tests drive outage derivation through ingestion, retention by hand.
QUIET = {"seed_demo_fleet": False, "outage_scan_interval_s": 0, "retention_interval_s": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, store_engine: dict[str, str]) -> Iterator[ServerThread]:
    """One server per test module and store engine (DuckDB, PostgreSQL); each test writes its own
    miners."""
    running = start_server(Path(tmp_path_factory.mktemp("ingest")), **QUIET, **store_engine)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def telemetry(server: ServerThread) -> Iterator[telemetry_pb2_grpc.TelemetryServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield telemetry_pb2_grpc.TelemetryServiceStub(channel)
