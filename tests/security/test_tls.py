"""TLS: the gRPC port (optionally requiring client certificates) and Envoy's HTTPS listener."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path

import grpc
import pytest
from mining.analytics.v1alpha1 import fleet_pb2, fleet_pb2_grpc
from pydantic import ValidationError

from server.config import Settings
from server.envoy import start_envoy
from server.ops.runtime import SecuritySettingsError, server_credentials
from tests.harness import start_server
from tests.security.certs import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(Path(tmp_path_factory.mktemp("certs")))


def _status(channel: grpc.Channel) -> fleet_pb2.StatusResponse:
    return fleet_pb2_grpc.FleetServiceStub(channel).Status(fleet_pb2.StatusRequest(), timeout=10)


def _tls_channel(port: int, certs: Certs, *, client_cert: bool) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certs.ca.read_bytes(),
        private_key=certs.client_key.read_bytes() if client_cert else None,
        certificate_chain=certs.client_cert.read_bytes() if client_cert else None,
    )
    return grpc.secure_channel(f"localhost:{port}", credentials)


def test_grpc_serves_tls_and_refuses_plaintext(tmp_path: Path, certs: Certs) -> None:
    server = start_server(
        tmp_path, tls_cert_file=certs.server_cert, tls_key_file=certs.server_key, metrics_port=-1
    )
    try:
        with _tls_channel(server.port, certs, client_cert=False) as channel:
            assert _status(channel).miners == 8
        with (
            grpc.insecure_channel(f"127.0.0.1:{server.port}") as plain,
            pytest.raises(grpc.RpcError) as error,
        ):
            _status(plain)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()


def test_grpc_with_client_ca_requires_a_client_certificate(tmp_path: Path, certs: Certs) -> None:
    server = start_server(
        tmp_path,
        tls_cert_file=certs.server_cert,
        tls_key_file=certs.server_key,
        tls_client_ca_file=certs.ca,
        metrics_port=-1,
    )
    try:
        with _tls_channel(server.port, certs, client_cert=True) as channel:
            assert _status(channel).miners == 8
        with (
            _tls_channel(server.port, certs, client_cert=False) as channel,
            pytest.raises(grpc.RpcError) as error,
        ):
            _status(channel)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()


def test_tls_settings_must_come_in_pairs(certs: Certs) -> None:
    with pytest.raises(ValidationError, match="set both or neither"):
        Settings(tls_cert_file=certs.server_cert)
    with pytest.raises(ValidationError, match="set both or neither"):
        Settings(http_tls_key_file=certs.server_key)


def test_unreadable_certificate_is_refused(tmp_path: Path, certs: Certs) -> None:
    settings = Settings(tls_cert_file=tmp_path / "missing.pem", tls_key_file=certs.server_key)
    with pytest.raises(SecuritySettingsError, match="tls_cert_file"):
        server_credentials(settings)


def test_envoy_serves_https_in_front_of_a_tls_backend(tmp_path: Path, certs: Certs) -> None:
    server = start_server(
        tmp_path, tls_cert_file=certs.server_cert, tls_key_file=certs.server_key, metrics_port=-1
    )
    envoy = None
    try:
        envoy = start_envoy(
            grpc_port=server.port,
            http_port=0,
            admin_port=0,
            tls_cert_file=certs.server_cert,
            tls_key_file=certs.server_key,
            upstream_tls=True,
        )
        context = ssl.create_default_context(cafile=str(certs.ca))
        url = f"https://localhost:{envoy.http_port}/api/advanced/status"
        with urllib.request.urlopen(url, context=context, timeout=30) as reply:
            assert reply.status == 200
            assert json.load(reply)["miners"] == 8
        # Native gRPC over the same HTTPS port.
        with _tls_channel(envoy.http_port, certs, client_cert=False) as channel:
            assert _status(channel).miners == 8
        # Plain HTTP to the HTTPS port fails.
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{envoy.http_port}/api/advanced/status", timeout=10)
    finally:
        if envoy is not None:
            envoy.stop()
        server.stop()
