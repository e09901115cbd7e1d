"""The flags every command shares: which server, how to reach it (TLS, mTLS), token, JSON output.

Each connection flag has an environment variable; a flag wins over its variable. Any of --ca-file,
--cert-file or --server-name turns TLS on; --tls alone trusts the system's root certificates.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc

from clients.cli.args import UsageError
from clients.client import FleetHealthClient

DEFAULT_TARGET: Final = "127.0.0.1:50051"
DEFAULT_TIMEOUT_S: Final = 30.0
TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})


def add_flags(common: argparse.ArgumentParser) -> None:
    """Adds the shared flags. SUPPRESS keeps a subcommand's unset copy from overwriting a value
    given before the command name; defaults are applied by `Connection.from_args`."""
    flag = common.add_argument
    flag(
        "--target",
        default=argparse.SUPPRESS,
        help=f"server host:port (env MFH_TARGET; default {DEFAULT_TARGET})",
    )
    flag(
        "--timeout",
        type=float,
        default=argparse.SUPPRESS,
        help="deadline of each call in seconds (default 30)",
    )
    flag(
        "--token",
        default=argparse.SUPPRESS,
        help="bearer token sent as `authorization: Bearer ...` (env MFH_TOKEN)",
    )
    flag("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable JSON output")
    flag("--tls", action="store_true", default=argparse.SUPPRESS, help="connect over TLS (env MFH_TLS=1)")
    flag(
        "--ca-file",
        default=argparse.SUPPRESS,
        help="PEM CA certificate(s) to trust; implies --tls (env MFH_CA_FILE)",
    )
    flag(
        "--cert-file",
        default=argparse.SUPPRESS,
        help="PEM client certificate for mutual TLS, with --key-file (env MFH_CERT_FILE)",
    )
    flag("--key-file", default=argparse.SUPPRESS, help="PEM private key of --cert-file (env MFH_KEY_FILE)")
    flag(
        "--server-name",
        default=argparse.SUPPRESS,
        help="name to verify in the server's certificate when it differs from the target's host "
        "(env MFH_SERVER_NAME)",
    )


@dataclass(frozen=True, slots=True)
class Connection:
    target: str = DEFAULT_TARGET
    timeout: float = DEFAULT_TIMEOUT_S
    token: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Connection:
        def value(name: str, env: str) -> Any:
            return getattr(args, name, None) or environ.get(env) or None

        def path(name: str, env: str) -> Path | None:
            text = value(name, env)
            return Path(text) if text else None

        timeout = getattr(args, "timeout", DEFAULT_TIMEOUT_S)
        if timeout <= 0:
            raise UsageError(f"--timeout {timeout:g}: must be positive")
        connection = cls(
            target=value("target", "MFH_TARGET") or DEFAULT_TARGET,
            timeout=timeout,
            token=value("token", "MFH_TOKEN"),
            tls=getattr(args, "tls", False) or environ.get("MFH_TLS", "").lower() in TRUE_WORDS,
            ca_file=path("ca_file", "MFH_CA_FILE"),
            cert_file=path("cert_file", "MFH_CERT_FILE"),
            key_file=path("key_file", "MFH_KEY_FILE"),
            server_name=value("server_name", "MFH_SERVER_NAME"),
        )
        if (connection.cert_file is None) != (connection.key_file is None):
            raise UsageError("--cert-file and --key-file go together (mutual TLS): give both or neither")
        return connection

    @property
    def secure(self) -> bool:
        return self.tls or any(x is not None for x in (self.ca_file, self.cert_file, self.server_name))

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.secure:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file, "--ca-file"),
            private_key=_read(self.key_file, "--key-file"),
            certificate_chain=_read(self.cert_file, "--cert-file"),
        )

    def client(self) -> FleetHealthClient:
        options = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
        return FleetHealthClient(
            self.target, timeout=self.timeout, tls=self.credentials(), token=self.token, options=options
        )


def _read(path: Path | None, flag: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot read: {exc.strerror or exc}") from exc
