"""deploy/alertmanager/alertmanager.yml: amtool accepts it (and its commented Telegram and e-mail receivers
once uncommented), its routes pick the receivers they say, and a real Alertmanager on it inhibits so one
cause pages once."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from deploy import monitoring
from tests.deploy.conftest import http_json, requires_binaries

pytestmark = requires_binaries


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["amtool", *args], capture_output=True, text=True, check=False)


def test_amtool_accepts_the_config() -> None:
    result = amtool("check-config", str(monitoring.ALERTMANAGER_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 inhibit rules" in result.stdout


def test_the_commented_telegram_and_email_receivers_are_valid_once_uncommented(tmp_path: Path) -> None:
    lines = []
    for line in monitoring.ALERTMANAGER_FILE.read_text().splitlines():
        stripped = line.lstrip()
        # Uncomment config lines (a comment holding YAML: "# key: value" or "# - name: ...").
        if (
            stripped.startswith("# ")
            and (":" in stripped)
            and not stripped.startswith("# For ")
            and (stripped[2:3].islower() or stripped[2:3] == "-")
        ):
            indent = line[: len(line) - len(stripped)]
            line = indent + stripped[2:]
        lines.append(line)
    text = "\n".join(lines)
    for secret in ("/etc/alertmanager/telegram_token", "/etc/alertmanager/smtp_password"):
        (tmp_path / Path(secret).name).write_text("x\n")
        text = text.replace(secret, str(tmp_path / Path(secret).name))
    assert "telegram_configs:" in text and "email_configs:" in text and "smtp_smarthost:" in text
    config = tmp_path / "alertmanager.yml"
    config.write_text(text)
    result = amtool("check-config", str(config))
    assert result.returncode == 0, text + result.stdout + result.stderr
    assert "4 receivers" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=ScoringServerDown", "severity=critical", "scope=fleet", "site=all"], "oncall-webhook"),
        (["alertname=SiteEvent", "severity=critical", "scope=site", "site=north"], "oncall-webhook"),
        (
            ["alertname=MinerFailureRiskHigh", "severity=warning", "scope=miner", "site=north"],
            "operators-webhook",
        ),
        (["alertname=MinerSilent", "severity=warning", "scope=miner", "site=south"], "operators-webhook"),
        (["alertname=ModelStale", "severity=info", "scope=fleet", "site=all"], "operators-webhook"),
    ],
)
def test_routes_pick_the_receiver_for_severity_and_site(labels: list[str], receiver: str) -> None:
    result = amtool("config", "routes", "test", f"--config.file={monitoring.ALERTMANAGER_FILE}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[monitoring.Binary]:
    """A fresh Alertmanager per test: one test's source alert must not inhibit the next one's."""
    webhook = monitoring.WebhookReceiver()
    binary = monitoring.start_alertmanager(tmp_path, webhook_url=webhook.url, periods=monitoring.FAST)
    yield binary
    binary.stop()
    webhook.stop()


def _post(alertmanager: monitoring.Binary, *alerts: dict[str, str]) -> None:
    now = datetime.now(UTC)
    http_json(
        alertmanager.url + "/api/v2/alerts",
        [
            {
                "labels": labels,
                "annotations": {"summary": "test"},
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(minutes=10)).isoformat(),
            }
            for labels in alerts
        ],
    )


def _states(alertmanager: monitoring.Binary, tag: str, count: int) -> dict[str, dict[str, Any]]:
    """miner_id -> status of the alerts tagged `tag`, once all `count` are processed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alerts = [
            a
            for a in http_json(alertmanager.url + "/api/v2/alerts?inhibited=true&active=true&silenced=true")
            if a["labels"].get("test") == tag
        ]
        states = {a["labels"]["miner_id"] + "/" + a["labels"]["alertname"]: a["status"] for a in alerts}
        if len(states) == count and all(s["state"] != "unprocessed" for s in states.values()):
            return states
        time.sleep(0.1)
    raise AssertionError(f"alerts tagged {tag} not processed: {states}")


def miner_alert(tag: str, name: str, miner_id: str, site: str) -> dict[str, str]:
    return {
        "alertname": name,
        "severity": "warning",
        "scope": "miner",
        "miner_id": miner_id,
        "site": site,
        "test": tag,
    }


def fleet_alert(tag: str, name: str, severity: str = "critical") -> dict[str, str]:
    return {
        "alertname": name,
        "severity": severity,
        "scope": "fleet",
        "miner_id": "all",
        "site": "all",
        "test": tag,
    }


def test_scoring_server_down_holds_back_every_per_miner_alert(alertmanager: monitoring.Binary) -> None:
    _post(
        alertmanager,
        fleet_alert("down", "ScoringServerDown"),
        miner_alert("down", "MinerFailureRiskHigh", "10.0.0.1", "north"),
        miner_alert("down", "MinerSilent", "10.0.0.2", "south"),
    )
    states = _states(alertmanager, "down", 3)
    assert states["all/ScoringServerDown"]["state"] == "active"
    assert states["10.0.0.1/MinerFailureRiskHigh"]["state"] == "suppressed"
    assert states["10.0.0.1/MinerFailureRiskHigh"]["inhibitedBy"]
    assert states["10.0.0.2/MinerSilent"]["state"] == "suppressed"


def test_ingest_stalled_holds_back_miner_silent_only(alertmanager: monitoring.Binary) -> None:
    _post(
        alertmanager,
        fleet_alert("stalled", "IngestStalled"),
        miner_alert("stalled", "MinerSilent", "10.0.1.1", "north"),
        miner_alert("stalled", "MinerAnomalous", "10.0.1.2", "north"),
    )
    states = _states(alertmanager, "stalled", 3)
    assert states["10.0.1.1/MinerSilent"]["state"] == "suppressed"
    assert states["10.0.1.2/MinerAnomalous"]["state"] == "active"


def test_a_site_event_holds_back_per_miner_alerts_of_its_site_only(alertmanager: monitoring.Binary) -> None:
    event = {"alertname": "SiteEvent", "severity": "critical", "scope": "site", "miner_id": "all"}
    _post(
        alertmanager,
        {**event, "site": "east", "kind": "power", "test": "site"},
        miner_alert("site", "MinerFailureRiskHigh", "10.0.2.1", "east"),
        miner_alert("site", "MinerFailureRiskHigh", "10.0.2.2", "west"),
    )
    states = _states(alertmanager, "site", 3)
    assert states["all/SiteEvent"]["state"] == "active"
    assert states["10.0.2.1/MinerFailureRiskHigh"]["state"] == "suppressed"
    assert states["10.0.2.2/MinerFailureRiskHigh"]["state"] == "active"
