"""Training windows and labels from per-miner series, failures and planned states. Pure numpy.

A window is `sequence_length` consecutive rows of one miner, ending at time te. Label: 1 when a
failure of a label mode (hardware; not OUTAGE or POOL) occurs in (te + gap, te + gap + horizon].
Dropped windows (neither positive nor negative):
- right-censored: te + gap + horizon is after the miner's last row (the outcome is unknown);
- overlapping a failure's downtime [occurred_at, repaired_at + post_repair] (any mode; an
  unrepaired failure is assumed down for `unrepaired_downtime_hours`);
- with any failure in (te, te + gap]: already under way, not a prediction;
- overlapping a planned state (curtailment, maintenance); failures inside a planned state are
  not failures at all;
- with more than `max_missing_fraction` of rows unobserved.
`healthy` windows (the autoencoder's training data) are kept negatives that do not touch
[occurred_at - gap - horizon, downtime end] of any event of any mode.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from server.models.features import N_CHANNELS, build_channels
from server.records import FailureEvent, FailureMode, Miner, MinerSeries, PlannedState

NOT_LABELLED = (FailureMode.OUTAGE, FailureMode.POOL)  # not hardware: never a positive label


@dataclass(frozen=True)
class WindowConfig:
    """How windows are cut and labelled. Stored in checkpoints so inference cuts them the same way."""

    sequence_length: int = 24
    stride: int = 1  # samples between window starts (training; inference always uses 1). 1, not 6:
    # an epoch samples a fixed number of windows anyway, and every offset of the few failure
    # windows counts against over-fitting (validation ROC-AUC +0.01 to +0.02 on the demo fleet)
    sample_interval_s: int = 300
    horizon_hours: float = 24.0
    gap_hours: float = 1.0
    max_missing_fraction: float = 0.5
    post_repair_hours: float = 1.0
    unrepaired_downtime_hours: float = 24.0
    share_reference_samples: int = 288  # 24 h of 5-min rows
    label_modes: tuple[int, ...] = tuple(int(m) for m in FailureMode if m not in NOT_LABELLED)


@dataclass
class WindowSet:
    """Windows as row offsets into one (R, C) array of all miners' raw channels (no copies)."""

    channels: np.ndarray  # (R, C) float32 raw channels, NaN where missing
    starts: np.ndarray  # (N,) int64 first row of each window in `channels`
    labels: np.ndarray  # (N,) float32, 1 = failure within the horizon
    healthy: np.ndarray  # (N,) bool
    miner_ids: np.ndarray  # (N,) str
    window_ends: np.ndarray  # (N,) datetime64[s], time of each window's last row
    config: WindowConfig = field(default_factory=WindowConfig)

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def subset(self, index: np.ndarray) -> WindowSet:
        return replace(
            self,
            starts=self.starts[index],
            labels=self.labels[index],
            healthy=self.healthy[index],
            miner_ids=self.miner_ids[index],
            window_ends=self.window_ends[index],
        )

    def gather(self, index: np.ndarray, table: np.ndarray | None = None) -> np.ndarray:
        """(n,) window indices -> (n, T, C) rows of `table` (default the raw channels)."""
        rows = self.starts[index][:, None] + np.arange(self.config.sequence_length)  # (n, T)
        return (self.channels if table is None else table)[rows]

    def covered_rows(self) -> np.ndarray:
        """(R,) bool: rows inside at least one window (what normalisation statistics see)."""
        marks = np.zeros(self.channels.shape[0] + 1, dtype=np.int64)
        np.add.at(marks, self.starts, 1)
        np.add.at(marks, self.starts + self.config.sequence_length, -1)
        return np.cumsum(marks)[:-1] > 0

    def data_range(self) -> tuple[str, str]:
        """ISO times of the first window's first row and the last window's last row."""
        if not len(self):
            return ("", "")
        span = np.timedelta64((self.config.sequence_length - 1) * self.config.sample_interval_s, "s")
        return (str(self.window_ends.min() - span) + "Z", str(self.window_ends.max()) + "Z")

    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for part in (self.channels, self.starts, self.labels, self.window_ends.astype(np.int64)):
            digest.update(np.ascontiguousarray(part).tobytes())
        return digest.hexdigest()[:16]


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def build_windows(
    series: Mapping[str, MinerSeries],
    miners: Mapping[str, Miner],
    failures: Iterable[FailureEvent] = (),
    planned: Iterable[PlannedState] = (),
    config: WindowConfig | None = None,
) -> WindowSet:
    """Cut, label and filter the windows of every miner (in miner-id order, so runs are repeatable)."""
    cfg = config or WindowConfig()
    length, gap, horizon = cfg.sequence_length, int(cfg.gap_hours * 3600), int(cfg.horizon_hours * 3600)
    planned_by: dict[str, list[tuple[int, int]]] = {}
    for state in planned:
        planned_by.setdefault(state.miner_id, []).append((_seconds(state.start), _seconds(state.end)))
    events_by: dict[str, list[tuple[int, int, bool]]] = {}  # (occurred, downtime end, labelled)
    for event in failures:
        occurred = _seconds(event.occurred_at)
        if any(lo <= occurred <= hi for lo, hi in planned_by.get(event.miner_id, [])):
            continue  # a "failure" during a planned state is the planned state
        end = (
            _seconds(event.repaired_at)
            if event.repaired_at
            else occurred + int(cfg.unrepaired_downtime_hours * 3600)
        )
        end += int(cfg.post_repair_hours * 3600)
        events_by.setdefault(event.miner_id, []).append((occurred, end, int(event.mode) in cfg.label_modes))
    parts: list[np.ndarray] = []
    columns: dict[str, list[np.ndarray]] = {k: [] for k in ("starts", "labels", "healthy", "ids", "ends")}
    offset = 0
    for miner_id in sorted(series):
        one = series[miner_id]
        if len(one) < length:
            continue
        miner = miners.get(miner_id) or Miner(miner_id=miner_id, hardware_model="")
        parts.append(build_channels(one, miner, cfg.share_reference_samples))
        times = one.timestamps.astype("datetime64[s]").astype(np.int64)  # (T,) seconds
        starts = np.arange(0, len(one) - length + 1, cfg.stride)
        t_start, t_end = times[starts], times[starts + length - 1]
        observed = np.concatenate([[0], np.cumsum(np.asarray(one.observed, dtype=np.int64))])
        missing = 1.0 - (observed[starts + length] - observed[starts]) / length
        keep = (t_end + gap + horizon <= times[-1]) & (missing <= cfg.max_missing_fraction)
        label = np.zeros(starts.shape[0], dtype=bool)
        healthy = np.ones(starts.shape[0], dtype=bool)
        for lo, hi in planned_by.get(miner_id, []):
            keep &= (t_end < lo) | (t_start > hi)
        for occurred, end, labelled in events_by.get(miner_id, []):
            keep &= (t_end < occurred) | (t_start > end)  # not during the downtime
            keep &= ~((t_end < occurred) & (occurred <= t_end + gap))  # not already under way
            if labelled:
                label |= (t_end + gap < occurred) & (occurred <= t_end + gap + horizon)
            healthy &= (t_end < occurred - gap - horizon) | (t_start > end)
        columns["starts"].append(starts[keep] + offset)
        columns["labels"].append(label[keep].astype(np.float32))
        columns["healthy"].append(healthy[keep] & ~label[keep])
        columns["ids"].append(np.full(int(keep.sum()), miner_id))
        columns["ends"].append(one.timestamps[starts + length - 1][keep].astype("datetime64[s]"))
        offset += len(one)
    if not parts:
        empty = np.zeros((0, N_CHANNELS), dtype=np.float32)
        return WindowSet(
            empty,
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
            np.zeros(0, bool),
            np.zeros(0, str),
            np.zeros(0, "datetime64[s]"),
            cfg,
        )
    return WindowSet(
        channels=np.concatenate(parts),
        starts=np.concatenate(columns["starts"]).astype(np.int64),
        labels=np.concatenate(columns["labels"]),
        healthy=np.concatenate(columns["healthy"]),
        miner_ids=np.concatenate(columns["ids"]),
        window_ends=np.concatenate(columns["ends"]),
        config=cfg,
    )


