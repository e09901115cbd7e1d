"""The layers are a contract import-linter checks: it holds, ignores no import, and catches a breach."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd), "PYTHONNOUSERSITE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 6 kept, 0 broken." in result.stdout


def test_contracts_state_the_layers_and_ignore_no_import() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    by_id = {contract["id"]: contract for contract in contracts}
    assert all("ignore_imports" not in contract for contract in contracts)
    layers = by_id["layers"]["layers"]
    assert layers.index("server.transport | server.sim") < layers.index("server.ops")
    assert layers.index("server.ops") < layers.index("server.domain")
    assert layers.index("server.domain") < layers.index("server.models | server.store")
    no_grpc = by_id["no-grpc-below-transport"]
    assert {"server.domain", "server.models", "server.store", "server.errors"} <= set(
        no_grpc["source_modules"]
    )
    assert {"grpc", "google"} <= set(no_grpc["forbidden_modules"])
    assert by_id["no-loops"]["type"] == "acyclic_siblings"


def test_a_domain_module_that_imports_grpc_or_the_transport_breaks_the_contract(tmp_path: Path) -> None:
    # A copy of the tree with two breaches: the checker must name both.
    shutil.copytree(ROOT / "server", tmp_path / "server", ignore=shutil.ignore_patterns("__pycache__", "gen"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    validation = tmp_path / "server" / "domain" / "validation.py"
    validation.write_text(
        validation.read_text() + "\nimport grpc  # noqa\nimport server.transport.convert  # noqa\n"
    )
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "server.domain.validation -> grpc" in result.stdout
    assert "server.domain.validation -> server.transport.convert" in result.stdout
