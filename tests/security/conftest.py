"""An auth-on stack (server + Envoy) with one token per role, a combined token and scoped tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from server.auth import mint
from tests.harness import Stack, start_stack


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
