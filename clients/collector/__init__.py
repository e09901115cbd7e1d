"""Miner collector: polls miners over the cgminer-family JSON API (TCP 4028), sends readings to the server."""

from __future__ import annotations

from clients.collector.cgminer import CommandFailed, MalformedReply, MinerError, MinerUnreachable
from clients.collector.collector import Collector, CollectorConfig, MinerTarget, load_targets
from clients.collector.firmware import BoardReading, Firmware, Reading

__all__ = [
    "BoardReading",
    "Collector",
    "CollectorConfig",
    "CommandFailed",
    "Firmware",
    "MalformedReply",
    "MinerError",
    "MinerTarget",
    "MinerUnreachable",
    "Reading",
    "load_targets",
]
