"""Fixtures for the deployment tests: the Prometheus and Alertmanager binaries (Debian packages, installed
by `make setup` through deploy/setup.sh) and a small JSON-over-HTTP helper."""

from __future__ import annotations

import json
import shutil
import urllib.request
from typing import Any

import pytest

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
