"""An auth-on stack (server + Envoy) with one token per role, a combined token and scoped tokens."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from server.auth import mint
from tests.harness import Response, Stack, start_stack


@dataclass
class AuthStack:
    stack: Stack
    tokens: dict[str, str]  # name -> token
    data_dir: Path

    def metadata(self, name: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens[name]}"),)

    def headers(self, name: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[name]}"}


TOKENS = {
    "reader": (["reader"], []),
    "writer": (["writer"], []),
    "trainer": (["trainer"], []),
    "reader-trainer": (["reader", "trainer"], []),
    "admin": (["admin"], []),
    # Scope filled in by the fixture once the demo fleet's ids and sites are known.
    "scoped-ids": (["reader"], None),
    "scoped-site": (["reader"], None),
    "scoped-writer": (["reader", "writer"], None),
}


def write_tokens(path: Path, tokens: dict[str, tuple[list[str], list[str]]]) -> dict[str, str]:
    secrets, entries = {}, []
    for name, (roles, scope) in tokens.items():
        token, entry = mint(name, roles, scope)
        secrets[name] = token
        entries.append(entry)
    path.write_text(json.dumps({"tokens": entries}))
    return secrets


@pytest.fixture(scope="package")
def auth_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthStack]:
    data_dir = Path(tmp_path_factory.mktemp("auth"))
    tokens_file = data_dir / "tokens.json"
    # Scopes name the demo fleet's miners: the simulator is seeded, so ids are stable; see the test
    # for how they are read. Written before start, so the server loads them at start.
    from server.sim import simulate_fleet
    from tests.harness import SMALL_FLEET

    fleet = simulate_fleet(SMALL_FLEET["demo_miners"], SMALL_FLEET["demo_days"], SMALL_FLEET["demo_seed"])
    miners = sorted(fleet.miners, key=lambda m: m.miner_id)
    site = miners[0].site
    scopes = dict(TOKENS)
    scopes["scoped-ids"] = (["reader"], [miners[0].miner_id, miners[1].miner_id])
    scopes["scoped-site"] = (["reader"], [f"site:{site}"])
    scopes["scoped-writer"] = (["reader", "writer"], [miners[0].miner_id])
    secrets = write_tokens(tokens_file, scopes)
    stack = start_stack(data_dir, auth_tokens_file=tokens_file, expensive_calls_burst=2)
    yield AuthStack(stack, secrets, data_dir)
    stack.close()


@pytest.fixture
def channel(auth_stack: AuthStack) -> grpc.Channel:
    return auth_stack.stack.channel


@dataclass
class SiteStack:
    stack: Stack
    tokens: dict[str, str]
    data_dir: Path

    def headers(self, name: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[name]}"}

    def metadata(self, name: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens[name]}"),)

    def rest(self, method: str, path: str, body: object = None, token: str = "site-a") -> Response:
        return self.stack.rest(method, path, body, headers=self.headers(token))


@pytest.fixture(scope="package")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteStack]:
    """The demo fleet with two of its miners moved to site-a, both models trained (1 epoch), and a
    reader+writer token scoped to site-a."""
    data_dir = Path(tmp_path_factory.mktemp("sites"))
    tokens_file = data_dir / "tokens.json"
    secrets = write_tokens(
        tokens_file, {"admin": (["admin"], []), "site-a": (["reader", "writer"], ["site:site-a"])}
    )
    running = SiteStack(start_stack(data_dir, auth_tokens_file=tokens_file), secrets, data_dir)
    try:
        for miner_id in ("192.168.1.100", "192.168.1.101"):
            reply = running.rest(
                "PUT",
                f"/api/advanced/miners/{miner_id}",
                {"hardware_model": "Antminer S19 Pro", "site": "site-a"},
                token="admin",
            )
            assert reply.status == 200, reply.body
        for kind in ("lstm", "autoencoder"):
            reply = running.rest(
                "POST", f"/api/advanced/train/{kind}", {"epochs": 1, "seed": 3}, token="admin"
            )
            assert reply.status == 200, reply.body
            job_id = reply.json()["job_id"]
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                job = running.rest("GET", f"/api/advanced/train/jobs/{job_id}", token="admin").json()
                if job["state"] not in ("JOB_STATE_QUEUED", "JOB_STATE_RUNNING"):
                    assert job["state"] == "JOB_STATE_SUCCEEDED", job
                    break
                time.sleep(0.2)
        yield running
    finally:
        running.stack.close()
