"""The real server as a subprocess (`python -m server.main`), to kill -9 and restart on the same data."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.harness import SMALL_FLEET

LISTENING = re.compile(r"gRPC server listening on (\S+):(\d+)")


class ServerProcess:
    """Starts the server on a free port and parses the port from its log line."""

    def __init__(self, data_dir: Path, *flags: str, ready_timeout: float = 120) -> None:
        command = [
            sys.executable,
            "-m",
            "server.main",
            "--grpc-port",
            "0",
            "--data-dir",
            str(data_dir),
            "--demo-miners",
            str(SMALL_FLEET["demo_miners"]),
            "--demo-days",
            str(SMALL_FLEET["demo_days"]),
            "--demo-seed",
            str(SMALL_FLEET["demo_seed"]),
            "--metrics-port",
            "-1",
            *flags,
        ]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.port = self._wait_for_port(ready_timeout)
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _wait_for_port(self, timeout: float) -> int:
        assert self.process.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                raise RuntimeError("server exited during start-up:\n" + "".join(self.lines))
            self.lines.append(line)
            found = LISTENING.search(line)
            if found:
                return int(found.group(2))
        self.process.kill()
        raise TimeoutError("server did not report its port")

    def _read_rest(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def children(self) -> list[int]:
        """PIDs of the server's child processes (training workers), from /proc."""
        found: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*"):
            try:
                found += [int(pid) for pid in (task / "children").read_text().split()]
            except OSError:
                continue
        return found

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self._drain.join(5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
