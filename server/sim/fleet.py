"""The demo fleet simulator: seeded, reproducible, vectorised numpy telemetry of ASIC miners.

What it makes (settings in server/sim/settings.py):
- Miners with IPs from 192.168.1.100 upwards (.100 ... .254, then 192.168.2.1 ...), a mix of Antminer
  S19 Pro / S19j Pro / S21 and Whatsminer M30S, each with 3 hash boards and 4 fans. The first miner
  is always an S19 Pro.
- 5-minute samples: hashrate with noise; chip temperature = ambient (daily cycle, weather drift) +
  load rise; fans (3000-6000 RPM) following temperature; power following hashrate; cumulative share
  counters growing with hashrate and reset on every reboot; a healthy reject rate of 0.1-0.8 %;
  occasional missing samples, network blips and missing single readings.
- Failures with precursors in the telemetry, hours to days before the failure event:
  fan (one fan slows, turns erratic, stops; temperature rises), thermal (temperature climbs, hashrate
  throttles above 85 °C), dust (temperature creeps up over days, fans ramp, ends in a thermal failure),
  hash_board (one board flaps, then drops out: about a third of the hashrate), psu (power noise and
  droops with hashrate dips; the miner goes dark on failure), chip (slow hashrate decline, rising
  rejects), reboot_loop (short zero-hashrate drops with counter resets), control_board (no precursor).
  After a failure the miner is down (zero hashrate, or no samples at all) until repaired_at.
- Near misses: some fan/thermal/psu/chip precursors fade out with no failure (failure_at None).
- Pool or network trouble (reject spikes, fewer accepted shares) on one miner: an anomaly, never a
  failure, in `episodes` only. A pool outage of whole sites at once is a site event (`site_events`).
- Confounders (server/sim/confounders.py): heat waves and firmware updates of whole sites (site
  events), healthy reboots (context), slow drifts ended by a recorded maintenance (miner anomalies).
- Planned curtailments: hashrate 0 on purpose on part of the fleet, returned as planned_states.
- The demo miner 192.168.1.100 has a failing fan in its last hours (episode with failure_at after
  the end of the data and no failure event), so a prediction on the demo shows something.

Same arguments (seed, n_miners, days, interval_s, end) give the same fleet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from server.records import EventSource, FailureEvent, FailureMode, Miner, PlannedState, PlannedStateKind
from server.sim import confounders
from server.sim.confounders import ContextTruth, SiteEventTruth
from server.sim.settings import HARDWARE, HARDWARE_WEIGHTS, N_BOARDS, N_FANS, SETTINGS, SimSettings


@dataclass(frozen=True, slots=True)
class Episode:
    """Ground truth of one injected episode.

    kind is the simulator's name (fan, thermal, dust, hash_board, psu, chip, reboot_loop, control_board,
    pool); mode its FailureMode. start is when the telemetry starts to show it (== failure_at when there
    is no precursor); failure_at is None for anomalies and near misses; end is when it is over (the
    repair time for a failure, the end of the data for the demo miner).
    """

    miner_id: str
    kind: str
    mode: FailureMode
    start: datetime
    failure_at: datetime | None
    end: datetime


@dataclass(slots=True)
class FleetSamples:
    """The samples, column-oriented, ordered by miner then time: N rows."""

    miner_id: np.ndarray  # (N,) object str
    ts: np.ndarray  # (N,) datetime64[s], UTC
    hashrate_ths: np.ndarray  # (N,) float64
    temperature_c: np.ndarray  # (N,) float64, NaN where the reading is missing
    fan_speed_rpm: np.ndarray  # (N,) float64, mean of the fans, NaN where missing
    power_w: np.ndarray  # (N,) float64
    accepted_shares: np.ndarray  # (N,) int64, cumulative since the last reboot
    rejected_shares: np.ndarray  # (N,) int64, cumulative since the last reboot
    board_hashrate_ths: np.ndarray  # (N, 3) float64
    board_temperature_c: np.ndarray  # (N, 3) float64
    fan_speeds_rpm: np.ndarray  # (N, 4) float64

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(slots=True)
class SimulatedFleet:
    miners: list[Miner]
    samples: FleetSamples
    failures: list[FailureEvent]
    planned_states: list[PlannedState]
    episodes: list[Episode]
    start: datetime
    end: datetime
    interval_s: int
    site_events: list[SiteEventTruth] = field(default_factory=list)
    """Conditions that hit a site at once (heat_wave, firmware_update, pool_outage): not anomalies."""
    contexts: list[ContextTruth] = field(default_factory=list)
    """Healthy reboots and firmware restarts: the warm-up after them is context, not a fault."""


def miner_ip(index: int) -> str:
    """192.168.1.100 ... 192.168.1.254, then 192.168.2.1 ... 192.168.2.254, 192.168.3.1 ..."""
    if index < 155:
        return f"192.168.1.{100 + index}"
    rest = index - 155
    return f"192.168.{2 + rest // 254}.{1 + rest % 254}"


class _Effects:
    """Per-(miner, step) modifiers that episodes write into; neutral by default. Shapes (M, T[, k])."""

    def __init__(self, m: int, t: int) -> None:
        self.hash_mult = np.ones((m, t))
        self.board_alive = np.ones((m, t, N_BOARDS))
        self.temp_add = np.zeros((m, t))
        self.fan_mult = np.ones((m, t, N_FANS))
        self.fan_add = np.zeros((m, t))
        self.power_mult = np.ones((m, t))
        self.power_noise = np.zeros((m, t))
        self.reject_add = np.zeros((m, t))
        self.share_mult = np.ones((m, t))
        self.running = np.ones((m, t), dtype=bool)
        self.present = np.ones((m, t), dtype=bool)


def _apply_precursor(
    fx: _Effects, rng: np.random.Generator, kind: str, m: int, s: int, f: int, resolved: bool
) -> None:
    """Write the precursor of `kind` on miner m over steps [s, f). u is progress 0 -> 1."""
    n = f - s
    if n <= 0:
        return
    u = np.linspace(0.0, 1.0, n, endpoint=False)
    if resolved:
        u = 0.6 * np.sin(np.pi * u)  # builds up, then fades out
    sl = slice(s, f)
    if kind == "fan":
        k = int(rng.integers(N_FANS))
        erratic = rng.normal(0.0, 0.25, n) * u
        mult = np.clip(1.0 - 0.7 * u + erratic, 0.0, 1.2)
        stopped = u > 0.85
        mult[stopped] = 0.0
        fx.fan_mult[m, sl, k] = mult
        fx.temp_add[m, sl] += 3.0 * u + 10.0 * u**1.5 + 8.0 * stopped
    elif kind == "thermal":
        fx.temp_add[m, sl] += 20.0 * u**1.5
    elif kind == "dust":
        fx.temp_add[m, sl] += 9.0 * u + 12.0 * np.clip((u - 0.9) / 0.1, 0.0, 1.0)
        fx.fan_add[m, sl] += 700.0 * u
    elif kind == "hash_board":
        b = int(rng.integers(N_BOARDS))
        p_down = np.where(u > 0.85, 0.8, 0.03 + 0.5 * u**2)
        fx.board_alive[m, sl, b] = np.where(rng.random(n) < p_down, 0.0, 1.0)
    elif kind == "psu":
        fx.power_noise[m, sl] += 0.05 * u
        droop = rng.random(n) < 0.02 + 0.15 * u
        fx.power_mult[m, sl] *= np.where(droop, 1.0 - rng.uniform(0.05, 0.2, n), 1.0)
        fx.hash_mult[m, sl] *= np.where(droop, 1.0 - rng.uniform(0.05, 0.25, n), 1.0)
    elif kind == "chip":
        fx.hash_mult[m, sl] *= 1.0 - 0.15 * u
        fx.reject_add[m, sl] += 0.03 * u
        fx.temp_add[m, sl] += 2.0 * u
    elif kind == "reboot_loop":
        reboot = rng.random(n) < 0.02 + 0.2 * u
        reboot[1:] |= reboot[:-1] & (rng.random(n - 1) < 0.5)  # some reboots take two samples
        fx.running[m, sl] &= ~reboot
    elif kind == "pool":
        fx.reject_add[m, sl] += rng.uniform(0.05, 0.3)
        fx.share_mult[m, sl] *= rng.uniform(0.3, 1.0)


def _schedule(
    rng: np.random.Generator,
    cfg: SimSettings,
    miner_ids: list[str],
    times: np.ndarray,
    interval_s: int,
    fx: _Effects,
) -> tuple[list[Episode], list[FailureEvent], list[tuple[int, int, int]]]:
    """Draw and apply failure episodes; returns episodes, failure events and busy (miner, lo, hi) spans."""
    steps_per_hour = 3600 / interval_s
    n_steps = times.shape[0]
    kinds = list(cfg.kinds)
    probs = np.array([cfg.kinds[k][1] for k in kinds])
    probs = probs / probs.sum()
    lemon = rng.gamma(2.0, 0.5, len(miner_ids))
    episodes: list[Episode] = []
    failures: list[FailureEvent] = []
    busy: list[tuple[int, int, int]] = []

    def at(step: int) -> datetime:
        return _to_datetime(times[min(step, n_steps - 1)]) + timedelta(
            seconds=interval_s * max(0, step - n_steps + 1)
        )

    demo_lo = n_steps - int((cfg.demo_fan_hours + 48) * steps_per_hour)
    for m, miner_id in enumerate(miner_ids):
        rate_per_step = cfg.failures_per_miner_day * lemon[m] / (24 * steps_per_hour)
        free = int(cfg.warmup_hours * steps_per_hour)
        number = 0
        while True:
            fail = free + int(rng.exponential(1.0 / rate_per_step))
            kind = kinds[int(rng.choice(len(kinds), p=probs))]
            mode, _, (pre_lo, pre_hi), (down_lo, down_hi) = cfg.kinds[kind]
            precursor = int(rng.uniform(pre_lo, pre_hi) * steps_per_hour)
            downtime = max(1, int(rng.uniform(down_lo, down_hi) * steps_per_hour))
            resolved = kind in ("fan", "thermal", "psu", "chip") and rng.random() < cfg.resolved_fraction
            dark = kind == "psu" or rng.random() < 0.3
            if fail >= n_steps or (m == 0 and fail + downtime >= demo_lo):
                break
            start = max(free, fail - precursor)
            _apply_precursor(fx, rng, kind, m, start, fail, resolved)
            if resolved:
                episodes.append(Episode(miner_id, kind, FailureMode(mode), at(start), None, at(fail)))
                busy.append((m, start, fail))
                free = fail + int(cfg.cooloff_hours * steps_per_hour)
                continue
            repair = min(fail + downtime, n_steps)
            fx.running[m, fail:repair] = False
            if dark:
                fx.present[m, fail:repair] = False
            repaired_at = at(fail + downtime)
            episodes.append(Episode(miner_id, kind, FailureMode(mode), at(start), at(fail), repaired_at))
            failures.append(
                FailureEvent(
                    event_id=f"sim-{miner_id}-{number}",
                    miner_id=miner_id,
                    occurred_at=at(fail),
                    mode=FailureMode(mode),
                    source=EventSource.SIMULATOR,
                    repaired_at=repaired_at if fail + downtime < n_steps else None,
                    note=f"simulated {kind} failure",
                )
            )
            busy.append((m, start, repair))
            number += 1
            free = repair + int(cfg.cooloff_hours * steps_per_hour)
    # The demo miner: a failing fan in its last hours, projected to stop after the end.
    if miner_ids:
        start = n_steps - int(cfg.demo_fan_hours * steps_per_hour)
        projected = n_steps + int(cfg.demo_failure_after_end_hours * steps_per_hour)
        # Progress runs to the projected failure; only the part up to the end of the data is written.
        u = np.linspace(0.0, 1.0, projected - start, endpoint=False)[: n_steps - start]
        fx.fan_mult[0, start:, 0] = np.clip(1.0 - 0.7 * u + rng.normal(0.0, 0.25, u.shape[0]) * u, 0.05, 1.2)
        fx.temp_add[0, start:] += 3.0 * u + 10.0 * u**1.5
        episodes.append(
            Episode(miner_ids[0], "fan", FailureMode.FAN, at(start), at(projected), at(n_steps - 1))
        )
        busy.append((0, start, n_steps))
    return episodes, failures, busy


def _to_datetime(value: np.datetime64) -> datetime:
    seconds = int(value.astype("datetime64[s]").astype(np.int64))
    return datetime.fromtimestamp(seconds, UTC)


def _anomalies_and_curtailments(
    rng: np.random.Generator,
    cfg: SimSettings,
    miner_ids: list[str],
    times: np.ndarray,
    interval_s: int,
    fx: _Effects,
    busy: list[tuple[int, int, int]],
    sites: list[str],
) -> tuple[list[Episode], list[PlannedState], list[SiteEventTruth]]:
    steps_per_hour = 3600 / interval_s
    n_miners, n_steps = len(miner_ids), times.shape[0]
    days = n_steps / (24 * steps_per_hour)
    episodes: list[Episode] = []

    def span(lo: int, hi: int) -> tuple[datetime, datetime]:
        return _to_datetime(times[lo]), _to_datetime(times[min(hi, n_steps - 1)])

    site_events: list[SiteEventTruth] = []
    incidents = []
    for _ in range(rng.poisson(cfg.pool_incidents_per_fleet_day * days)):
        share, pick = rng.uniform(0.3, 1.0), rng.random(n_miners)
        lo = int(rng.integers(n_steps))
        if cfg.site_pool_outages:
            # A pool outage takes whole sites (one pool per site); a few miners there fail over to a
            # backup pool. The demo miner's site is left alone in the demo's final two days.
            first = {s: sites.index(s) for s in sites}
            hit_sites = {s for s in first if pick[first[s]] < share}
            if lo > n_steps - int((cfg.demo_fan_hours + 30) * steps_per_hour):
                hit_sites.discard(sites[0])
            members = [
                m
                for m in range(n_miners)
                if sites[m] in hit_sites and pick[m] < 0.95 + (m == first[sites[m]])
            ]
            incidents.append((members, lo, True))
        else:
            incidents.append((np.flatnonzero(pick < share).tolist(), lo, False))
    for m in range(n_miners):
        for _ in range(rng.poisson(cfg.network_trouble_per_miner_day * days)):
            incidents.append(([m], int(rng.integers(n_steps)), False))
    for members, lo, whole_sites in incidents:
        hi = min(n_steps, lo + int(rng.uniform(0.5, 6.0) * steps_per_hour))
        for m in members:
            _apply_precursor(fx, rng, "pool", m, lo, hi, resolved=False)
            if not whole_sites:
                start, end = span(lo, hi)
                episodes.append(Episode(miner_ids[m], "pool", FailureMode.POOL, start, None, end))
        if whole_sites:
            start, end = span(lo, hi)
            for site in sorted({sites[m] for m in members}):
                hit = tuple(miner_ids[m] for m in members if sites[m] == site)
                site_events.append(SiteEventTruth(site, "pool_outage", start, end, hit))

    planned: list[PlannedState] = []
    busy_by_miner: dict[int, list[tuple[int, int]]] = {}
    for m, lo, hi in busy:
        busy_by_miner.setdefault(m, []).append((lo, hi))
    last_day = max(1, int(days) - 2)
    for number in range(cfg.curtailments):
        day = int(rng.integers(0, last_day))
        lo = int((day * 24 + rng.uniform(14.0, 17.0)) * steps_per_hour)
        hi = lo + int(rng.uniform(2.0, 4.0) * steps_per_hour)
        if hi >= n_steps:
            continue
        chosen: list[int] = np.flatnonzero(rng.random(n_miners) < cfg.curtailed_fraction).tolist()
        for m in chosen:
            if m == 0 or any(a < hi + 12 and lo - 12 < b for a, b in busy_by_miner.get(m, [])):
                continue
            fx.running[m, lo:hi] = False
            start, end = span(lo, hi)
            planned.append(
                PlannedState(
                    state_id=f"sim-curtail-{number}-{miner_ids[m]}",
                    miner_id=miner_ids[m],
                    kind=PlannedStateKind.CURTAILMENT,
                    start=start,
                    end=end,
                    note="simulated demand-response curtailment",
                )
            )
    return episodes, planned, site_events


def _counters(increments: np.ndarray, running: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Cumulative counters that read 0 while the miner is down and restart from 0 after it: (M, T)."""
    total = np.cumsum(increments, axis=1)
    base = np.maximum.accumulate(np.where(running, 0, total), axis=1)
    never_down = ~np.maximum.accumulate(~running, axis=1)
    return np.where(running, total - base + initial[:, None] * never_down, 0)


