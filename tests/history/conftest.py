"""Fixtures and helpers of the history and rescoring tests: a stack of their own, REST polling, scrapes."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Stack, start_stack

T = TypeVar("T")


@pytest.fixture(scope="module")
def fresh_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of this module's own, no model trained yet (the small demo fleet)."""
    running = start_stack(Path(tmp_path_factory.mktemp("history")))
    yield running
    running.close()


def eventually(probe: Callable[[], T | None], timeout: float = 90, what: str = "condition") -> T:
    """Polls `probe` until it returns something other than None or False; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f} s")
        time.sleep(0.2)


def scrape(stack: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The server's Prometheus metrics: (name, sorted labels) -> value."""
    port = stack.server.app.ops.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def all_miners(stack: Stack) -> list[dict[str, Any]]:
    """Every miner through REST (ListMiners), highest risk first."""
    reply = stack.rest("GET", "/api/advanced/miners?page_size=1000")
    assert reply.status == 200, reply.body
    return list(reply.json()["miners"])


def train(stack: Stack, kind: str, seed: int) -> dict[str, Any]:
    """Trains a tiny model through REST and waits for the job; returns the finished job."""
    from tests.conftest import wait_for_job

    reply = stack.rest("POST", f"/api/advanced/train/{kind}", {"epochs": 2, "seed": seed})
    assert reply.status == 200, reply.body
    return dict(wait_for_job(stack, reply.json()["job_id"]))
