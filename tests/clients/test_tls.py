"""The CLI and the collector against the real server serving TLS only, with client certificates
required (mutual TLS): flags, their environment variables, and what fails without them."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from clients.client import FleetHealthClient
from tests.clients.conftest import REPO_ROOT, MinerFactory, cli_environment, run_cli
from tests.clients.fake_miners import FIRMWARE_REPLIES
from tests.harness import ServerThread, start_server
from tests.security.certs import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(Path(tmp_path_factory.mktemp("certs")))


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[ServerThread]:
    server = start_server(
        tmp_path_factory.mktemp("mtls"),
        seed_demo_fleet=False,
        tls_cert_file=certs.server_cert,
        tls_key_file=certs.server_key,
        tls_client_ca_file=certs.ca,
        metrics_port=-1,
    )
    yield server
    server.stop()


def tls_flags(certs: Certs) -> list[str]:
    return [
        "--ca-file",
        str(certs.ca),
        "--cert-file",
        str(certs.client_cert),
        "--key-file",
        str(certs.client_key),
    ]


def test_cli_reaches_the_mtls_server_with_flags(mtls_server: ServerThread, certs: Certs) -> None:
    result = run_cli("--target", f"127.0.0.1:{mtls_server.port}", *tls_flags(certs), "--json", "status")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["miners"] == 0


def test_cli_reads_the_tls_settings_from_the_environment(mtls_server: ServerThread, certs: Certs) -> None:
    environment = {
        "MFH_TARGET": f"127.0.0.1:{mtls_server.port}",
        "MFH_TLS": "1",
        "MFH_CA_FILE": str(certs.ca),
        "MFH_CERT_FILE": str(certs.client_cert),
        "MFH_KEY_FILE": str(certs.client_key),
        "MFH_SERVER_NAME": "localhost",
    }
    result = run_cli("status", env=environment)
    assert result.returncode == 0, result.stderr
    assert "server version:" in result.stdout


def test_without_tls_or_a_client_certificate_the_server_refuses(
    mtls_server: ServerThread, certs: Certs
) -> None:
    target = f"127.0.0.1:{mtls_server.port}"
    plaintext = run_cli("--target", target, "--timeout", "5", "status")
    assert plaintext.returncode == 1 and "error: UNAVAILABLE" in plaintext.stderr
    no_client_cert = run_cli("--target", target, "--timeout", "5", "--ca-file", str(certs.ca), "status")
    assert no_client_cert.returncode == 1 and "error: UNAVAILABLE" in no_client_cert.stderr


def test_server_name_is_the_name_checked_in_the_certificate(mtls_server: ServerThread, certs: Certs) -> None:
    # The certificate names localhost and 127.0.0.1: another expected name must fail the handshake.
    target = f"127.0.0.1:{mtls_server.port}"
    wrong = run_cli(
        "--target", target, "--timeout", "5", *tls_flags(certs), "--server-name", "miners.example", "status"
    )
    assert wrong.returncode == 1 and "error: UNAVAILABLE" in wrong.stderr
    right = run_cli("--target", target, *tls_flags(certs), "--server-name", "localhost", "status")
    assert right.returncode == 0, right.stderr


async def test_collector_sends_readings_over_mutual_tls(
    mtls_server: ServerThread, certs: Certs, fake_miner: MinerFactory
) -> None:
    miner = await fake_miner(FIRMWARE_REPLIES["braiins"])
    target = f"127.0.0.1:{mtls_server.port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "clients.cli",
        "--target",
        target,
        *tls_flags(certs),
        "--json",
        "collect",
        "--once",
        miner.target,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env=cli_environment(),
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    assert json.loads(stdout) == {"miners": 1, "readings": 1}
    credentials = grpc.ssl_channel_credentials(
        certs.ca.read_bytes(), certs.client_key.read_bytes(), certs.client_cert.read_bytes()
    )
    with FleetHealthClient(target, tls=credentials) as client:
        stored = await asyncio.to_thread(client.get_miner, miner.target)
    assert (stored.sample_count, stored.hardware_model) == (1, "Antminer S9")
