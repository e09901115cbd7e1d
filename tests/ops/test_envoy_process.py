"""Envoy lives and dies with the server (issue 11, item 7).

kill -9 of the server used to orphan Envoy (it kept the port and answered 503). Now Envoy gets
SIGKILL when the server dies (PR_SET_PDEATHSIG); a stale Envoy of an earlier run is recognised by the
pidfile that run left (its pid and base id), never by who holds a port, and is stopped with a log
line; an Envoy that dies under a live server is restarted.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

from server.envoy import PIDFILE, start_envoy
from tests.ops.server_process import ServerProcess, alive


def _pidfile(data_dir: Path, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    path = data_dir / PIDFILE
    while time.monotonic() < deadline:
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            time.sleep(0.1)
    raise AssertionError(f"no {path}")


def _wait(condition: object, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def _status(http_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/advanced/status", timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


ENVOY_FLAGS = ("--with-envoy", "--http-port", "0", "--envoy-admin-port", "0")


def test_kill_9_of_the_server_takes_envoy_with_it(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, *ENVOY_FLAGS)
    try:
        entry = _pidfile(tmp_path)
        pid = int(entry["pid"])  # type: ignore[call-overload]
        assert alive(pid)
        assert _wait(lambda: _status(int(entry["http_port"])) == 200)  # type: ignore[call-overload]
        server.kill9()
        assert _wait(lambda: not alive(pid), 30), f"envoy {pid} outlived the server"
    finally:
        server.stop()


def test_a_stale_envoy_named_by_the_pidfile_is_stopped_at_start(tmp_path: Path) -> None:
    stale = start_envoy(grpc_port=1, http_port=0, admin_port=0)  # an earlier run's Envoy, orphaned
    bystander = subprocess.Popen(["sleep", "600"])  # a pid the file names that is not that Envoy
    try:
        base_id = stale.base_id
        (tmp_path / PIDFILE).write_text(
            json.dumps({"pid": stale.process.pid, "base_id": base_id, "http_port": stale.http_port})
        )
        server = ServerProcess(tmp_path, *ENVOY_FLAGS)
        try:
            assert _wait(lambda: stale.process.poll() is not None, 30), "the stale envoy still runs"
            assert _wait(lambda: any("stale Envoy" in line for line in server.lines), 30)
            line = next(line for line in server.lines if "stale Envoy" in line)
            assert str(stale.process.pid) in line and str(base_id) in line
            fresh = _pidfile(tmp_path)
            assert fresh["pid"] != stale.process.pid
        finally:
            server.stop()
        # A pidfile naming a process that is no Envoy of that base id: left alone.
        (tmp_path / PIDFILE).write_text(json.dumps({"pid": bystander.pid, "base_id": 4242, "http_port": 1}))
        server = ServerProcess(tmp_path, *ENVOY_FLAGS)
        try:
            assert _wait(lambda: _pidfile(tmp_path)["pid"] != bystander.pid)
            assert bystander.poll() is None
        finally:
            server.stop()
    finally:
        stale.stop()
        bystander.kill()
        bystander.wait()


def test_envoy_quitting_under_a_live_server_is_restarted(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, *ENVOY_FLAGS)
    try:
        first = _pidfile(tmp_path)
        assert _wait(lambda: _status(int(first["http_port"])) == 200)  # type: ignore[call-overload]
        request = urllib.request.Request(f"http://{first['admin']}/quitquitquit", method="POST")
        urllib.request.urlopen(request, timeout=10).close()
        assert _wait(lambda: _pidfile(tmp_path).get("pid") != first["pid"], 60), "envoy was not restarted"
        second = _pidfile(tmp_path)
        assert _wait(lambda: _status(int(second["http_port"])) == 200)  # type: ignore[call-overload]
        assert any("envoy exited" in line.lower() for line in server.lines), server.lines[-5:]
        assert server.process.poll() is None
    finally:
        server.stop()
    assert _wait(lambda: not alive(int(second["pid"])), 30)  # type: ignore[call-overload]