def simulate_fleet(
    n_miners: int,
    days: float,
    seed: int,
    *,
    interval_s: int = 300,
    end: datetime | None = None,
    settings: SimSettings = SETTINGS,
) -> SimulatedFleet:
    """Simulate n_miners for `days` of samples every interval_s seconds, ending at `end`
    (default: now, floored to the interval). Deterministic for the same arguments."""
    if n_miners < 1 or days <= 0 or interval_s < 1:
        raise ValueError("n_miners >= 1, days > 0 and interval_s >= 1 are required")
    cfg = settings
    rng = np.random.default_rng(seed)
    end = end or datetime.now(UTC)
    end_s = int(end.timestamp()) // interval_s * interval_s
    n_steps = max(2, int(days * 86400 / interval_s))
    times = (np.arange(n_steps, dtype=np.int64) * interval_s + (end_s - (n_steps - 1) * interval_s)).astype(
        "datetime64[s]"
    )
    steps_per_hour = 3600 / interval_s

    # ---- miners -----------------------------------------------------------------------------------
    model_ix = rng.choice(len(HARDWARE), size=n_miners, p=np.array(HARDWARE_WEIGHTS))
    model_ix[0] = 0
    miner_ids = [miner_ip(i) for i in range(n_miners)]
    miners = [
        Miner(
            miner_id=miner_ids[i],
            hardware_model=HARDWARE[model_ix[i]].name,
            make=HARDWARE[model_ix[i]].make,
            nominal_hashrate_ths=HARDWARE[model_ix[i]].hashrate_ths,
            nominal_power_w=HARDWARE[model_ix[i]].power_w,
            serial=f"SIM{i:06d}",
            mac=f"02:00:00:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}",
            site=f"demo-row-{i // 20 + 1}",
        )
        for i in range(n_miners)
    ]
    nominal_hash = np.array([HARDWARE[j].hashrate_ths for j in model_ix])[:, None]  # (M, 1)
    nominal_power = np.array([HARDWARE[j].power_w for j in model_ix])[:, None]
    temp_rise = np.array([HARDWARE[j].temp_rise_c for j in model_ix])[:, None]
    hash_factor = rng.normal(1.0, 0.02, (n_miners, 1))
    power_factor = rng.normal(1.0, 0.02, (n_miners, 1))
    thermal_offset = rng.normal(0.0, 2.0, (n_miners, 1))
    base_reject = rng.uniform(*cfg.reject_rate_range, (n_miners, 1))
    board_offset = rng.normal(0.0, 1.5, (n_miners, 1, N_BOARDS))

    # ---- episodes ---------------------------------------------------------------------------------
    fx = _Effects(n_miners, n_steps)
    episodes, failures, busy = _schedule(rng, cfg, miner_ids, times, interval_s, fx)
    sites = [m.site for m in miners]
    anomalies, planned, site_events = _anomalies_and_curtailments(
        rng, cfg, miner_ids, times, interval_s, fx, busy, sites
    )
    plan: confounders.ConfounderPlan | None = None
    contexts: list[ContextTruth] = []
    if cfg.confounders:
        plan, drifts, maintenance, contexts, confounded = _confounders(
            seed, cfg, miner_ids, sites, times, interval_s, fx, busy, planned
        )
        anomalies += drifts
        planned += maintenance
        site_events += confounded
    episodes = sorted(episodes + anomalies, key=lambda e: (e.start, e.miner_id))

    # ---- physics ----------------------------------------------------------------------------------
    hour = ((times.astype(np.int64) % 86400) / 3600.0)[None, :]  # (1, T) UTC hour of day
    weather = np.cumsum(rng.normal(0.0, 0.05, n_steps))
    weather = np.clip(weather - weather.mean(), -3.0, 3.0)[None, :]
    ambient = cfg.ambient_mean_c + cfg.ambient_daily_c * np.sin(2 * np.pi * (hour - 9.0) / 24.0) + weather
    if plan is not None:
        ambient = ambient + plan.ambient_add  # (M, T): heat waves are per site
    running = fx.running
    board_share = fx.board_alive.mean(axis=2)  # (M, T) fraction of boards hashing
    load = running * board_share * fx.hash_mult
    temperature = (
        ambient
        + thermal_offset
        + temp_rise * (0.1 + 0.9 * load)
        + fx.temp_add * running
        + rng.normal(0.0, cfg.temperature_noise_c, (n_miners, n_steps))
    )
    temperature = np.where(running, temperature, ambient + 3.0)
    reported_offset = plan.temp_read_add if plan is not None else 0.0
    throttle = 1.0 - np.clip((temperature - 85.0) / 15.0, 0.0, 0.5)
    noise = 1.0 + rng.normal(0.0, cfg.hashrate_noise, (n_miners, n_steps, N_BOARDS))
    board_hash = (
        (nominal_hash * hash_factor / N_BOARDS)[:, :, None]
        * fx.board_alive
        * (fx.hash_mult * throttle * running)[:, :, None]
        * noise
    )
    hashrate = board_hash.sum(axis=2)
    board_temp = temperature[:, :, None] + board_offset + rng.normal(0.0, 0.3, board_hash.shape)
    board_temp = np.where(fx.board_alive > 0, board_temp, ambient[:, :, None] + 8.0)

    fan_target = np.clip(3000.0 + 150.0 * (temperature - 62.0), 3000.0, 6000.0) + fx.fan_add
    fan_target = np.where(running, np.minimum(fan_target, 6200.0), 1200.0)
    if plan is not None:
        fan_target = fan_target + np.where(running, plan.fan_read_add, 0.0)
    fans = fan_target[:, :, None] * fx.fan_mult + rng.normal(0.0, cfg.fan_noise_rpm, fx.fan_mult.shape)
    fans = np.clip(fans, 0.0, None)
    fans[fx.fan_mult == 0.0] = 0.0

    utilisation = hashrate / (nominal_hash * hash_factor)
    power = nominal_power * power_factor * (0.08 + 0.92 * utilisation) * fx.power_mult
    power *= 1.0 + rng.normal(0.0, 1.0, power.shape) * (cfg.power_noise + fx.power_noise)
    power = np.where(running, power, rng.uniform(60.0, 120.0, power.shape))
    if plan is not None:
        power = power * plan.power_read_mult

    share_rate = hashrate * cfg.shares_per_ths_interval * fx.share_mult
    accepted_inc = rng.poisson(share_rate)
    reject_p = np.clip(base_reject + fx.reject_add, 0.0, 0.9)
    rejected_inc = rng.poisson(share_rate * reject_p / (1.0 - reject_p))
    accepted = _counters(accepted_inc, running, rng.integers(0, 100_000, n_miners))
    rejected = _counters(rejected_inc, running, rng.integers(0, 500, n_miners))

    # ---- missing data -----------------------------------------------------------------------------
    present = fx.present & (rng.random((n_miners, n_steps)) >= cfg.sample_drop_rate)
    for m in range(n_miners):
        for lo in rng.integers(
            0, n_steps, rng.poisson(cfg.blips_per_miner_day * n_steps / (24 * steps_per_hour))
        ):
            present[m, lo : lo + int(rng.integers(1, 7))] = False
    present[0, -int(cfg.demo_fan_hours * steps_per_hour) :] = True  # the demo's final hours are complete
    temperature = np.where(
        rng.random(temperature.shape) < cfg.reading_drop_rate, np.nan, temperature + reported_offset
    )
    fan_mean = np.where(rng.random(temperature.shape) < cfg.reading_drop_rate, np.nan, fans.mean(axis=2))

    rows = present.reshape(-1)
    samples = FleetSamples(
        miner_id=np.repeat(np.array(miner_ids, dtype=object), n_steps)[rows],
        ts=np.tile(times, n_miners)[rows],
        hashrate_ths=hashrate.reshape(-1)[rows],
        temperature_c=temperature.reshape(-1)[rows],
        fan_speed_rpm=fan_mean.reshape(-1)[rows],
        power_w=power.reshape(-1)[rows],
        accepted_shares=accepted.reshape(-1)[rows].astype(np.int64),
        rejected_shares=rejected.reshape(-1)[rows].astype(np.int64),
        board_hashrate_ths=board_hash.reshape(-1, N_BOARDS)[rows],
        board_temperature_c=board_temp.reshape(-1, N_BOARDS)[rows],
        fan_speeds_rpm=fans.reshape(-1, N_FANS)[rows],
    )
    return SimulatedFleet(
        miners=miners,
        samples=samples,
        failures=sorted(failures, key=lambda e: (e.occurred_at, e.miner_id)),
        planned_states=planned,
        episodes=episodes,
        start=_to_datetime(times[0]),
        end=_to_datetime(times[-1]),
        interval_s=interval_s,
        site_events=sorted(site_events, key=lambda e: (e.start, e.site, e.kind)),
        contexts=sorted(contexts, key=lambda c: (c.at, c.miner_id)),
    )


