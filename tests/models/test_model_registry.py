"""Registry: versions, activation and rollback, atomic writes, the promotion gate."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from server.errors import InvalidArgument, ModelNotTrained, NotFound
from server.models import ModelKind
from server.models.lstm import FailureRiskConfig, FailureRiskLSTM
from server.models.registry import ModelRegistry, should_promote


def artifact(seed: int, brier: float = 0.1) -> dict[str, object]:
    torch.manual_seed(seed)
    model = FailureRiskLSTM(FailureRiskConfig())
    return {
        "model": model.state_dict(),
        "model_args": {"n_inputs": 12, "hidden1": 64, "hidden2": 32, "dense": 16, "dropout": 0.2},
        "kind": int(ModelKind.LSTM),
        "sequence_length": 24,
        "metrics": {"val_brier": brier},
        "job_id": f"job-{seed}",
    }


def test_saved_versions_list_newest_first_and_load_with_weights_only(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    first, second = registry.save(artifact(1)), registry.save(artifact(2))
    assert first.startswith("lstm-") and first != second
    assert [v.version for v in registry.list()] == [second, first]
    assert registry.list(ModelKind.AUTOENCODER) == []
    assert registry.active_version(ModelKind.LSTM) is None  # saving does not activate
    raw = torch.load(tmp_path / "lstm" / f"{second}.pt", weights_only=True)
    assert raw["library_versions"]["torch"] == str(torch.__version__) and raw["job_id"] == "job-2"
    loaded = registry.load(ModelKind.LSTM, second)
    assert torch.equal(loaded.module.state_dict()["head.weight"], artifact(2)["model"]["head.weight"])  # type: ignore[index]
    assert not loaded.module.training


def test_load_without_an_active_version_or_with_an_unknown_one_fails_clearly(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    # The surface-neutral pointer the transport renders as a REST route or a gRPC method.
    with pytest.raises(ModelNotTrained, match=r"start one with <<TrainingService\.Train\?model_kind=lstm>>"):
        registry.load(ModelKind.LSTM)
    with pytest.raises(NotFound, match="no LSTM model version 'lstm-nope'"):
        registry.activate(ModelKind.LSTM, "lstm-nope")


def test_activate_and_roll_back(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    first, second = registry.save(artifact(1)), registry.save(artifact(2))
    registry.activate(ModelKind.LSTM, first)
    info = registry.activate(ModelKind.LSTM, second)
    assert info.active and info.version == second
    assert registry.load(ModelKind.LSTM).version == second
    assert [v.active for v in registry.list(ModelKind.LSTM)] == [True, False]
    assert registry.previous_version(ModelKind.LSTM) == first
    registry.activate(ModelKind.LSTM, first)
    assert registry.active_version(ModelKind.LSTM) == first


def test_partial_files_from_a_crash_leave_the_active_version_loadable(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    good = registry.save(artifact(1))
    registry.activate(ModelKind.LSTM, good)
    folder = tmp_path / "lstm"
    full = (folder / f"{good}.pt").read_bytes()
    (folder / ".lstm-20990101T000000Z-dead.pt.123-abcd.tmp").write_bytes(full[: len(full) // 2])
    (folder / ".active.json.123-abcd.tmp").write_bytes(b'{"version": "lstm-2099')
    (folder / "lstm-20990101T000000Z-beef.pt").write_bytes(full[:100])  # killed before its metadata
    reopened = ModelRegistry(tmp_path)
    assert [v.version for v in reopened.list()] == [good]
    assert reopened.load(ModelKind.LSTM).version == good


def test_a_write_killed_midway_leaves_the_previous_version_active(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    good = registry.save(artifact(1))
    registry.activate(ModelKind.LSTM, good)
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from server.models.registry import _write_atomic

        def write(handle):
            handle.write(b"x" * 4096)
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # dies mid-write, like a power cut or OOM kill

        _write_atomic(Path({str(tmp_path / "lstm" / "active.json")!r}), write)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2], check=False)
    assert done.returncode == -9
    assert list((tmp_path / "lstm").glob(".active.json.*.tmp"))  # the torn temp file is left behind...
    assert registry.active_version(ModelKind.LSTM) == good  # ...but never replaced the real one
    assert registry.load(ModelKind.LSTM).version == good


def test_an_artifact_that_is_not_plain_data_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    good = registry.save(artifact(1))
    registry.activate(ModelKind.LSTM, good)
    bad = {**artifact(2), "norm": Path("/not/plain/data")}
    with pytest.raises(InvalidArgument, match="objects other than tensors"):
        registry.save(bad)
    assert sorted(p.name for p in (tmp_path / "lstm").iterdir()) == sorted(
        ["active.json", f"{good}.json", f"{good}.pt"]
    )
    assert registry.load(ModelKind.LSTM).version == good


def test_promotion_gate_requires_a_no_worse_held_out_metric() -> None:
    assert should_promote({"val_brier": 0.2}, None)
    assert should_promote({"val_brier": 0.08}, {"val_brier": 0.1})
    assert should_promote({"val_brier": 0.1}, {"val_brier": 0.1})
    assert not should_promote({"val_brier": 0.12}, {"val_brier": 0.1})
    assert not should_promote({"val_brier": float("nan")}, {"val_brier": 0.1})
    # The active model scored on the new run's validation split wins over its own old number.
    assert should_promote({"val_brier": 0.12, "incumbent_val_brier": 0.13}, {"val_brier": 0.1})
    assert not should_promote({"val_loss": 0.5, "incumbent_val_loss": 0.4}, {"val_loss": 0.9})
    assert should_promote({"val_loss": 0.5}, {"val_loss": 0.6})
