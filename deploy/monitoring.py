"""Starts Prometheus and Alertmanager preconfigured against a running server (`make monitoring`).

It copies deploy/prometheus/prometheus.yml, deploy/prometheus/alerts.yml and
deploy/alertmanager/alertmanager.yml into a run folder with the ports filled in, points every webhook
receiver at a small receiver of its own that prints each notification, and runs the Debian binaries
(`prometheus`, `prometheus-alertmanager`) until Ctrl-C. `--fast` shortens every period (scrape and
rule evaluation 1 s, every rule's `for:` 3 s, Alertmanager's grouping 1 s) so alerts show within
seconds; the integration test (tests/deploy/test_alert_path.py) runs the same code.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("monitoring")

DEPLOY = Path(__file__).resolve().parent
ALERTS_FILE = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_FILE = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER_FILE = DEPLOY / "alertmanager" / "alertmanager.yml"
PROMETHEUS_BIN = "prometheus"
ALERTMANAGER_BIN = "prometheus-alertmanager"  # Debian's name for alertmanager


@dataclass(frozen=True)
class Periods:
    """How fast the stack reacts. None keeps the value in the checked-in files."""

    scrape_interval: str | None = None
    evaluation_interval: str | None = None
    alert_for: str | None = None
    """Replaces every alert rule's `for:`."""
    group_wait: str | None = None
    group_interval: str | None = None
    repeat_interval: str | None = None


PRODUCTION = Periods()
FAST = Periods("1s", "1s", "3s", "1s", "1s", "1h")


def render_rules(dst: Path, periods: Periods) -> Path:
    """A copy of alerts.yml with the rules' `for:` replaced when periods say so."""
    rules = yaml.safe_load(ALERTS_FILE.read_text())
    if periods.alert_for is not None:
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["for"] = periods.alert_for
    dst.write_text(yaml.safe_dump(rules, sort_keys=False))
    return dst


def render_prometheus(
    dst: Path, *, metrics_target: str, alertmanager: str, rules: Path, periods: Periods
) -> Path:
    """prometheus.yml with the server's metrics address, Alertmanager's address and the rules' path."""
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    config["rule_files"] = [str(rules)]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [alertmanager]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "mining-health"]
    job["static_configs"][0]["targets"] = [metrics_target]
    if periods.scrape_interval is not None:
        config["global"]["scrape_interval"] = periods.scrape_interval
    if periods.evaluation_interval is not None:
        config["global"]["evaluation_interval"] = periods.evaluation_interval
    dst.write_text(yaml.safe_dump(config, sort_keys=False))
    return dst