def _confounders(
    seed: int,
    cfg: SimSettings,
    miner_ids: list[str],
    sites: list[str],
    times: np.ndarray,
    interval_s: int,
    fx: _Effects,
    busy: list[tuple[int, int, int]],
    planned: list[PlannedState],
) -> tuple[
    confounders.ConfounderPlan, list[Episode], list[PlannedState], list[ContextTruth], list[SiteEventTruth]
]:
    """Draw the confounders from their own stream and write them into the effects."""
    rng = np.random.default_rng([seed, 7])
    steps_per_hour = 3600 / interval_s
    n_steps = times.shape[0]
    index = {m: i for i, m in enumerate(miner_ids)}
    spans: dict[int, list[tuple[int, int]]] = {}
    for m, lo, hi in busy:
        spans.setdefault(m, []).append((lo, hi))
    t0 = int(times[0].astype(np.int64))
    for state in planned:
        lo = (int(state.start.timestamp()) - t0) // interval_s
        hi = (int(state.end.timestamp()) - t0) // interval_s
        spans.setdefault(index[state.miner_id], []).append((lo, hi))
    protect_from = n_steps - int((cfg.demo_fan_hours + 30) * steps_per_hour)
    plan = confounders.draw(rng, cfg, sites, n_steps, steps_per_hour, fx.running, spans, protect_from)

    def at(step: int) -> datetime:
        return _to_datetime(times[min(step, n_steps - 1)])

    drifts, maintenance = [], []
    for number, drift in enumerate(plan.drifts):
        m, lo, hi = drift.miner, drift.start, drift.end
        temp, fan = confounders.drift_effect(hi - lo, rng)
        fx.temp_add[m, lo:hi] += temp
        fx.fan_add[m, lo:hi] += fan
        done = min(n_steps, hi + int(steps_per_hour))
        fx.running[m, hi:done] = False  # the cleaning: switched off on purpose, recorded
        drifts.append(Episode(miner_ids[m], "drift", FailureMode.THERMAL, at(lo), None, at(hi)))
        maintenance.append(
            PlannedState(
                state_id=f"sim-maintenance-{number}-{miner_ids[m]}",
                miner_id=miner_ids[m],
                kind=PlannedStateKind.MAINTENANCE,
                start=at(hi),
                end=at(done),
                note="simulated cleaning after a slow drift",
            )
        )
    contexts = [ContextTruth(miner_ids[m], kind, at(step)) for m, kind, step in plan.contexts]
    site_events = [
        SiteEventTruth(site, kind, at(lo), at(hi), tuple(miner_ids[m] for m in members))
        for site, kind, lo, hi, members in plan.site_events
    ]
    return plan, drifts, maintenance, contexts, site_events