def split_by_miner(windows: WindowSet, validation_split: float, seed: int) -> tuple[WindowSet, WindowSet]:
    """(train, validation) with no miner in both. Miners with and without failures are split
    separately so a small fleet's validation set still holds some failures."""
    rng = np.random.default_rng(seed)
    ids = np.unique(windows.miner_ids)
    failing = set(np.unique(windows.miner_ids[windows.labels > 0]))
    held_out: list[str] = []
    for group in ([m for m in ids if m in failing], [m for m in ids if m not in failing]):
        if group:
            count = int(round(validation_split * len(group)))
            held_out += list(rng.permutation(group)[:count])
    if not held_out or len(held_out) == len(ids):  # both sides need at least one miner
        held_out = list(rng.permutation(ids)[: min(max(1, round(validation_split * len(ids))), len(ids) - 1)])
    is_val = np.isin(windows.miner_ids, held_out)
    return windows.subset(~is_val), windows.subset(is_val)


@dataclass(frozen=True)
class ValidationSplit:
    """Training and validation windows, and how validation was chosen."""

    train: WindowSet
    val: WindowSet
    by_time: bool
    """True: validation is the last part of each miner's history (too few miners to hold some out)."""


def split_for_validation(windows: WindowSet, validation_split: float, seed: int) -> ValidationSplit:
    """Hold out whole miners (split_by_miner) when `validation_split` of the fleet rounds to at least
    one miner and leaves one to train on; otherwise validate on the last `validation_split` of each
    miner's history (split_each_miner_by_time): with one or two miners, holding one out would leave a
    miner unlearned (and, with two, maybe the one the user wanted scored)."""
    ids = np.unique(windows.miner_ids)
    held = int(round(validation_split * ids.size))
    if 1 <= held < ids.size:
        return ValidationSplit(*split_by_miner(windows, validation_split, seed), by_time=False)
    return ValidationSplit(*split_each_miner_by_time(windows, validation_split), by_time=True)


