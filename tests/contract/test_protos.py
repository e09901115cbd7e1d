"""The contract: buf lint passes offline, generated files are fresh, Envoy accepts its config."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

from mining.analytics.v1alpha1 import common_pb2, scoring_pb2, training_pb2

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"


def test_buf_lint_passes_offline() -> None:
    result = subprocess.run([str(BUF), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_files_are_fresh(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", "protos/generate.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    committed = ROOT / "server" / "gen"
    stale = _differences(filecmp.dircmp(out, committed, ignore=["__pycache__"]))
    assert stale == [], f"generated files are stale, run `make protos`: {stale}"


def _differences(cmp: filecmp.dircmp[str]) -> list[str]:
    found = [*cmp.left_only, *cmp.right_only, *cmp.diff_files]
    found += [
        name
        for name in cmp.common_files
        if not filecmp.cmp(Path(cmp.left) / name, Path(cmp.right) / name, shallow=False)
    ]
    for sub in cmp.subdirs.values():
        found += _differences(sub)
    return sorted(set(found))


def test_envoy_accepts_its_config() -> None:
    envoy = shutil.which("envoy", path=str(Path(sys.executable).parent))
    assert envoy is not None
    result = subprocess.run(
        [envoy, "--mode", "validate", "-c", "envoy.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK" in result.stdout + result.stderr


def test_enum_zero_values_are_unspecified() -> None:
    # An unset risk level must never read as LOW.
    assert common_pb2.RiskLevel.Name(0) == "RISK_LEVEL_UNSPECIFIED"
    assert common_pb2.ModelKind.Name(0) == "MODEL_KIND_UNSPECIFIED"
    assert training_pb2.JobState.Name(0) == "JOB_STATE_UNSPECIFIED"
    assert [common_pb2.RiskLevel.Name(v) for v in (1, 2, 3, 4)] == ["LOW", "MEDIUM", "HIGH", "CRITICAL"]
    assert scoring_pb2.PredictFailureRiskResponse().risk_level == common_pb2.RISK_LEVEL_UNSPECIFIED


def test_train_parameters_distinguish_absent_from_zero() -> None:
    request = training_pb2.TrainRequest()
    assert not request.HasField("epochs")
    request.epochs = 0
    assert request.HasField("epochs")


def test_no_breaking_change_against_main() -> None:
    # The contract is guarded: a change that would break generated clients fails here (and in CI).
    has_main = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "main"], cwd=ROOT, capture_output=True
    )
    against = ".git#branch=main" if has_main.returncode == 0 else ".git#ref=HEAD"
    result = subprocess.run(
        [str(BUF), "breaking", "--against", against], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
