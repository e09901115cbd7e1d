"""Frozen settings of the demo fleet simulator and the hardware it simulates.

These numbers define the data the models are evaluated on: change them only together with the
evaluation baselines. Every rate is per miner unless it says fleet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from server.hardware import known_model


@dataclass(frozen=True, slots=True)
class HardwareModel:
    """Nameplate figures of one ASIC model (3 hash boards, 4 fans on every model here)."""

    name: str
    make: str
    hashrate_ths: float
    power_w: float
    temp_rise_c: float
    """Chip temperature above ambient at full load, °C."""


def _simulated(name: str, temp_rise_c: float) -> HardwareModel:
    """A model of the hardware catalogue (server/hardware.py) with what only the simulator needs."""
    known = known_model(name)
    assert known is not None, name
    return HardwareModel(known.name, known.make, known.hashrate_ths, known.power_w, temp_rise_c)


HARDWARE: tuple[HardwareModel, ...] = (
    _simulated("Antminer S19 Pro", 43.0),
    _simulated("Antminer S19j Pro", 42.0),
    _simulated("Antminer S21", 41.0),
    _simulated("Whatsminer M30S", 44.0),
)
HARDWARE_WEIGHTS: tuple[float, ...] = (0.35, 0.25, 0.2, 0.2)

N_BOARDS = 3
N_FANS = 4

# Failure kinds: name -> (FailureMode value, probability, precursor hours (lo, hi), downtime hours (lo, hi)).
# "dust" ends in a THERMAL failure; "control_board" has no precursor (an unpredictable failure).
FAILURE_KINDS: dict[str, tuple[int, float, tuple[float, float], tuple[float, float]]] = {
    "fan": (1, 0.20, (6.0, 36.0), (2.0, 8.0)),
    "thermal": (2, 0.10, (2.0, 10.0), (1.0, 6.0)),
    "dust": (2, 0.10, (72.0, 168.0), (2.0, 8.0)),
    "hash_board": (3, 0.18, (6.0, 48.0), (4.0, 24.0)),
    "psu": (4, 0.12, (12.0, 48.0), (4.0, 24.0)),
    "chip": (6, 0.12, (24.0, 96.0), (4.0, 24.0)),
    "reboot_loop": (7, 0.10, (3.0, 12.0), (1.0, 6.0)),
    "control_board": (8, 0.08, (0.0, 0.0), (2.0, 12.0)),
}


@dataclass(frozen=True, slots=True)
class SimSettings:
    """Every knob of the simulator. The defaults are the frozen evaluation settings."""

    failures_per_miner_day: float = 1 / 24
    """Mean hazard of a hardware failure; each miner's is scaled by a gamma(2, 0.5) 'lemon' factor."""
    resolved_fraction: float = 0.12
    """Share of precursor episodes (fan, thermal, psu, chip) that fade out without a failure."""
    warmup_hours: float = 24.0
    """No precursor starts in the first hours, so every miner has a healthy baseline."""
    cooloff_hours: float = 12.0
    """Healthy hours after a repair before the next precursor may start."""
    demo_fan_hours: float = 18.0
    """The demo miner (the first one, 192.168.1.100) has a failing fan this many hours before the end."""
    demo_failure_after_end_hours: float = 2.0
    """...and its fan is projected to stop this long after the end (no failure event is emitted)."""
    pool_incidents_per_fleet_day: float = 0.1
    """Fleet-wide pool incidents (reject spikes on many miners at once); never failures."""
    network_trouble_per_miner_day: float = 1 / 60
    """Single-miner pool/network trouble (reject spikes, share drop); never failures."""
    curtailments: int = 2
    """Planned curtailment periods (hashrate 0 on purpose), each on a share of the fleet."""
    curtailed_fraction: float = 0.4
    """Share of the miners in each curtailment."""
    ambient_mean_c: float = 24.0
    """Mean ambient temperature, °C; a daily sine of +-ambient_daily_c peaks at 15:00 UTC."""
    ambient_daily_c: float = 6.0
    """Amplitude of the daily ambient cycle, °C."""
    hashrate_noise: float = 0.015
    """Relative noise of a 5-minute hashrate reading."""
    power_noise: float = 0.005
    """Relative noise of a power reading."""
    temperature_noise_c: float = 0.4
    """Noise of a temperature reading, °C."""
    fan_noise_rpm: float = 40.0
    """Noise of a fan reading, RPM."""
    shares_per_ths_interval: float = 10.0
    """Accepted shares per TH/s per sample interval (pool difficulty)."""
    reject_rate_range: tuple[float, float] = (0.001, 0.008)
    """Healthy per-miner share reject rate."""
    sample_drop_rate: float = 0.003
    """Probability that a single sample is missing."""
    blips_per_miner_day: float = 0.1
    """Network blips: runs of 1-6 missing samples."""
    reading_drop_rate: float = 0.001
    """Probability that a temperature or fan reading alone is missing (NULL)."""
    confounders: bool = True
    """Draw the confounders of server/sim/confounders.py (heat waves, firmware updates, site pool
    outages, healthy reboots, slow drifts); False gives the fleet without them."""
    site_pool_outages: bool = True
    """Fleet-wide pool incidents hit whole sites (site events); False: random miners (older fleets)."""
    heat_waves_per_fleet_day: float = 0.12
    """Regional heat waves; each site joins one with probability heat_wave_site_share."""
    heat_wave_site_share: float = 0.7
    """Probability that a site is inside a given heat wave."""
    heat_wave_c: tuple[float, float] = (5.0, 10.0)
    """Ambient rise of a heat wave, °C."""
    heat_wave_hours: tuple[float, float] = (4.0, 10.0)
    """Plateau of a heat wave, hours (plus 1-2 h ramps at both ends)."""
    firmware_updates_per_site_day: float = 1 / 30
    """Site-wide firmware updates: reboots, then shifted temperature, fan and power readings."""
    drifts_per_miner_day: float = 1 / 60
    """Slow drifts (thermal paste drying over days), each ended by a recorded maintenance."""
    drift_hours: tuple[float, float] = (36.0, 96.0)
    """Length of a slow drift, hours."""
    reboots_per_miner_day: float = 1 / 10
    """Healthy single reboots (counters reset, minutes without hashing): context, not faults."""
    kinds: dict[str, tuple[int, float, tuple[float, float], tuple[float, float]]] = field(
        default_factory=lambda: dict(FAILURE_KINDS)
    )


SETTINGS = SimSettings()
