"""Fixtures for the model tests: a tiny fleet and tiny trained, registered models."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from synthetic_fleet import TINY_TRAIN, Fleet, make_fleet


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    return make_fleet()


@pytest.fixture
def fleet_factory() -> Callable[..., Fleet]:
    return make_fleet


@pytest.fixture(scope="session")
def trained(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Tiny LSTM and autoencoder trained on the tiny fleet and registered (both active)."""
    from server.models import ModelKind
    from server.models.registry import ModelRegistry
    from server.models.train import TrainConfig, train_autoencoder, train_failure_model
    from server.models.windows import build_windows

    windows = build_windows(fleet.series, fleet.miners, fleet.failures, fleet.planned)
    lstm = train_failure_model(windows, TrainConfig(**TINY_TRAIN))
    autoencoder = train_autoencoder(windows, TrainConfig(**TINY_TRAIN))
    registry = ModelRegistry(tmp_path_factory.mktemp("registry"))
    lstm_version = registry.save(lstm.to_artifact("job-lstm"))
    ae_version = registry.save(autoencoder.to_artifact("job-ae"))
    registry.activate(ModelKind.LSTM, lstm_version)
    registry.activate(ModelKind.AUTOENCODER, ae_version)
    return {"windows": windows, "lstm": lstm, "autoencoder": autoencoder, "registry": registry}
