"""A failure-risk model whose answer is known: CRITICAL when the latest reading is hot, else LOW.

Built from a trained LSTM checkpoint (its feature schema, window and normalisation are real) with
hand-set weights: one unit per layer carries `temperature - HOT_C` from the last time step (input
gates open, forget gates shut) through tanh squashes to the output, so the raw logit is about
+9.2 for a reading above HOT_C and -6 below it, and the identity calibration keeps it. Tests use it
where they must not depend on what a tiny trained model happens to learn.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from server.models.features import INPUT_SCHEMA

HOT_C = 95.0
_TEMPERATURE = INPUT_SCHEMA.index("temperature")
_OPEN, _SHUT = 10.0, -10.0


def _gates(prefix: str, state: dict[str, torch.Tensor], source: int, weight: float, bias: float) -> None:
    """Unit 0 of an LSTM layer: input and output gates open, forget gate shut, cell input
    tanh(weight * x[source] + bias). Every other weight is zero, so other units stay at 0."""
    hidden = state[f"{prefix}.weight_hh_l0"].shape[1]
    state[f"{prefix}.bias_ih_l0"][0] = _OPEN  # input gate, unit 0
    state[f"{prefix}.bias_ih_l0"][hidden] = _SHUT  # forget gate
    state[f"{prefix}.weight_ih_l0"][2 * hidden, source] = weight  # cell input
    state[f"{prefix}.bias_ih_l0"][2 * hidden] = bias
    state[f"{prefix}.bias_ih_l0"][3 * hidden] = _OPEN  # output gate


def temperature_model(trained: dict[str, Any]) -> dict[str, Any]:
    """An artifact for ModelRegistry.save: `trained` (a loaded LSTM checkpoint) with known weights."""
    artifact = copy.deepcopy({k: v for k, v in trained.items() if k not in ("version", "created_at")})
    state = {name: torch.zeros_like(tensor) for name, tensor in trained["model"].items()}
    mean = float(trained["norm"]["mean"][_TEMPERATURE])
    std = float(trained["norm"]["std"][_TEMPERATURE])
    # Normalised x = (T - mean) / std, so std * x + (mean - HOT_C) = T - HOT_C in degrees C.
    _gates("lstm1", state, _TEMPERATURE, std, mean - HOT_C)
    _gates("lstm2", state, 0, 5.0, 0.0)  # about +-0.76 in, about +-0.76 out
    state["dense.weight"][0, 0] = 10.0
    state["head.weight"][0, 0] = 2.0
    state["head.bias"][0] = -6.0
    artifact["model"] = state
    artifact["calibration"] = {"method": "platt", "a": 1.0, "b": 0.0}
    artifact["job_id"] = "fixture-temperature"
    artifact["metrics"] = {**dict(trained.get("metrics") or {}), "fixture": 1.0}
    return artifact
