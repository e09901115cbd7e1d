"""Known ASIC models: nameplate hashrate and power for miners registered from their telemetry or
through UpsertMiner (PUT /api/advanced/miners/{id}).

The demo simulator's hardware list (server/sim/settings.py) is read, never changed; a few other
common models are added. Names match loosely: case, spaces, dashes and the make prefix are ignored,
so "Antminer S19 Pro", "antminer s19-pro" and "S19 Pro" are one model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from server.records import Miner
from server.sim.settings import HARDWARE


@dataclass(frozen=True, slots=True)
class KnownModel:
    """Nameplate figures of one hardware model."""

    name: str
    make: str
    hashrate_ths: float
    power_w: float


_EXTRA: tuple[KnownModel, ...] = (
    KnownModel("Antminer S19", "Bitmain", 95.0, 3250.0),
    KnownModel("Antminer S19 XP", "Bitmain", 140.0, 3010.0),
    KnownModel("Antminer S21 Pro", "Bitmain", 234.0, 3510.0),
    KnownModel("Whatsminer M50S", "MicroBT", 126.0, 3276.0),
)
_MAKE_WORDS = re.compile(r"\b(bitmain|antminer|microbt|whatsminer)\b")


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", _MAKE_WORDS.sub("", name.lower()))


_CATALOGUE: dict[str, KnownModel] = {
    _key(m.name): m
    for m in (*(KnownModel(h.name, h.make, h.hashrate_ths, h.power_w) for h in HARDWARE), *_EXTRA)
}


def with_nameplate(miner: Miner) -> tuple[Miner, tuple[str, ...]]:
    """A registered miner with the catalogue's model name, make and nameplate figures filled in where
    the record leaves them empty (0 or ""); values given win. An unknown model is kept as given,
    with a warning saying so."""
    catalogued = known_model(miner.hardware_model)
    if catalogued is None:
        return miner, (
            f"hardware_model {miner.hardware_model!r} is not in the catalogue: make and nominal hashrate "
            "and power stay as given (0 = unknown), and the models compare the miner with its own median",
        )
    return replace(
        miner,
        hardware_model=catalogued.name,
        make=miner.make or catalogued.make,
        nominal_hashrate_ths=miner.nominal_hashrate_ths or catalogued.hashrate_ths,
        nominal_power_w=miner.nominal_power_w or catalogued.power_w,
    ), ()


def known_model(hardware_model: str) -> KnownModel | None:
    """The catalogue entry for a hardware model name, or None when it is not recognised."""
    key = _key(hardware_model)
    return _CATALOGUE.get(key) if key else None
