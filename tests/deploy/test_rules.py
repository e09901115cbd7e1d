"""deploy/prometheus/alerts.yml: promtool accepts it and its unit tests pass, every alert carries the
labels and annotations people route and act on, and every metric it names is one the server exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from deploy import monitoring
from tests.deploy.conftest import PROMETHEUS_SERIES, metric_names, requires_binaries

pytestmark = requires_binaries

HERE = Path(__file__).resolve().parent
REQUIRED_ALERTS = {
    "MinerFailureRiskHigh",
    "MinerAnomalous",
    "SiteEvent",
    "MinerSilent",
    "FleetRiskSurge",
    "ModelStale",
    "TrainingFailed",
    "IngestStalled",
    "ScoringServerDown",
}


def alert_rules() -> list[dict[str, object]]:
    groups = yaml.safe_load(monitoring.ALERTS_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def recorded_names() -> set[str]:
    groups = yaml.safe_load(monitoring.ALERTS_FILE.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_promtool_accepts_the_rules_file() -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(monitoring.ALERTS_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_of_every_alert_pass() -> None:
    result = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yml"],
        cwd=HERE,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", (HERE / "alerts_test.yml").read_text()))
    assert tested == REQUIRED_ALERTS


def test_promtool_unit_tests_catch_a_wrong_expectation(tmp_path: Path) -> None:
    broken = (HERE / "alerts_test.yml").read_text().replace("miner_id: 10.0.0.1", "miner_id: 10.0.0.2")
    broken = broken.replace("../../deploy/prometheus/alerts.yml", str(monitoring.ALERTS_FILE))
    (tmp_path / "broken_test.yml").write_text(broken)
    result = subprocess.run(
        ["promtool", "test", "rules", "broken_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "MinerFailureRiskHigh" in result.stdout + result.stderr


def test_every_alert_carries_severity_scope_miner_site_and_what_to_do() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == REQUIRED_ALERTS
    for rule in rules:
        labels = rule["labels"]
        assert isinstance(labels, dict)
        assert labels["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert labels["scope"] in ("miner", "site", "fleet"), rule["alert"]
        if labels["scope"] != "miner":  # per-miner alerts take miner_id and site from their series
            assert labels["miner_id"] == "all", rule["alert"]
        if labels["scope"] == "fleet":
            assert labels["site"] == "all", rule["alert"]
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert {"summary", "action", "risk_url"} <= annotations.keys(), rule["alert"]
        assert str(annotations["risk_url"]).startswith("http://localhost:5000/api/advanced/"), rule["alert"]
        if labels["scope"] == "miner":
            assert str(annotations["risk_url"]).endswith("/failure-risk/{{ $labels.miner_id }}")


def test_per_miner_alerts_are_written_on_series_labelled_by_miner_and_site() -> None:
    per_miner = {"mfh_miner_risk_score", "mfh_miner_anomaly", "mfh_data_staleness_seconds"}
    for rule in alert_rules():
        if rule["labels"]["scope"] == "miner":  # type: ignore[index]
            assert metric_names(str(rule["expr"])) & per_miner, rule["alert"]


def test_rules_name_only_metrics_the_server_exports(exported: set[str]) -> None:
    groups = yaml.safe_load(monitoring.ALERTS_FILE.read_text())["groups"]
    known = exported | PROMETHEUS_SERIES | recorded_names()
    for group in groups:
        for rule in group["rules"]:
            unknown = metric_names(str(rule["expr"])) - known
            assert not unknown, f"{rule.get('alert') or rule.get('record')} names {unknown}"


def test_metric_name_extraction_sees_through_promql() -> None:
    expr = (
        'sum by (job, site) (rate(mfh_rpc_errors_total{code!="OK", method=~"a|b"}[5m])) '
        '/ on (job) group_left () mfh_risk_cutoff{level="HIGH"} > 0.5 '
        "unless mfh:fleet_high_risk_share offset 1h and histogram_quantile(0.99, x_bucket) < 1e3"
    )
    assert metric_names(expr) == {
        "mfh_rpc_errors_total",
        "mfh_risk_cutoff",
        "mfh:fleet_high_risk_share",
        "x_bucket",
    }


def test_the_fast_copy_shortens_every_alerts_period_and_keeps_the_rest(tmp_path: Path) -> None:
    copy = monitoring.render_rules(tmp_path / "alerts.yml", monitoring.FAST)
    original = alert_rules()
    fast = [
        rule
        for group in yaml.safe_load(copy.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert [rule["for"] for rule in fast] == ["3s"] * len(original)
    assert [rule["expr"] for rule in fast] == [rule["expr"] for rule in original]
    result = subprocess.run(
        ["promtool", "check", "rules", str(copy)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_checked_in_and_the_rendered_prometheus_config(tmp_path: Path) -> None:
    checked_in = subprocess.run(
        ["promtool", "check", "config", str(monitoring.PROMETHEUS_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked_in.returncode == 0, checked_in.stdout + checked_in.stderr
    assert "1 rule files found" in checked_in.stdout
    rules = monitoring.render_rules(tmp_path / "alerts.yml", monitoring.FAST)
    config = monitoring.render_prometheus(
        tmp_path / "prometheus.yml",
        metrics_target="127.0.0.1:9999",
        alertmanager="127.0.0.1:9998",
        rules=rules,
        periods=monitoring.FAST,
    )
    rendered = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    text = config.read_text()
    assert "127.0.0.1:9999" in text and "127.0.0.1:9998" in text and "scrape_interval: 1s" in text
