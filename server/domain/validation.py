"""Request validation shared by the domain services: each check names the field and the fix."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from server.errors import FieldViolation, InvalidArgument
from server.records import BoardReading, Miner

# Miner ids are IP addresses ("192.168.1.100"), host names or other stable names.
_MINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")


def miner_id(value: str, field: str = "miner_id") -> str:
    """A well-formed miner id, or INVALID_ARGUMENT."""
    if not value:
        raise InvalidArgument.for_field(field, "is required, e.g. 192.168.1.100")
    if not _MINER_ID.match(value):
        raise InvalidArgument.for_field(
            field,
            f"{value[:64]!r} is not a valid miner id: use an IP address such as 192.168.1.100 or a name of "
            "letters, digits, '.', '_', ':' and '-' (at most 128 characters)",
        )
    return value


def int_in_range(value: int | None, field: str, low: int, high: int, default: int) -> int:
    """`default` when absent; otherwise low <= value <= high, or INVALID_ARGUMENT."""
    if value is None:
        return default
    if not low <= value <= high:
        raise InvalidArgument.for_field(field, f"must be between {low} and {high}, got {value}")
    return value


def open_fraction(value: float | None, field: str, default: float) -> float:
    """`default` when absent; otherwise strictly between 0 and 1, or INVALID_ARGUMENT."""
    if value is None:
        return default
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise InvalidArgument.for_field(field, f"must be strictly between 0 and 1, got {value}")
    return value


# ---- values that are stored: finite, physically possible, bounded in length ----------------------

MAX_TEXT = 128
"""Longest hardware model, make, site or model version a request may carry (characters)."""
MAX_NOTE = 1000
"""Longest free-text note (failures, repairs, planned states, feedback)."""
READING_BOUNDS: dict[str, tuple[float, float]] = {
    "hashrate_ths": (0.0, 10_000.0),
    "temperature_c": (-60.0, 200.0),
    "fan_speed_rpm": (0.0, 50_000.0),
    "power_w": (0.0, 100_000.0),
}
"""Physical bounds beyond any sensor's range: readings outside are errors, not data."""
NOMINAL_BOUNDS: dict[str, tuple[float, float]] = {
    "nominal_hashrate_ths": READING_BOUNDS["hashrate_ths"],
    "nominal_power_w": READING_BOUNDS["power_w"],
}
BOARD_BOUNDS: dict[str, tuple[float, float]] = {
    "hashrate_ths": READING_BOUNDS["hashrate_ths"],
    "temperature_c": READING_BOUNDS["temperature_c"],
    "chip_temperature_c": READING_BOUNDS["temperature_c"],
}
MAX_BOARDS = 16
"""Board indexes run 0..MAX_BOARDS-1 (miners have 3 or 4 hash boards)."""


def number(value: float | None, field: str, low: float, high: float) -> FieldViolation | None:
    """None when `value` is absent or finite within [low, high]; else the violation."""
    if value is None:
        return None
    if not math.isfinite(value):
        return FieldViolation(field, f"must be a finite number, got {value}")
    if not low <= value <= high:
        return FieldViolation(field, f"{value:g} is outside the possible range [{low:g}, {high:g}]")
    return None


def text(value: str, field: str, limit: int = MAX_TEXT) -> FieldViolation | None:
    """None when `value` has at most `limit` characters; else the violation (it quotes no value)."""
    if len(value) > limit:
        return FieldViolation(field, f"must be at most {limit} characters, got {len(value)}")
    return None


def boards(readings: Sequence[BoardReading], where: str) -> list[FieldViolation]:
    """Each board's index (0..MAX_BOARDS-1, each once) and readings (finite, possible)."""
    found: list[FieldViolation] = []
    seen: set[int] = set()
    for position, board in enumerate(readings):
        at = f"{where}.boards[{position}]"
        if not 0 <= board.index < MAX_BOARDS:
            found.append(
                FieldViolation(f"{at}.index", f"must be between 0 and {MAX_BOARDS - 1}, got {board.index}")
            )
        elif board.index in seen:
            found.append(FieldViolation(f"{at}.index", f"board {board.index} is listed twice in one sample"))
        seen.add(board.index)
        for name, (low, high) in BOARD_BOUNDS.items():
            violation = number(getattr(board, name), f"{at}.{name}", low, high)
            if violation is not None:
                found.append(violation)
    return found


def miner_record(miner: Miner, where: str = "miner") -> None:
    """A miner record fit to store (id, lengths, finite possible nominal figures), else
    INVALID_ARGUMENT listing every bad field."""
    miner_id(miner.miner_id, f"{where}.miner_id")
    found: list[FieldViolation] = []
    if not miner.hardware_model:
        found.append(FieldViolation(f"{where}.hardware_model", "is required, e.g. 'Antminer S19 Pro'"))
    for name in ("hardware_model", "make", "site", "serial", "mac"):
        violation = text(getattr(miner, name), f"{where}.{name}")
        if violation is not None:
            found.append(violation)
    for name, (low, high) in NOMINAL_BOUNDS.items():
        violation = number(getattr(miner, name), f"{where}.{name}", low, high)
        if violation is not None:
            found.append(violation)
    if found:
        raise InvalidArgument.for_fields(found)


def note(value: str, field: str = "note") -> str:
    """A note of at most MAX_NOTE characters, else INVALID_ARGUMENT (never cut silently)."""
    violation = text(value, field, MAX_NOTE)
    if violation is not None:
        raise InvalidArgument.for_fields([violation])
    return value
