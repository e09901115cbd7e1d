"""Refused calls cannot flood the logs (issue 11, item 4).

20,000 unauthenticated requests used to write 20,000 audit lines and 60,000 server log lines. Refused
calls are counted in metrics and logged (and audited) at most once per client per minute, with the
count of calls refused since the previous line.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from mining.analytics.v1alpha1 import fleet_pb2, fleet_pb2_grpc

from tests.harness import Stack, start_stack
from tests.security.conftest import write_tokens

CALLS = 10_000


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1


@pytest.fixture
def refusing_stack(tmp_path: Path) -> Iterator[Stack]:
    tokens = tmp_path / "tokens.json"
    write_tokens(tokens, {"reader": (["reader"], [])})
    running = start_stack(tmp_path, auth_tokens_file=tokens)
    yield running
    running.close()


def test_ten_thousand_refused_calls_add_fewer_than_a_hundred_lines(refusing_stack: Stack) -> None:
    counter = _Counter()
    server_log = logging.getLogger("server")
    server_log.addHandler(counter)
    audit = refusing_stack.server.settings.audit_path
    before = len(audit.read_text().splitlines()) if audit.exists() else 0
    try:
        stub = fleet_pb2_grpc.FleetServiceStub(refusing_stack.channel)
        codes: dict[grpc.StatusCode, int] = {}
        for start in range(0, CALLS, 500):
            futures = [
                stub.Status.future(
                    fleet_pb2.StatusRequest(),
                    metadata=(("authorization", f"Bearer wrong-{i % 3}"),) if i % 2 else (),
                    timeout=60,
                )
                for i in range(start, min(CALLS, start + 500))
            ]
            for future in futures:
                code = future.exception().code()  # type: ignore[union-attr]
                codes[code] = codes.get(code, 0) + 1
    finally:
        server_log.removeHandler(counter)
    assert codes == {grpc.StatusCode.UNAUTHENTICATED: CALLS}
    audit_lines = audit.read_text().splitlines()[before:]
    assert counter.lines + len(audit_lines) < 100, (counter.lines, len(audit_lines))
    assert audit_lines and '"outcome": "UNAUTHENTICATED"' in audit_lines[0]
    # The calls are all counted in metrics.
    port = refusing_stack.server.app.ops.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    refused = [line for line in text.splitlines() if line.startswith("mfh_refused_calls_total{")]
    assert any(
        'outcome="UNAUTHENTICATED"' in line and float(line.rsplit(" ", 1)[1]) >= CALLS for line in refused
    )


def test_the_next_line_after_a_quiet_minute_carries_the_count() -> None:
    from server.ops.audit import RefusalLog

    now = [0.0]
    written: list[dict[str, object]] = []

    class Audit:
        def record(self, action: str, **fields: object) -> None:
            written.append({"action": action, **fields})

    refusals = RefusalLog(Audit(), window_s=60.0, clock=lambda: now[0])  # type: ignore[arg-type]
    for _ in range(500):
        refusals.refused("FleetService/Status", "10.0.0.1", "UNAUTHENTICATED")
    refusals.refused("FleetService/Status", "10.0.0.2", "UNAUTHENTICATED")  # another client: its own line
    now[0] = 61.0
    refusals.refused("FleetService/Status", "10.0.0.1", "UNAUTHENTICATED")
    assert [(w["peer"], w["suppressed"]) for w in written] == [
        ("10.0.0.1", 0),
        ("10.0.0.2", 0),
        ("10.0.0.1", 499),
    ]
