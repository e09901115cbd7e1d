"""How often `?explain=true` names the failed component: a confusion over the simulator's known modes.

    .venv/bin/python -m bench.explain_modes [--miners 60] [--days 14] [--train-seed 9] [--seeds 6 7 8]
        [--epochs 4] [--before 1] [--out bench/results/explain.md]

Train the failure-risk LSTM on one simulated fleet (fixed `end`, so runs repeat), then, on fleets it
never saw, explain every hardware failure's precursor the way the server does (occlusion factors of
the window, then `explain.likely_failure_mode`) at the window ending `--before` hours before the
failure (default 1 h: the prediction gap, where the precursor is strongest), and count what it names
against the simulator's mode. Modes without a precursor (control_board) cannot be named: they are
listed, not scored. The accuracy counts UNSPECIFIED ("no mode carries enough evidence") as wrong.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from bench.quality import load_fleet_series
from server.models.explain import RiskFactor, likely_failure_mode
from server.records import FailureMode

ModeRule = Callable[[list[RiskFactor]], FailureMode]
NAMEABLE = (
    FailureMode.FAN,
    FailureMode.THERMAL,
    FailureMode.HASH_BOARD,
    FailureMode.PSU,
    FailureMode.CHIP,
    FailureMode.REBOOT_LOOP,
)
"""The hardware modes with a precursor the explanation can name (POOL is not a hardware failure)."""
TRUE_MODES = (*NAMEABLE, FailureMode.CONTROL_BOARD)
NAMED = (FailureMode.UNSPECIFIED, *NAMEABLE, FailureMode.POOL)


def train_predictor(n_miners: int, days: float, seed: int, epochs: int, out_dir: Path) -> object:
    """The LSTM trained on one simulated fleet, loaded the way the server serves it."""
    from server.models import ModelKind
    from server.models.inference import serving_class
    from server.models.registry import ModelRegistry
    from server.models.train import train_failure_model
    from server.models.train_config import TrainConfig
    from server.models.windows import WindowConfig, build_windows

    fleet, series = load_fleet_series(n_miners, days, seed)
    miners = {m.miner_id: m for m in fleet.miners}
    windows = build_windows(series, miners, fleet.failures, fleet.planned_states, WindowConfig())
    result = train_failure_model(windows, TrainConfig(epochs=epochs, seed=seed, threads=1))
    registry = ModelRegistry(out_dir)
    version = registry.save(result.to_artifact(job_id="bench"))
    return serving_class(ModelKind.LSTM).from_registry(registry, version)


def explained_failures(
    predictor: object, n_miners: int, days: float, seed: int, before_h: float
) -> list[tuple[FailureMode, list[RiskFactor]]]:
    """(true mode, the window's risk factors) for every hardware failure of a fresh fleet whose window
    ending `before_h` before it has enough samples."""
    fleet, series = load_fleet_series(n_miners, days, seed)
    miners = {m.miner_id: m for m in fleet.miners}
    found = []
    for failure in fleet.failures:
        if failure.mode not in TRUE_MODES:
            continue
        end = failure.occurred_at - timedelta(hours=before_h)
        try:
            batch = predictor.prepare(series[failure.miner_id], miners[failure.miner_id], end, end)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - too early in the history: no window to explain
            continue
        if len(batch.window_ends) != 1:
            continue
        found.append((FailureMode(failure.mode), predictor.explain(batch, 0)))  # type: ignore[attr-defined]
    return found


def confusion(
    cases: Sequence[tuple[FailureMode, list[RiskFactor]]], rule: ModeRule
) -> Counter[tuple[int, int]]:
    return Counter((int(mode), int(rule(factors))) for mode, factors in cases)


def table(counts: Counter[tuple[int, int]]) -> list[str]:
    """The confusion as a markdown table: rows the simulator's mode, columns the named one."""
    lines = [
        "| simulated \\ named | " + " | ".join(m.name for m in NAMED) + " | right |",
        "|---|" + "---:|" * (len(NAMED) + 1),
    ]
    for mode in TRUE_MODES:
        row = [counts[(int(mode), int(named))] for named in NAMED]
        total = sum(row)
        if not total:
            continue
        right = f"{counts[(int(mode), int(mode))]}/{total}" if mode in NAMEABLE else "n/a"
        lines.append(f"| {mode.name} | " + " | ".join(str(c) for c in row) + f" | {right} |")
    return lines


def accuracy(counts: Counter[tuple[int, int]]) -> tuple[int, int]:
    """(right, total) over failures of the nameable modes."""
    total = sum(c for (mode, _), c in counts.items() if FailureMode(mode) in NAMEABLE)
    right = sum(c for (mode, named), c in counts.items() if mode == named and FailureMode(mode) in NAMEABLE)
    return right, total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=60)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--train-seed", type=int, default=9)
    parser.add_argument("--seeds", type=int, nargs="+", default=[6, 7, 8])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--before", type=float, default=1.0, help="hours before the failure")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        predictor = train_predictor(args.miners, args.days, args.train_seed, args.epochs, Path(tmp))
        cases = [
            case
            for seed in args.seeds
            for case in explained_failures(predictor, args.miners, args.days, seed, args.before)
        ]
    counts = confusion(cases, likely_failure_mode)
    right, total = accuracy(counts)
    command = "python -m bench.explain_modes " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Likely failure mode of `?explain=true` against the simulator's modes",
        "",
        f"`{command.strip()}` ({time.perf_counter() - started:.0f} s). LSTM trained on fleet seed "
        f"{args.train_seed} ({args.miners} miners, {args.days:g} days, {args.epochs} epochs); explained: "
        f"every hardware failure of fleet seeds {', '.join(map(str, args.seeds))} at the window ending "
        f"{args.before:g} h before it.",
        "",
        f"Named right: **{right}/{total}** ({right / max(total, 1):.0%}) of the failures of the nameable "
        f"modes ({', '.join(m.name for m in NAMEABLE)}).",
        "",
        *table(counts),
        "",
    ]
    report = "\n".join(lines)
    if args.out:
        args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
