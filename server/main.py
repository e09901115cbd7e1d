"""Command line: `mining-health-server [--flags]` runs the gRPC server (and Envoy with --with-envoy).

Every setting is a flag and an MFH_* environment variable; flags win. `--help` lists them all.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

from grpc_health.v1 import health_pb2
from pydantic import ValidationError

from server import app, logs
from server.config import Settings
from server.envoy import PIDFILE, EnvoyProcess, launch_envoy, stop_stale, write_pidfile

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
        # argparse %-formats help: a literal "%" in a description ("95 %") must be doubled.
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


class EnvoySupervisor:
    """Runs Envoy beside the server: started with PR_SET_PDEATHSIG from the event loop's thread (so it
    dies with the server, even by kill -9), recorded in a pidfile, restarted if it dies under a live
    server (health "" reads NOT_SERVING meanwhile); after MAX_RESTARTS failed starts in a row the
    server exits loudly."""

    MAX_RESTARTS = 3
    POLL_S = 0.5

    def __init__(self, settings: Settings, running: app.App) -> None:
        self._settings = settings
        self._running = running
        self._pidfile = settings.data_dir / PIDFILE
        self.envoy: EnvoyProcess | None = None
        self.failed = asyncio.Event()

    async def start(self) -> EnvoyProcess:
        await asyncio.to_thread(stop_stale, self._pidfile)
        settings = self._settings
        launched = launch_envoy(  # in the loop's thread: PDEATHSIG follows the thread that forks
            grpc_port=self._running.port,
            http_host=settings.http_host,
            http_port=settings.http_port,
            admin_port=settings.envoy_admin_port,
            tls_cert_file=settings.http_tls_cert_file,
            tls_key_file=settings.http_tls_key_file,
            upstream_tls=settings.tls_cert_file is not None,
            die_with_parent=True,
            grpc_unix_socket=self._running.unix_socket,
        )
        self.envoy = await asyncio.to_thread(launched.wait_ready)
        await asyncio.to_thread(write_pidfile, self._pidfile, self.envoy)
        return self.envoy

    async def watch(self) -> None:
        """Restarts Envoy when it exits under the live server."""
        failures = 0
        while True:
            await asyncio.sleep(self.POLL_S)
            if self.envoy is None or self.envoy.process.poll() is None:
                continue
            code = self.envoy.process.returncode
            log.error("envoy exited (code %s) under the live server; REST is down, restarting it", code)
            await self._running.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
            await asyncio.to_thread(self.envoy.stop)
            self.envoy = None
            try:
                await self.start()
            except Exception:  # noqa: BLE001 - counted; after MAX_RESTARTS the server exits
                failures += 1
                log.exception("restarting envoy failed (%d of %d)", failures, self.MAX_RESTARTS)
                if failures >= self.MAX_RESTARTS:
                    log.critical("envoy cannot be restarted: the server exits")
                    self.failed.set()
                    return
                continue
            failures = 0
            await self._running.health.set("", health_pb2.HealthCheckResponse.SERVING)
            log.info("envoy restarted: REST on port %d", self.envoy.http_port if self.envoy else 0)

    async def stop(self) -> None:
        if self.envoy is not None:
            await asyncio.to_thread(self.envoy.stop)
            self._pidfile.unlink(missing_ok=True)


async def serve(settings: Settings) -> None:
    running = await app.start(settings)
    supervisor: EnvoySupervisor | None = None
    watcher: asyncio.Task[None] | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if settings.with_envoy:
            supervisor = EnvoySupervisor(settings, running)
            envoy = await supervisor.start()
            watcher = asyncio.create_task(supervisor.watch(), name="envoy-supervisor")
            log.info("REST API ready: try curl http://localhost:%d/api/advanced/status", envoy.http_port)
        waits = [asyncio.create_task(stop.wait())]
        if supervisor is not None:
            waits.append(asyncio.create_task(supervisor.failed.wait()))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
        if supervisor is not None and supervisor.failed.is_set():
            raise SystemExit("envoy died and could not be restarted (see the log above)")
        log.info("signal received, shutting down")
    finally:
        if watcher is not None:
            watcher.cancel()
        await running.stop()
        if supervisor is not None:
            await supervisor.stop()


def main(argv: list[str] | None = None) -> None:
    settings = load_settings(argv)
    if settings.with_envoy and settings.tls_client_ca_file is not None:
        raise SystemExit(
            "--with-envoy and --tls-client-ca-file do not go together: Envoy has no client certificate "
            "for the gRPC backend. Terminate TLS at Envoy (--http-tls-cert-file) instead."
        )
    logs.configure(settings.log_level, as_json=settings.log_json)
    os.umask(0o077)  # everything the server writes (store, models, logs, sockets) is private
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