def split_each_miner_by_time(windows: WindowSet, validation_split: float) -> tuple[WindowSet, WindowSet]:
    """(train, validation): validation holds the windows of the last `validation_split` of each miner's
    window span, training those whose whole label period (gap + horizon) ends before that part starts,
    so no training label looks into validation. Windows in between belong to neither."""
    cfg = windows.config
    ends = windows.window_ends.astype(np.int64)  # (N,) s
    _, miner = np.unique(windows.miner_ids, return_inverse=True)  # (N,) miner index
    first = np.full(miner.max() + 1 if len(windows) else 0, np.iinfo(np.int64).max)
    last = np.full_like(first, np.iinfo(np.int64).min)
    np.minimum.at(first, miner, ends)
    np.maximum.at(last, miner, ends)
    cut = (first + (1.0 - validation_split) * (last - first)).astype(np.int64)[miner]  # (N,)
    label_end = ends + int((cfg.gap_hours + cfg.horizon_hours) * 3600)
    start = ends - (cfg.sequence_length - 1) * cfg.sample_interval_s
    return windows.subset(np.flatnonzero(label_end <= cut)), windows.subset(np.flatnonzero(start >= cut))


def split_by_time(
    windows: WindowSet, cutoff: datetime | None = None, train_fraction: float = 0.8
) -> tuple[WindowSet, WindowSet]:
    """(earlier, later) for an out-of-time evaluation. Earlier windows' whole label period ends by
    the cutoff; later windows start at or after it. Default cutoff: train_fraction of the span."""
    cfg = windows.config
    ends = windows.window_ends.astype(np.int64)
    if cutoff is None:
        cut = int(ends.min() + train_fraction * (ends.max() - ends.min())) if len(windows) else 0
    else:
        cut = _seconds(cutoff)
    label_end = ends + int((cfg.gap_hours + cfg.horizon_hours) * 3600)
    start = ends - (cfg.sequence_length - 1) * cfg.sample_interval_s
    return windows.subset(label_end <= cut), windows.subset(start >= cut)
