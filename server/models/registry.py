"""Versioned model artifacts on disk, the active version per kind, and the promotion gate.

Layout under root: `<kind>/<version>.pt` (torch.save of a plain checkpoint dict), `<kind>/<version>.json`
(its metadata, written after the .pt: a version exists once its .json does) and `<kind>/active.json`.
Every file is written to a temp file, fsynced, then os.replace'd into place, so a crash mid-write
leaves the previous files intact; leftover temp files are ignored (and removed when an hour old).
Checkpoints hold only tensors, dicts, lists, strings and numbers and load with weights_only=True.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from server.errors import FailedPrecondition, InvalidArgument, ModelNotTrained, NotFound, next_step
from server.models import ModelKind
from server.models.autoencoder import AutoencoderConfig, LSTMAutoencoder
from server.models.lstm import FailureRiskConfig, FailureRiskLSTM

_META_KEYS = (
    "kind",
    "version",
    "created_at",
    "job_id",
    "metrics",
    "feature_columns",
    "input_schema",
    "sequence_length",
    "data_range",
    "data_hash",
    "library_versions",
    "promotion_note",
)


def build_module(kind: ModelKind, model_args: dict[str, Any]) -> nn.Module:
    """`Model(Config(**model_args))` for a kind."""
    if kind == ModelKind.LSTM:
        return FailureRiskLSTM(FailureRiskConfig(**model_args))
    if kind == ModelKind.AUTOENCODER:
        return LSTMAutoencoder(AutoencoderConfig(**model_args))
    raise InvalidArgument.for_field("model_kind", f"unknown model kind {int(kind)}; use LSTM or AUTOENCODER")


@dataclass(frozen=True)
class ModelVersionInfo:
    """A registered version's metadata (no weights)."""

    kind: ModelKind
    version: str
    created_at: datetime
    job_id: str
    metrics: dict[str, float]
    feature_columns: list[str]
    sequence_length: int
    active: bool
    promotion_note: str = ""
    """Why the version was not activated when it was registered ("" when it was)."""


@dataclass
class LoadedModel:
    """A loaded version: the module in eval mode and the rest of its checkpoint."""

    kind: ModelKind
    version: str
    module: nn.Module
    checkpoint: dict[str, Any]


def _write_atomic(
    path: Path, write: Callable[[IO[bytes]], object], verify: Callable[[Path], object] | None = None
) -> None:
    """temp file -> fsync -> (verify) -> os.replace -> fsync the folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _write_atomic(path, lambda handle: handle.write(json.dumps(data, indent=1).encode()))


class ModelRegistry:
    """Model versions under `root`; safe for threads of one process."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        for kind in (ModelKind.LSTM, ModelKind.AUTOENCODER):
            (self.root / kind.slug).mkdir(parents=True, exist_ok=True)
            for stale in (self.root / kind.slug).glob(".*.tmp"):
                if time.time() - stale.stat().st_mtime > 3600:
                    stale.unlink(missing_ok=True)

    def save(self, artifact: dict[str, Any]) -> str:
        """Writes a new version (not activated) and returns its id, e.g. "lstm-20261125T150102Z-3f2a"."""
        missing = [k for k in ("model", "model_args", "kind") if k not in artifact]
        if missing:
            raise InvalidArgument(
                f"artifact lacks {', '.join(missing)}; build it with TrainingResult.to_artifact"
            )
        kind = ModelKind(int(artifact["kind"]))
        now = datetime.now(UTC)
        version = f"{kind.slug}-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
        checkpoint = {
            **artifact,
            "kind": int(kind),
            "version": version,
            "created_at": now.isoformat(),
            "library_versions": {"torch": str(torch.__version__), "numpy": str(np.__version__)},
        }
        checkpoint.setdefault("job_id", "")
        folder = self.root / kind.slug
        with self._lock:
            try:  # the written file must load with weights_only=True (no pickled objects)
                _write_atomic(
                    folder / f"{version}.pt",
                    lambda handle: torch.save(checkpoint, handle),
                    verify=lambda tmp: torch.load(tmp, map_location="cpu", weights_only=True),
                )
            except pickle.UnpicklingError as exc:
                raise InvalidArgument(
                    f"artifact holds objects other than tensors, dicts, lists, strings and numbers: {exc}"
                ) from exc
            _write_json(folder / f"{version}.json", {k: checkpoint.get(k) for k in _META_KEYS})
        return version

    def list(self, kind: ModelKind | None = None) -> list[ModelVersionInfo]:
        """Registered versions, newest first."""
        kinds = [kind] if kind else [ModelKind.LSTM, ModelKind.AUTOENCODER]
        found: list[ModelVersionInfo] = []
        for one in kinds:
            active = self.active_version(one)
            for meta_path in (self.root / one.slug).glob(f"{one.slug}-*.json"):
                if meta_path.with_suffix(".pt").exists():
                    found.append(self._info(json.loads(meta_path.read_text()), active))
        return sorted(found, key=lambda info: (info.created_at, info.version), reverse=True)

    def active_version(self, kind: ModelKind) -> str | None:
        path = self.root / ModelKind(kind).slug / "active.json"
        try:
            return str(json.loads(path.read_text())["version"])
        except FileNotFoundError:
            return None

    def load(self, kind: ModelKind, version: str | None = None) -> LoadedModel:
        """The active version by default; ModelNotTrained when there is none."""
        kind = ModelKind(kind)
        version = version or self.active_version(kind)
        if version is None:
            raise ModelNotTrained(
                f"no {kind.name} model is trained; start one with "
                f"{next_step('TrainingService.Train', model_kind=kind.slug)}"
            )
        path = self.root / kind.slug / f"{version}.pt"
        if not path.with_suffix(".json").exists() or not path.exists():
            raise NotFound(
                f"version: no {kind.name} model version {version!r}; list them with "
                f"{next_step('TrainingService.ListModels')}"
            )
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            module = build_module(kind, checkpoint["model_args"])
            module.load_state_dict(checkpoint["model"])
        except Exception as exc:  # a damaged file must not take the server down with a raw error
            raise FailedPrecondition(
                f"model version {version!r} cannot be loaded; activate another version",
                reason="MODEL_UNREADABLE",
            ) from exc
        return LoadedModel(kind, version, module.eval(), checkpoint)

    def activate(
        self, kind: ModelKind, version: str, accept: Callable[[LoadedModel], object] | None = None
    ) -> ModelVersionInfo:
        """Makes `version` active (also how to roll back); it is loaded first, so a broken one never is.
        `accept(loaded)` may raise to refuse it too (e.g. a server that cannot serve its features)."""
        kind = ModelKind(kind)
        with self._lock:
            loaded = self.load(kind, version)
            if accept is not None:
                accept(loaded)
            previous = self.active_version(kind)
            _write_json(
                self.root / kind.slug / "active.json",
                {"version": version, "previous": previous, "activated_at": datetime.now(UTC).isoformat()},
            )
        return self._info({k: loaded.checkpoint.get(k) for k in _META_KEYS}, version)

    def previous_version(self, kind: ModelKind) -> str | None:
        """The version that was active before the current one (the rollback target)."""
        path = self.root / ModelKind(kind).slug / "active.json"
        try:
            previous = json.loads(path.read_text()).get("previous")
        except FileNotFoundError:
            return None
        return str(previous) if previous else None

    @staticmethod
    def _info(meta: dict[str, Any], active: str | None) -> ModelVersionInfo:
        return ModelVersionInfo(
            kind=ModelKind(int(meta["kind"])),
            version=str(meta["version"]),
            created_at=datetime.fromisoformat(meta["created_at"]),
            job_id=str(meta.get("job_id") or ""),
            metrics={k: float(v) for k, v in (meta.get("metrics") or {}).items()},
            feature_columns=list(meta.get("feature_columns") or []),
            sequence_length=int(meta.get("sequence_length") or 0),
            active=meta["version"] == active,
            promotion_note=str(meta.get("promotion_note") or ""),
        )