def render_alertmanager(dst: Path, *, webhook_url: str | None, periods: Periods) -> Path:
    """alertmanager.yml with every webhook pointed at webhook_url (path kept) and grouping periods set."""
    config = yaml.safe_load(ALERTMANAGER_FILE.read_text())
    if webhook_url is not None:
        for receiver in config["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                path = "/" + hook["url"].split("/", 3)[3] if hook["url"].count("/") >= 3 else "/"
                hook["url"] = webhook_url.rstrip("/") + path
    routes = [config["route"], *config["route"].get("routes", [])]
    for key in ("group_wait", "group_interval", "repeat_interval"):
        value = getattr(periods, key)
        if value is not None:
            for route in routes:
                if key in route or route is config["route"]:
                    route[key] = value
    dst.write_text(yaml.safe_dump(config, sort_keys=False))
    return dst


# ---- a webhook receiver ------------------------------------------------------------------------


@dataclass
class Notification:
    """One webhook POST from Alertmanager."""

    received_at: float
    """time.time() when it arrived."""
    path: str
    payload: dict[str, Any]


@dataclass
class WebhookReceiver:
    """Alertmanager's webhook target: records (and optionally prints) every notification."""

    host: str = "127.0.0.1"
    port: int = 0
    echo: bool = False
    notifications: list[Notification] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.record(Notification(time.time(), self.path, json.loads(body or b"{}")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def record(self, notification: Notification) -> None:
        with self._cond:
            self.notifications.append(notification)
            self._cond.notify_all()
        if self.echo:
            for alert in notification.payload.get("alerts", []):
                labels, notes = alert.get("labels", {}), alert.get("annotations", {})
                print(
                    f"{datetime.now(UTC):%H:%M:%S} {notification.path} {alert.get('status', '?').upper()} "
                    f"{labels.get('alertname')} miner={labels.get('miner_id')} site={labels.get('site')}: "
                    f"{notes.get('summary', '')}",
                    flush=True,
                )

    def wait_for(self, match: Callable[[Notification], bool], timeout: float) -> Notification:
        """The first notification (old or new) that matches; AssertionError after timeout seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for notification in self.notifications:
                    if match(notification):
                        return notification
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching notification within {timeout} s: {self.notifications}")
                self._cond.wait(remaining)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# ---- the binaries ------------------------------------------------------------------------------


def listening_port(pid: int, timeout: float = 30.0) -> int:
    """The TCP port a process listens on (it was started on port 0), from /proc."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = fd.readlink()
            except OSError:
                continue
            if str(target).startswith("socket:["):
                inodes.add(str(target)[8:-1])
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:  # 0A: LISTEN
                    return int(parts[1].rsplit(":", 1)[1], 16)
        time.sleep(0.05)
    raise RuntimeError(f"process {pid} listens on no TCP port after {timeout} s")


@dataclass
class Binary:
    """A started Prometheus or Alertmanager."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _start(name: str, argv: list[str], run_dir: Path, timeout: float) -> Binary:
    if shutil.which(argv[0]) is None:
        raise RuntimeError(f"{argv[0]} is not installed: run `make setup` (it runs deploy/setup.sh)")
    log_path = run_dir / f"{name}.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=run_dir)
    try:
        port = listening_port(process.pid, timeout)
        binary = Binary(name, process, port, log_path)
        _wait_ready(binary, timeout)
    except BaseException:
        process.kill()
        process.wait(10)
        raise RuntimeError(f"{name} did not start: {log_path.read_text()[-2000:]}") from None
    return binary


def _wait_ready(binary: Binary, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if binary.process.poll() is not None:
            raise RuntimeError(f"{binary.name} exited with {binary.process.returncode}")
        try:
            with urllib.request.urlopen(binary.url + "/-/ready", timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{binary.name} not ready after {timeout} s")


@dataclass
class Monitoring:
    """Prometheus and Alertmanager started for one server."""

    prometheus: Binary
    alertmanager: Binary

    def stop(self) -> None:
        self.prometheus.stop()
        self.alertmanager.stop()


def start_alertmanager(
    run_dir: Path,
    *,
    webhook_url: str | None,
    periods: Periods = PRODUCTION,
    port: int = 0,
    host: str = "127.0.0.1",
    timeout: float = 60.0,
) -> Binary:
    """Alertmanager on the checked-in routing tree, its webhooks pointed at webhook_url."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config = render_alertmanager(run_dir / "alertmanager.yml", webhook_url=webhook_url, periods=periods)
    argv = [
        ALERTMANAGER_BIN,
        f"--config.file={config}",
        f"--storage.path={run_dir / 'alertmanager-data'}",
        f"--web.listen-address={host}:{port}",
        "--cluster.listen-address=",  # no gossip: a single instance
    ]
    return _start("alertmanager", argv, run_dir, timeout)


def start_prometheus(
    run_dir: Path,
    *,
    metrics_target: str,
    alertmanager: str,
    periods: Periods = PRODUCTION,
    port: int = 0,
    host: str = "127.0.0.1",
    timeout: float = 60.0,
) -> Binary:
    """Prometheus scraping metrics_target with the checked-in rules, alerting to `alertmanager`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rules = render_rules(run_dir / "alerts.yml", periods)
    config = render_prometheus(
        run_dir / "prometheus.yml",
        metrics_target=metrics_target,
        alertmanager=alertmanager,
        rules=rules,
        periods=periods,
    )
    argv = [
        PROMETHEUS_BIN,
        f"--config.file={config}",
        f"--storage.tsdb.path={run_dir / 'prometheus-data'}",
        f"--web.listen-address={host}:{port}",
    ]
    return _start("prometheus", argv, run_dir, timeout)


def start(
    run_dir: Path,
    *,
    metrics_target: str,
    webhook_url: str | None,
    periods: Periods = PRODUCTION,
    prometheus_port: int = 0,
    alertmanager_port: int = 0,
    host: str = "127.0.0.1",
    timeout: float = 60.0,
) -> Monitoring:
    """Renders the configs into run_dir and starts Alertmanager, then Prometheus (port 0: a free one)."""
    alertmanager = start_alertmanager(
        run_dir, webhook_url=webhook_url, periods=periods, port=alertmanager_port, host=host, timeout=timeout
    )
    try:
        prometheus = start_prometheus(
            run_dir,
            metrics_target=metrics_target,
            alertmanager=f"{host}:{alertmanager.port}",
            periods=periods,
            port=prometheus_port,
            host=host,
            timeout=timeout,
        )
    except BaseException:
        alertmanager.stop()
        raise
    return Monitoring(prometheus, alertmanager)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--metrics-target", default="127.0.0.1:9464", help="the server's /metrics host:port")
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--alertmanager-port", type=int, default=9093)
    parser.add_argument("--webhook-port", type=int, default=9095, help="the printing webhook receiver's port")
    parser.add_argument("--run-dir", type=Path, default=Path("var/monitoring"))
    parser.add_argument("--fast", action="store_true", help="1 s scrapes and evaluations, 3 s alert periods")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Ctrl-C and SIGTERM both stop the binaries (a shell may start a background job with SIGINT ignored).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    receiver = WebhookReceiver(port=args.webhook_port, echo=True)
    stack = start(
        args.run_dir.resolve(),
        metrics_target=args.metrics_target,
        webhook_url=receiver.url,
        periods=FAST if args.fast else PRODUCTION,
        prometheus_port=args.prometheus_port,
        alertmanager_port=args.alertmanager_port,
    )
    print(
        f"Prometheus   {stack.prometheus.url}/alerts  (scraping {args.metrics_target})\n"
        f"Alertmanager {stack.alertmanager.url}/#/alerts\n"
        f"Webhook      {receiver.url}  (notifications print below; Ctrl-C stops all)",
        flush=True,
    )
    try:
        while stack.prometheus.process.poll() is None and stack.alertmanager.process.poll() is None:
            time.sleep(1)
        print("a binary exited; see the logs in", args.run_dir, flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
        receiver.stop()


if __name__ == "__main__":
    raise SystemExit(main())
