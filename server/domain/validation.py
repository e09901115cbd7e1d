"""Request validation shared by the domain services: each check names the field and the fix."""

from __future__ import annotations

import math
import re

from server.errors import InvalidArgument

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
