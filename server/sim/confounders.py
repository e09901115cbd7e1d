"""Confounders of the demo fleet: conditions that move the telemetry but are not a miner's own fault.

Drawn from their own random stream (seed, 7), so switching them off leaves every other draw of the
fleet unchanged. What each one is, for the decision and the quality report:
- heat wave (site event): the ambient of a site rises by 5-10 °C for hours; every miner there runs
  hotter and its fans ramp. Reported once per site, never as miner anomalies.
- firmware update (site event): every miner of a site reboots within minutes and afterwards reports
  shifted readings (temperature sensor offset, fan curve, power reading scale) for good.
- healthy reboot (context): a miner restarts once (counters reset, 5-15 min without hashing); the
  warm-up after it is context, not a fault.
- slow drift (miner anomaly): thermal paste drying over 1.5-4 days; temperature creeps up by
  8-14 °C and the fans ramp, until a recorded maintenance (a planned state) cleans the miner.
Pool outages of whole sites (site events) are drawn with the pool incidents in fleet.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from server.sim.settings import SimSettings


@dataclass(frozen=True, slots=True)
class SiteEventTruth:
    """Ground truth of one condition that hits a site at once: heat_wave, firmware_update, pool_outage."""

    site: str
    kind: str
    start: datetime
    end: datetime
    miner_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ContextTruth:
    """A moment after which a miner warms up (reboot, firmware_update); not a fault."""

    miner_id: str
    kind: str
    at: datetime


@dataclass(slots=True)
class Drift:
    """One slow drift: miner index, first and end step (the maintenance starts at `end`)."""

    miner: int
    start: int
    end: int


@dataclass(slots=True)
class ConfounderPlan:
    """What was drawn; fleet.py turns steps into times and writes the records."""

    ambient_add: np.ndarray  # (M, T) °C added to the site's ambient
    temp_read_add: np.ndarray  # (M, T) °C offset of the reported temperature (firmware)
    fan_read_add: np.ndarray  # (M, T) RPM added to the fan curve (firmware)
    power_read_mult: np.ndarray  # (M, T) scale of the power reading (firmware)
    site_events: list[tuple[str, str, int, int, tuple[int, ...]]]  # site, kind, lo, hi, miners
    contexts: list[tuple[int, str, int]]  # miner, kind, step
    drifts: list[Drift]


def _free(busy: list[tuple[int, int]], lo: int, hi: int, margin: int) -> bool:
    return not any(a < hi + margin and lo - margin < b for a, b in busy)


def draw(
    rng: np.random.Generator,
    cfg: SimSettings,
    sites: list[str],
    n_steps: int,
    steps_per_hour: float,
    running: np.ndarray,
    busy: dict[int, list[tuple[int, int]]],
    protect_from: int,
) -> ConfounderPlan:
    """Draw every confounder and write its effect on `running` (reboots) in place. `busy` holds each
    miner's episode and planned spans (steps) that drifts and reboots keep clear of; nothing is drawn
    on the demo miner (0) or its site after step `protect_from`."""
    n_miners = len(sites)
    site_names = sorted(set(sites))
    members = {s: np.array([m for m in range(n_miners) if sites[m] == s]) for s in site_names}
    days = n_steps / (24 * steps_per_hour)
    plan = ConfounderPlan(
        ambient_add=np.zeros((n_miners, n_steps)),
        temp_read_add=np.zeros((n_miners, n_steps)),
        fan_read_add=np.zeros((n_miners, n_steps)),
        power_read_mult=np.ones((n_miners, n_steps)),
        site_events=[],
        contexts=[],
        drifts=[],
    )
    h = steps_per_hour
    demo_site = sites[0] if sites else ""

    # Heat waves: regional, each site joins with a probability; ramps of 1-2 h at both ends.
    for _ in range(rng.poisson(cfg.heat_waves_per_fleet_day * days)):
        rise = rng.uniform(*cfg.heat_wave_c)
        plateau = int(rng.uniform(*cfg.heat_wave_hours) * h)
        ramp = int(rng.uniform(1.0, 2.0) * h)
        lo = int(rng.integers(int(24 * h), max(int(24 * h) + 1, n_steps - plateau - 2 * ramp)))
        hi = min(n_steps, lo + plateau + 2 * ramp)
        shape = np.clip(np.minimum(np.arange(hi - lo) + 1, hi - lo - np.arange(hi - lo)) / ramp, 0.0, 1.0)
        for site in site_names:
            if rng.random() > cfg.heat_wave_site_share or (site == demo_site and hi > protect_from):
                continue
            ix = members[site]
            plan.ambient_add[ix, lo:hi] += rise * shape
            plan.site_events.append((site, "heat_wave", lo, hi, tuple(ix.tolist())))

    # Firmware updates: a site at a time; reboots within 10 min of each other, then shifted readings.
    for site in site_names:
        for _ in range(rng.poisson(cfg.firmware_updates_per_site_day * days)):
            lo = int(rng.integers(int(24 * h), n_steps - int(2 * h)))
            if site == demo_site and lo > protect_from - int(24 * h):
                continue
            ix = members[site]
            sign = rng.choice([-1.0, 1.0])
            temp_shift = sign * rng.uniform(2.0, 4.0)
            fan_shift = rng.uniform(150.0, 400.0)
            power_scale = rng.uniform(0.96, 1.04)
            end = lo
            for m in ix:
                at = lo + int(rng.integers(0, 3))
                down = int(rng.integers(2, 4))
                running[m, at : at + down] = False
                plan.temp_read_add[m, at:] += temp_shift
                plan.fan_read_add[m, at:] += fan_shift
                plan.power_read_mult[m, at:] *= power_scale
                plan.contexts.append((int(m), "firmware_update", at + down))
                end = max(end, at + down)
            plan.site_events.append((site, "firmware_update", lo, min(n_steps - 1, end), tuple(ix.tolist())))

    # Slow drifts, each ended by a recorded maintenance; then healthy single reboots.
    for m in range(n_miners):
        spans = busy.setdefault(m, [])
        for _ in range(rng.poisson(cfg.drifts_per_miner_day * days)):
            length = int(rng.uniform(*cfg.drift_hours) * h)
            lo = int(rng.integers(int(24 * h), max(int(24 * h) + 1, n_steps - length)))
            hi = lo + length
            if hi >= n_steps or not _free(spans, lo, hi, int(12 * h)) or (m == 0 and hi > protect_from):
                continue
            spans.append((lo, hi + int(h)))
            plan.drifts.append(Drift(m, lo, hi))
        for _ in range(rng.poisson(cfg.reboots_per_miner_day * days)):
            at = int(rng.integers(int(2 * h), n_steps - 3))
            if not _free(spans, at, at + 3, int(12 * h)) or (m == 0 and at > protect_from):
                continue
            running[m, at : at + int(rng.integers(1, 4))] = False
            plan.contexts.append((m, "reboot", at))
    return plan


def drift_effect(length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(temperature °C added, fan RPM added) over a drift of `length` steps: linear creep."""
    u = np.linspace(0.0, 1.0, length, endpoint=False)
    return rng.uniform(8.0, 14.0) * u, rng.uniform(300.0, 700.0) * u