@dataclass(frozen=True)
class PromotionGate:
    """What a new version must show before it serves, the first version of a kind included."""

    lstm_min_auc_lower: float = 0.55
    """Lower end of the validation ROC-AUC 95 % interval (0 turns the check off)."""
    autoencoder_min_recall: float = 0.5
    """Share of validation failures with a window above the served threshold (0 turns it off)."""


def gate_failure(kind: ModelKind, metrics: dict[str, float], gate: PromotionGate) -> str:
    """Why a new version fails the gate, or "" when it passes. A metric that could not be measured
    (no failures among the validation miners) fails an enabled check: unverified is not served."""
    if kind == ModelKind.LSTM and gate.lstm_min_auc_lower > 0:
        lo, hi = metrics.get("val_roc_auc_lo", math.nan), metrics.get("val_roc_auc_hi", math.nan)
        if not math.isfinite(lo):
            return (
                "validation ROC-AUC could not be computed (no failure among the validation windows); "
                "unverified is not served (--gate-lstm-min-auc-lower)"
            )
        if lo < gate.lstm_min_auc_lower:
            return (
                f"validation ROC-AUC 95 % interval [{lo:.3f}, {hi:.3f}] does not clear "
                f"{gate.lstm_min_auc_lower:.3f} (chance is 0.5; --gate-lstm-min-auc-lower)"
            )
    if kind == ModelKind.AUTOENCODER and gate.autoencoder_min_recall > 0:
        recall = metrics.get("val_precursor_recall", math.nan)
        failures = int(metrics.get("val_precursor_failures", 0))
        if not (math.isfinite(recall) and recall >= gate.autoencoder_min_recall):
            return (
                f"precursor recall {recall:.2f} on {failures} validation failures at the served threshold "
                f"is below {gate.autoencoder_min_recall:.2f} (--gate-autoencoder-min-recall)"
            )
    return ""


def promotion(
    kind: ModelKind,
    new_metrics: dict[str, float],
    active_metrics: dict[str, float] | None,
    gate: PromotionGate,
) -> tuple[bool, str]:
    """(activate?, why not): the gate first, then no worse than the active version."""
    failed = gate_failure(kind, new_metrics, gate)
    if failed:
        return False, f"not activated: the promotion gate failed: {failed}"
    if not should_promote(new_metrics, active_metrics):
        return False, "the active model is as good or better, kept it"
    return True, ""


def should_promote(new_metrics: dict[str, float], active_metrics: dict[str, float] | None) -> bool:
    """Whether a new version may replace the active one: at least as good on the held-out metric
    (val_brier for the LSTM, val_loss for the autoencoder; lower is better). When the new metrics
    carry `incumbent_<metric>` (the active model scored on the new run's validation split), that is
    the fair comparison and is used instead of the active model's own, differently drawn, number."""
    if not active_metrics:
        return True
    key = "val_brier" if "val_brier" in new_metrics else "val_loss"
    candidate = new_metrics.get(key, math.nan)
    incumbent = new_metrics.get(f"incumbent_{key}", active_metrics.get(key, math.nan))
    if not math.isfinite(candidate):
        return False
    return not math.isfinite(incumbent) or candidate <= incumbent + 1e-12
