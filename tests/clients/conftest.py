"""Fixtures of the client tests: fake miners on loopback, a real server, a fake telemetry server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.clients.fake_miners import FakeMiner, Reply
from tests.clients.fake_server import FakeServer, start_fake_server

REPO_ROOT = Path(__file__).resolve().parents[2]
# SGR sequences that set a colour (30-37, 38;..., 90-97); bold alone (1) is not colour.
COLOUR = re.compile(r"\x1b\[(?:\d+;)*(?:3[0-8]|9[0-7])(?:;\d+)*m")

MinerFactory = Callable[..., Awaitable[FakeMiner]]


@pytest.fixture
async def fake_miner() -> AsyncIterator[MinerFactory]:
    """Starts fake miners: `await fake_miner(replies, mode=..., keep_open=...)`; all closed after the test."""
    started: list[FakeMiner] = []

    async def start(replies: dict[str, Reply] | None = None, **options: object) -> FakeMiner:
        miner = await FakeMiner(replies=dict(replies or {}), **options).start()  # type: ignore[arg-type]
        started.append(miner)
        return miner

    yield start
    for miner in started:
        await miner.close()


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Runs `python -m clients.cli ARGS...` as a user would, from the repository root."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MFH_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "clients.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
        env=environment,
    )


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = start_fake_server()
    yield server
    server.stop()


def cli_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MFH_")}
    environment.pop("NO_COLOR", None)
    environment.update(env or {})
    return environment


def run_cli_into_closed_pipe(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Runs the CLI with stdout on a pipe whose reader has already gone (`| head -0`)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "clients.cli", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
            cwd=REPO_ROOT,
            env=cli_environment(env),
        )
    finally:
        os.close(write_end)


class Terminal:
    """The CLI on a pseudo-terminal (stdin, stdout and stderr), as a person runs it."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        import fcntl
        import pty
        import struct
        import termios

        self._master, replica = pty.openpty()
        # A new pseudo-terminal is 0 x 0; progress bars draw nothing that narrow.
        fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        environment = cli_environment({"TERM": "xterm-256color", "COLUMNS": "120", **(env or {})})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "clients.cli", *args],
            stdin=replica,
            stdout=replica,
            stderr=replica,
            cwd=REPO_ROOT,
            env=environment,
            close_fds=True,
        )
        os.close(replica)
        self.output = b""

    def read_until(self, text: bytes, timeout: float = 60) -> bytes:
        """Reads until `text` appears (or the program ends); returns all output so far."""
        import select
        import time

        deadline = time.monotonic() + timeout
        while text not in self.output:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} never came; output so far: {self.output!r}"
            ready, _, _ = select.select([self._master], [], [], remaining)
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the program closed the terminal
                chunk = b""
            if not chunk:
                break
            self.output += chunk
        return self.output

    def write(self, data: bytes) -> None:
        os.write(self._master, data)

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Waits for the program; returns its exit code and everything it printed."""
        self._drain(timeout)
        code = self.process.wait(timeout)
        os.close(self._master)
        return code, self.output.decode(errors="replace")

    def _drain(self, timeout: float) -> None:
        import select
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._master], [], [], 0.5)
            if not ready:
                if self.process.poll() is not None:
                    return
                continue
            try:
                chunk = os.read(self._master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk
