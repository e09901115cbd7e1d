"""Command line: `mining-health-server [--flags]` runs the gRPC server (and Envoy with --with-envoy).

Every setting is a flag and an MFH_* environment variable; flags win. `--help` lists them all.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from pydantic import ValidationError

from server import app, logs
from server.config import Settings
from server.envoy import EnvoyProcess, start_envoy

log = logging.getLogger("server")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mining-health-server",
        description=(
            "Inference server for mining-fleet health: failure-risk prediction (LSTM) and anomaly "
            "detection (LSTM autoencoder) over ASIC miner telemetry, served over gRPC and, with "
            "--with-envoy, over REST on port 5000. An empty store is seeded with a simulated demo fleet."
        ),
    )
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = f"MFH_{name.upper()}"
        # Each flag's own default once: argparse's own "(default: None)" would be the flag's sentinel.
        default = "none" if field.default is None else field.default
        # argparse formats help with %: a literal one (e.g. "5 %") is doubled.
        help_text = f"{field.description or ''} (default {default}) [env {env}]".replace("%", "%%")
        if field.annotation is bool:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif name == "risk_cutoffs":
            parser.add_argument(flag, dest=name, type=float, nargs=3, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, default=None, help=help_text)
    return parser


def load_settings(argv: list[str] | None = None) -> Settings:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SystemExit(f"invalid settings:\n{exc}") from None


async def serve(settings: Settings) -> None:
    running = await app.start(settings)
    envoy: EnvoyProcess | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if settings.with_envoy:
            envoy = await asyncio.to_thread(
                start_envoy,
                grpc_port=running.port,
                http_host=settings.http_host,
                http_port=settings.http_port,
                admin_port=settings.envoy_admin_port,
                tls_cert_file=settings.http_tls_cert_file,
                tls_key_file=settings.http_tls_key_file,
                upstream_tls=settings.tls_cert_file is not None,
            )
            log.info("REST API ready: try curl http://localhost:%d/api/advanced/status", envoy.http_port)
        await stop.wait()
        log.info("signal received, shutting down")
    finally:
        await running.stop()
        if envoy is not None:
            await asyncio.to_thread(envoy.stop)


def main(argv: list[str] | None = None) -> None:
    settings = load_settings(argv)
    if settings.with_envoy and settings.tls_client_ca_file is not None:
        raise SystemExit(
            "--with-envoy and --tls-client-ca-file do not go together: Envoy has no client certificate "
            "for the gRPC backend. Terminate TLS at Envoy (--http-tls-cert-file) instead."
        )
    logs.configure(settings.log_level, as_json=settings.log_json)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
