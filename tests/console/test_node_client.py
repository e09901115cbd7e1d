"""The same generated TypeScript client from Node (web/node/example.ts), against the real server
through Envoy: a unary call, a rich error's ErrorInfo and a server stream."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import Stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """web/node/example.ts bundled for Node by the project's esbuild."""
    out = tmp_path_factory.mktemp("node") / "example.mjs"
    esbuild = ROOT / "node_modules" / ".bin" / "esbuild"
    subprocess.run(
        [
            str(esbuild),
            "web/node/example.ts",
            "--bundle",
            "--platform=node",
            "--format=esm",
            "--target=node20",
            f"--outfile={out}",
            "--log-level=warning",
        ],
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    return out


def test_generated_client_calls_streams_and_reads_error_details_from_node(
    example: Path, stack: Stack
) -> None:
    node = shutil.which("node")
    assert node, "node is needed (it runs npm for make setup)"
    done = subprocess.run(
        [node, str(example), stack.http_base, "192.168.1.100"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    expected = stack.rest("GET", "/api/advanced/miners/192.168.1.100").json()
    assert result["miner"] == {
        "id": "192.168.1.100",
        "site": expected["site"],
        "hardwareModel": expected["hardware_model"],
    }
    assert result["notFound"]["code"] == "NotFound"
    assert result["notFound"]["reason"] == "MINER_NOT_FOUND"
    assert "no-such-miner" in result["notFound"]["message"]
    assert result["heartbeat"]["case"] == "heartbeat"
    assert int(result["heartbeat"]["sequence"]) >= 0
