"""The hardware catalogue: nameplate hashrate and power of known ASIC models.

Ingestion reads it for miners registered from their telemetry; the demo simulator (server/sim) builds
its fleet from it. Names match loosely: case, spaces, dashes and the make prefix are ignored, so
"Antminer S19 Pro", "antminer s19-pro" and "S19 Pro" are one model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KnownModel:
    """Nameplate figures of one hardware model."""

    name: str
    make: str
    hashrate_ths: float
    power_w: float


CATALOGUE: tuple[KnownModel, ...] = (
    KnownModel("Antminer S19 Pro", "Bitmain", 110.0, 3250.0),
    KnownModel("Antminer S19j Pro", "Bitmain", 100.0, 3050.0),
    KnownModel("Antminer S21", "Bitmain", 200.0, 3500.0),
    KnownModel("Whatsminer M30S", "MicroBT", 86.0, 3230.0),
    KnownModel("Antminer S19", "Bitmain", 95.0, 3250.0),
    KnownModel("Antminer S19 XP", "Bitmain", 140.0, 3010.0),
    KnownModel("Antminer S21 Pro", "Bitmain", 234.0, 3510.0),
    KnownModel("Whatsminer M50S", "MicroBT", 126.0, 3276.0),
)
_MAKE_WORDS = re.compile(r"\b(bitmain|antminer|microbt|whatsminer)\b")


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", _MAKE_WORDS.sub("", name.lower()))


_BY_KEY: dict[str, KnownModel] = {_key(m.name): m for m in CATALOGUE}


def known_model(hardware_model: str) -> KnownModel | None:
    """The catalogue entry for a hardware model name, or None when it is not recognised."""
    key = _key(hardware_model)
    return _BY_KEY.get(key) if key else None
