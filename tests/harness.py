"""Starts the real server (port 0, temp DuckDB) in a thread of its own, and real Envoy in front.

The server runs its own asyncio loop in a background thread, so tests can be plain synchronous
functions calling it through generated stubs, urllib (via Envoy) and the grpcurl binary.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from server import app
from server.config import Settings
from server.envoy import EnvoyProcess, start_envoy

GRPCURL = str(Path(sys.executable).parent / "grpcurl")

# A small demo fleet: fast to seed, still with failures and gaps.
SMALL_FLEET = {"demo_miners": 8, "demo_days": 3.0, "demo_seed": 11}


class ServerThread:
    """The app running on a private event loop in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="server-loop", daemon=True)
        self._thread.start()
        self.app: app.App = self.call(app.start(settings), timeout=300)

    @property
    def port(self) -> int:
        return self.app.port

    def call(self, coro: Any, timeout: float = 60) -> Any:
        """Runs a coroutine on the server's loop and returns its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, grace: float = 1.0) -> None:
        try:
            self.call(self.app.stop(grace), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


def start_server(data_dir: Path, **overrides: Any) -> ServerThread:
    """A server factory: the real server on port 0 with its data (DuckDB, models) under data_dir."""
    options: dict[str, Any] = {
        "grpc_port": 0,
        "metrics_port": 0,
        "data_dir": data_dir,
        "log_level": "INFO",
        **SMALL_FLEET,
    }
    options.update(overrides)
    return ServerThread(Settings(**options))


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Stack:
    """Server + Envoy + a gRPC channel, the way users reach the product."""

    server: ServerThread
    envoy: EnvoyProcess
    channel: grpc.Channel

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.envoy.http_port}"

    def rest(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Response:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.http_base + path, data=data, method=method)
        if data is not None:
            request.add_header("content-type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                return Response(reply.status, dict(reply.headers), reply.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, dict(error.headers), error.read())

    def grpcurl(
        self, *command: str, flags: tuple[str, ...] = (), target: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Runs `grpcurl -plaintext FLAGS TARGET COMMAND...` (e.g. "list", or "describe", "X")."""
        argv = [GRPCURL, "-plaintext", *flags, target or self.grpc_target, *command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def close(self) -> None:
        self.channel.close()
        self.envoy.stop()
        self.server.stop()


def start_stack(data_dir: Path, **overrides: Any) -> Stack:
    server = start_server(data_dir, **overrides)
    try:
        envoy = start_envoy(grpc_port=server.port, http_port=0, admin_port=0)
    except BaseException:
        server.stop()
        raise
    return Stack(server, envoy, grpc.insecure_channel(f"127.0.0.1:{server.port}"))


def error_details(error: grpc.RpcError) -> tuple[str, list[str]]:
    """(ErrorInfo reason, BadRequest field names) of a rich error."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "error has no google.rpc.Status details"
    reason, fields = "", []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return reason, fields
