"""Runs the real server (and Envoy in front) in a process of its own for the benchmarks.

`python -m bench.serve --data-dir DIR [--with-envoy] [--setting name=value ...]` prints one JSON line
{"pid", "grpc_port", "http_port"} once serving and stops cleanly on SIGTERM or when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from server import app
from server.config import Settings
from server.envoy import start_envoy


async def serve(settings: Settings, with_envoy: bool) -> None:
    running = await app.start(settings)
    envoy = start_envoy(grpc_port=running.port, http_port=0, admin_port=0) if with_envoy else None
    print(
        json.dumps(
            {
                "pid": __import__("os").getpid(),
                "grpc_port": running.port,
                "http_port": envoy.http_port if envoy else None,
            }
        ),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    await stop.wait()
    if envoy is not None:
        envoy.stop()
    await running.stop(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--with-envoy", action="store_true")
    parser.add_argument("--setting", action="append", default=[], help="a Settings field as name=value")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.setting)
    defaults = {"metrics_port": "-1", "log_level": "WARNING"}  # a --setting overrides them
    settings = Settings(data_dir=args.data_dir, grpc_port=0, **{**defaults, **overrides})  # type: ignore[arg-type]
    asyncio.run(serve(settings, args.with_envoy))


if __name__ == "__main__":
    main()
