"""The model registry as the API sees it: list versions, activate one (roll back), load the active ones."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from server.domain.active_models import ActiveModels, ModelSummary, ServingModel
from server.errors import FailedPrecondition, InvalidArgument, NotFound, next_step
from server.models import ModelKind
from server.models.inference import serving_class
from server.models.registry import ModelRegistry, ModelVersionInfo

log = logging.getLogger(__name__)


class ModelsAdmin:
    """Keeps ActiveModels in step with the registry's active versions."""

    def __init__(self, registry: ModelRegistry, models: ActiveModels) -> None:
        self._registry = registry
        self._models = models
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Calls `listener()` (from the reloading thread) after reload() changed an active model."""
        self._listeners.append(listener)

    def reload(self) -> None:
        """Loads each kind's active version (or none). Blocking: call from a thread at start-up or after
        a training job promoted a model. A broken artifact is logged and leaves that kind unloaded.
        When an active model changed, the listeners hear of it (the fleet is re-scored)."""
        changed = False
        for kind, setter in (
            (ModelKind.LSTM, self._models.set_lstm),
            (ModelKind.AUTOENCODER, self._models.set_autoencoder),
        ):
            version = self._registry.active_version(kind)
            current = self._models.lstm if kind == ModelKind.LSTM else self._models.autoencoder
            if version is None:
                changed |= current is not None
                setter(None)
                continue
            if current is not None and current.summary.version == version:
                continue
            try:
                served = serving_class(kind).from_registry(self._registry, version)
            except Exception:  # noqa: BLE001 - a bad artifact must not stop the server
                log.exception("could not load %s model %s; serving without it", kind.name, version)
                continue
            info = next((v for v in self._registry.list(kind) if v.version == version), None)
            setter(
                ServingModel(
                    model=served,
                    summary=ModelSummary(
                        version=version,
                        trained_at=info.created_at if info else None,
                        feature_columns=tuple(served.feature_columns),
                        sequence_length=served.window.sequence_length,
                        threshold=float(getattr(served, "threshold", 0.0)),
                    ),
                )
            )
            changed = True
            log.info("serving %s model %s", kind.name, version)
        if changed:
            for listener in self._listeners:
                listener()

    async def list(self, kind: int) -> list[ModelVersionInfo]:
        model_kind = _kind(kind, allow_unspecified=True)
        return await asyncio.to_thread(self._registry.list, model_kind or None)

    async def activate(self, kind: int, version: str) -> ModelVersionInfo:
        model_kind = _kind(kind, allow_unspecified=False)
        if not version:
            raise InvalidArgument.for_field(
                "version", f"is required; list versions with {next_step('TrainingService.ListModels')}"
            )
        known = {v.version for v in await asyncio.to_thread(self._registry.list, model_kind)}
        if version not in known:
            raise NotFound(
                f"version: no {model_kind.name} model version {version!r}; "
                f"list them with {next_step('TrainingService.ListModels')}",
                reason="MODEL_VERSION_NOT_FOUND",
                metadata={"version": version},
            )
        try:  # never point the registry at a version this server cannot serve
            info = await asyncio.to_thread(
                self._registry.activate, model_kind, version, serving_class(model_kind)
            )
        except ValueError as exc:
            raise FailedPrecondition(
                f"version: {model_kind.name} model {version} cannot be served here ({exc}); "
                f"train a new one with {next_step('TrainingService.Train', model_kind=model_kind.slug)}",
                reason="MODEL_INCOMPATIBLE",
                metadata={"version": version},
            ) from exc
        await asyncio.to_thread(self.reload)
        log.info("activated %s model %s", model_kind.name, version)
        return info


def _kind(kind: int, *, allow_unspecified: bool) -> ModelKind:
    if kind == 0 and allow_unspecified:
        return ModelKind.UNSPECIFIED
    if kind not in (ModelKind.LSTM, ModelKind.AUTOENCODER):
        raise InvalidArgument.for_field("model_kind", "must be LSTM or AUTOENCODER")
    return ModelKind(kind)
