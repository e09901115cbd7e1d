"""The training process: builds windows, trains, registers the model and decides promotion.

Runs in a spawned child process (see server/domain/training.py) with one torch thread. It never
opens the DuckDB file: the parent hands it the data. It reports through a queue:
("epoch", {...}) after every epoch, then one of ("done", {...}), ("cancelled", None), ("failed", msg).
An orphan (its server was killed) stops: between batches as a cancellation, and in any other phase
(unpickling the data, building windows, evaluating) through a watchdog thread that exits the process;
the registry's atomic writes make that safe.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from server import logs
from server.config import Settings
from server.domain.jobs import TrainParams
from server.errors import DomainError
from server.records import FailureEvent, Miner, MinerSeries, PlannedState

log = logging.getLogger("server.train")


@dataclass(frozen=True)
class TrainingData:
    """What training needs from the store, loaded by the server process."""

    series: dict[str, MinerSeries]
    miners: dict[str, Miner]
    failures: list[FailureEvent]
    planned: list[PlannedState]


def run(
    kind: int,
    params: TrainParams,
    job_id: str,
    data: TrainingData,
    settings: Settings,
    events: Any,
    cancel: Any,
    server_pid: int,
) -> None:
    """Entry point of the training process; `server_pid` is the server that started it (compared
    with our parent: the server may be killed before this process has even started running)."""
    logs.configure(settings.log_level, as_json=settings.log_json)
    threading.Thread(target=_exit_when_orphaned, args=(server_pid, job_id), daemon=True).start()
    try:
        events.put(("done", _train(kind, params, job_id, data, settings, events, cancel, server_pid)))
    except _Cancelled:
        events.put(("cancelled", None))
    except DomainError as exc:
        log.warning("job %s failed: %s", job_id, exc.message)
        events.put(("failed", exc.message))
    except Exception:  # noqa: BLE001 - reported as a failed job; the traceback goes to the log
        log.exception("job %s failed", job_id)
        events.put(("failed", "internal error while training; the server log has the traceback"))


class _Cancelled(Exception):
    pass


def _exit_when_orphaned(server_pid: int, job_id: str, interval_s: float = 0.5) -> None:
    """Watchdog: a server killed by SIGKILL cannot stop us and nothing would read our result."""
    while os.getppid() == server_pid:
        time.sleep(interval_s)
    log.warning("job %s: the server (pid %d) is gone; the training process exits", job_id, server_pid)
    os._exit(3)


def _train(
    kind: int,
    params: TrainParams,
    job_id: str,
    data: TrainingData,
    settings: Settings,
    events: Any,
    cancel: Any,
    server_pid: int,
) -> dict[str, Any]:
    import torch

    from server.domain.training_notes import missing_figures_note, split_note
    from server.models import ModelKind
    from server.models.inference import serving_class
    from server.models.registry import ModelRegistry, PromotionGate, promotion
    from server.models.train import TrainingCancelled, train_autoencoder, train_failure_model
    from server.models.train_config import TRAINING_DEFAULTS
    from server.models.windows import WindowConfig, build_windows

    torch.set_num_threads(settings.train_threads)
    model_kind = ModelKind(kind)
    window = WindowConfig(
        sequence_length=settings.sequence_length,
        sample_interval_s=settings.sample_interval_s,
        horizon_hours=float(settings.horizon_hours),
    )
    windows = build_windows(data.series, data.miners, data.failures, data.planned, window)
    log.info(
        "job %s: %d windows (%d positive) from %d miners",
        job_id,
        len(windows),
        int(windows.labels.sum()),
        len(data.series),
    )
    cfg = replace(
        TRAINING_DEFAULTS[model_kind],
        epochs=params.epochs,
        batch_size=params.batch_size,
        validation_split=params.validation_split,
        seed=params.seed,
        threads=settings.train_threads,
        patience=settings.train_patience,
    )
    registry = ModelRegistry(settings.models_dir)
    active = registry.active_version(model_kind)
    incumbent = None
    active_metrics: dict[str, float] | None = None
    if active is not None:
        try:
            current = serving_class(model_kind).from_registry(registry, active)
            incumbent = current.evaluate
            active_metrics = current.metrics
        except Exception:  # noqa: BLE001 - an unloadable active model is replaced by any new one
            log.exception("job %s: the active %s model %s does not load", job_id, model_kind.name, active)

    def progress(epoch: int, epochs: int, train_loss: float, val_loss: float, windows_per_s: float) -> None:
        events.put(
            (
                "epoch",
                {
                    "epoch": epoch,
                    "train_loss": _finite(train_loss),
                    "val_loss": _finite(val_loss),
                    "samples_per_second": _finite(windows_per_s),
                },
            )
        )
        log.info(
            "job %s: epoch %d/%d train_loss=%.5f val_loss=%.5f (%.0f windows/s)",
            job_id,
            epoch,
            epochs,
            train_loss,
            val_loss,
            windows_per_s,
        )

    def should_stop() -> bool:
        # A server killed by SIGKILL cannot cancel us, and nothing would read our result: stop once
        # our parent is gone (we were re-parented), instead of training on as an orphan.
        return bool(cancel.is_set()) or os.getppid() != server_pid

    trainer = train_failure_model if model_kind == ModelKind.LSTM else train_autoencoder
    try:
        result = trainer(windows, cfg, progress=progress, should_stop=should_stop, incumbent=incumbent)
    except TrainingCancelled as exc:
        raise _Cancelled from exc
    if should_stop():
        raise _Cancelled
    gate = PromotionGate(settings.gate_lstm_min_auc_lower, settings.gate_autoencoder_min_recall)
    promoted, note = promotion(model_kind, result.metrics, active_metrics, gate)
    validated = [
        split_note(result.metrics, params.validation_split),
        missing_figures_note(model_kind, result.metrics, gate),
    ]
    version = registry.save({**result.to_artifact(job_id=job_id), "promotion_note": note})
    if promoted:
        registry.activate(model_kind, version)
    log.info("job %s: registered %s (%s)", job_id, version, "active" if promoted else note)
    return {
        "model_version": version,
        "promoted": promoted,
        "promotion_note": note,
        "training_note": "; ".join(line for line in validated if line),
        # A figure that could not be computed is left out (a 0 would read as a terrible model).
        "metrics": {k: float(v) for k, v in result.metrics.items() if math.isfinite(v)},
    }


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0
