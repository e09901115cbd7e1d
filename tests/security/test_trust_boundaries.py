"""Trust boundaries (issue 11, item 5): who may name the client's address, and private files.

x-forwarded-for used to be believed from any loopback peer, so any local process could pick the
address the audit log and the per-client rate limit see. It is now believed only from configured
proxies (`trusted_proxies`) and from peers on the server's Unix socket, which Envoy uses with
--with-envoy. The data directory, DuckDB file, models and audit log are private; a tokens file that
others can write is refused.
"""

from __future__ import annotations

import json
import os
import stat
import urllib.request
from pathlib import Path

import grpc
import pytest
from mining.analytics.v1alpha1 import common_pb2, fleet_pb2, fleet_pb2_grpc

from server.auth import TokenFileError, TokenStore
from tests.harness import start_server
from tests.ops.server_process import ServerProcess
from tests.ops.test_envoy_process import _pidfile
from tests.security.conftest import write_tokens

SPOOFED = "203.0.113.77"


def _upsert(target: str, miner_id: str, xff: str) -> None:
    with grpc.insecure_channel(target) as channel:
        fleet_pb2_grpc.FleetServiceStub(channel).UpsertMiner(
            fleet_pb2.UpsertMinerRequest(
                miner=common_pb2.Miner(miner_id=miner_id, hardware_model="Antminer S19")
            ),
            metadata=(("x-forwarded-for", xff),),
            timeout=30,
        )


def _who(audit: Path, miner_id: str) -> str:
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    return str(next(e["who"] for e in entries if e.get("miner_id") == miner_id))


def test_a_local_process_cannot_spoof_its_address(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        _upsert(f"127.0.0.1:{server.port}", "10.90.0.1", SPOOFED)
        assert _who(server.settings.audit_path, "10.90.0.1") == "127.0.0.1"
    finally:
        server.stop()


def test_a_configured_proxy_names_the_client(tmp_path: Path) -> None:
    """Envoy on another host: list its address in trusted_proxies (CIDRs work too)."""
    server = start_server(tmp_path, trusted_proxies="10.0.0.0/8,127.0.0.1")
    try:
        _upsert(f"127.0.0.1:{server.port}", "10.90.0.2", f"198.51.100.1, {SPOOFED}")
        assert _who(server.settings.audit_path, "10.90.0.2") == SPOOFED  # the address the proxy saw
    finally:
        server.stop()


def test_with_envoy_the_unix_socket_carries_the_client_address(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "--with-envoy", "--http-port", "0", "--envoy-admin-port", "0")
    try:
        entry = _pidfile(tmp_path)
        request = urllib.request.Request(
            f"http://127.0.0.1:{entry['http_port']}/api/advanced/miners/10.90.0.3",
            data=json.dumps({"hardware_model": "Antminer S19"}).encode(),
            method="PUT",
            headers={"content-type": "application/json", "x-forwarded-for": SPOOFED},
        )
        urllib.request.urlopen(request, timeout=30).close()
        who = _who(tmp_path / "audit.log", "10.90.0.3")
        assert who != SPOOFED and who != "unknown", who  # Envoy's own view of the client
        _upsert(server.target, "10.90.0.4", SPOOFED)  # a local process straight to the TCP port
        assert _who(tmp_path / "audit.log", "10.90.0.4") == "127.0.0.1"
    finally:
        server.stop()


def test_data_files_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir)
    try:
        _upsert(f"127.0.0.1:{server.port}", "10.90.0.5", "")  # writes the audit log
        modes = {
            path.name: stat.S_IMODE(path.stat().st_mode)
            for path in (
                data_dir,
                server.settings.db_path,
                server.settings.models_dir,
                server.settings.audit_path,
            )
        }
    finally:
        server.stop()
    assert modes == {
        data_dir.name: 0o700,
        server.settings.db_path.name: 0o600,
        server.settings.models_dir.name: 0o700,
        server.settings.audit_path.name: 0o600,
    }


@pytest.mark.parametrize("mode", [0o666, 0o662, 0o620])
def test_a_tokens_file_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "tokens.json"
    write_tokens(path, {"ops": (["reader"], [])})
    os.chmod(path, mode)
    with pytest.raises(TokenFileError) as caught:
        TokenStore.load(path)
    assert "chmod 600" in str(caught.value)
    os.chmod(path, 0o600)
    assert len(TokenStore.load(path)) == 1
