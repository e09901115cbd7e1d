"""Fixtures for the deployment tests: the Prometheus and Alertmanager binaries (Debian packages, installed
by `make setup` through deploy/setup.sh) and a small JSON-over-HTTP helper."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import start_server

BINARIES = ("prometheus", "promtool", "prometheus-alertmanager", "amtool")
MISSING = [name for name in BINARIES if shutil.which(name) is None]

# `make test` installs them; a bare pytest on a machine without them fails loudly instead of skipping.
requires_binaries = pytest.mark.usefixtures("monitoring_binaries")


@pytest.fixture(scope="session")
def monitoring_binaries() -> None:
    assert not MISSING, f"{', '.join(MISSING)} missing: run `make setup` (bash deploy/setup.sh installs them)"


def http_json(url: str, body: Any = None, timeout: float = 10) -> Any:
    """GET (or POST body as JSON) and decode the JSON reply (None when the reply is empty)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        payload = reply.read()
    return json.loads(payload) if payload else None


PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}
# Series Prometheus makes itself.
PROMETHEUS_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers that are not functions, keywords, label
    names (inside {...} or the parentheses after by/on/...), strings or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\boffset\s+\w+", "", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation
        if match.group().lower() in PROMQL_WORDS:
            continue
        if match.start() > 0 and text[match.start() - 1].isdigit():
            continue  # a duration's or number's unit (5m, 1e3)
        names.add(match.group())
    return names


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """Every series name the real server's /metrics declares (HELP/TYPE lines, with sample suffixes)."""
    server = start_server(Path(tmp_path_factory.mktemp("exported")))
    try:
        server.app.ops.metrics.set_site_event("north", "power", False)
        url = f"http://127.0.0.1:{server.app.ops.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
    finally:
        server.stop()
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            name = name.removesuffix("_total") if kind == "counter" else name
            suffixes = {
                "counter": ("_total", "_created"),
                "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("_sum", "_count", "_created"),
            }.get(kind, ("",))
            names |= {name + suffix for suffix in suffixes}
    yield names
