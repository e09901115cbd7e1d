"""deploy/grafana/fleet.json: Grafana does not install here, so every panel's PromQL (and every template
variable's selector) is parsed by promtool and may name only metrics the real server exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from deploy import monitoring
from tests.deploy.conftest import metric_names, requires_binaries

pytestmark = requires_binaries

DASHBOARD = monitoring.DEPLOY / "grafana" / "fleet.json"
# Grafana's variables, replaced by values of the right kind before promtool parses an expression.
VARIABLES = {"$__rate_interval": "5m", "$site": ".*", "$miner": "192.168.1.100"}
REQUIRED_PANELS = {
    "Fleet by risk level",
    "Riskiest miners",
    "Risk score",
    "Temperature",
    "Hashrate",
    "RPC latency p99",
    "RPC errors by method and code",
    "Ingest rate",
    "Training loss",
    "Dynamic batch size",
}


def panels() -> list[dict[str, object]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def expressions() -> dict[str, str]:
    """'panel title / refId' -> PromQL, template variables' selectors included."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = {f"{p['title']} / {t['refId']}": t["expr"] for p in panels() for t in p["targets"]}  # type: ignore[attr-defined]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            selector = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert selector, variable["definition"]
            found[f"variable {variable['name']}"] = selector.group(1)
    return found


def substituted(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def promtool_parses(exprs: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    rules = [{"record": f"panel_{i}", "expr": substituted(expr)} for i, expr in enumerate(exprs.values())]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )


def test_every_panels_promql_parses(tmp_path: Path) -> None:
    exprs = expressions()
    assert len(exprs) >= 30
    result = promtool_parses(exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_expression_that_does_not_parse_is_caught(tmp_path: Path) -> None:
    result = promtool_parses({"broken": "sum by (level) (mfh_miners_by_risk_level"}, tmp_path)
    assert result.returncode != 0


def test_panels_name_only_metrics_the_server_exports(exported: set[str]) -> None:
    for where, expr in expressions().items():
        unknown = metric_names(substituted(expr)) - exported
        assert not unknown, f"{where} names {unknown}, which the server does not export"


def test_the_dashboard_covers_fleet_miners_rpcs_ingest_and_training() -> None:
    titles = {str(p["title"]) for p in panels()}
    assert titles >= REQUIRED_PANELS
    ids = [p["id"] for p in json.loads(DASHBOARD.read_text())["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
