"""Envoy serves the console's files on the API's port, beside REST and gRPC-web (no browser here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.envoy import CONSOLE_NOT_BUILT, render_config
from tests.harness import Stack


@pytest.mark.parametrize(
    ("path", "file", "content_type", "marker"),
    [
        ("/", "index.html", "text/html; charset=utf-8", b"Mining fleet health"),
        ("/console/app.js", "app.js", "text/javascript; charset=utf-8", b"Reconnecting"),
        ("/console/app.css", "app.css", "text/css; charset=utf-8", b".uplot"),
    ],
)
def test_console_files_are_served_with_their_type(
    built_console: Path, stack: Stack, path: str, file: str, content_type: str, marker: bytes
) -> None:
    reply = stack.rest("GET", path)
    assert reply.status == 200, reply.body[:200]
    assert reply.headers["content-type"] == content_type
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert marker in reply.body
    assert reply.body == (built_console / file).read_bytes()


def test_page_forbids_foreign_scripts_and_framing(stack: Stack) -> None:
    policy = stack.rest("GET", "/").headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy


def test_api_still_answers_beside_the_console(stack: Stack) -> None:
    reply = stack.rest("GET", "/api/advanced/status")
    assert reply.status == 200
    assert "lstm_model" in reply.json()


def test_unbuilt_console_answers_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("server.envoy.CONSOLE_DIST", tmp_path / "missing")
    config = render_config(
        grpc_host="127.0.0.1", grpc_port=1, http_host="127.0.0.1", http_port=0, admin_port=0
    )
    routes = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"
    ]["virtual_hosts"][0]["routes"]
    bodies = [
        r["direct_response"]["body"] for r in routes if r.get("direct_response", {}).get("status") == 200
    ]
    assert len(bodies) == 3
    assert all(body == {"inline_string": CONSOLE_NOT_BUILT} for body in bodies)
