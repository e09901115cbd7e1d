"""Console timings in a real browser on a large fleet: navigation to a rendered fleet page, and a
live update from ingestion through the stream to the open page. Numbers, not tests.

    .venv/bin/python -m bench.console_timing --miners 10000 --days 1

Seeds a simulated fleet, activates the known-answer fixture model (tests/console/fixture_model.py,
so every miner is scored without training), starts the server and Envoy, opens the console in
Debian's chromium and reads the page's own performance marks (fleet-rendered,
fleet-live-rendered), so polling adds nothing to the figures.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

from bench.run import seed
from server.models import ModelKind
from server.models.calibration import PlattCalibration
from server.models.features import INPUT_SCHEMA, NormStats
from server.models.lstm import FailureRiskConfig, FailureRiskLSTM
from server.models.registry import ModelRegistry
from server.models.result import TrainingResult
from server.models.windows import WindowConfig
from tests.console.conftest import CHROMIUM, hot_reading
from tests.console.fixture_model import temperature_model
from tests.harness import start_stack


def fixture_lstm(registry: ModelRegistry) -> str:
    """Registers and activates the fixture model on untrained shapes (it only reads temperature)."""
    channels = len(INPUT_SCHEMA)
    mean = np.zeros(channels, dtype=np.float32)
    std = np.ones(channels, dtype=np.float32)
    mean[INPUT_SCHEMA.index("temperature")], std[INPUT_SCHEMA.index("temperature")] = 70.0, 8.0
    module = FailureRiskLSTM(FailureRiskConfig(n_inputs=channels))
    base = TrainingResult(
        kind=ModelKind.LSTM,
        state_dict=module.state_dict(),
        model_args=asdict(module.cfg),
        window=WindowConfig(),
        train_config={},
        norm=NormStats(mean, std),
        metrics={},
        data_range=("", ""),
        data_hash="",
        calibration=PlattCalibration(),
    ).to_artifact("bench")
    version = registry.save(temperature_model(base))
    registry.activate(ModelKind.LSTM, version)
    return version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--miners", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--updates", type=int, default=5, help="live updates to time")
    parser.add_argument(
        "--data-dir", type=Path, help="reuse a seeded data dir (seeding 10k miners takes minutes)"
    )
    parser.add_argument("--screenshot", type=Path, help="save the fleet page (1280x800) here, at the end")
    args = parser.parse_args()

    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="mfh-console-bench-"))
    registry = ModelRegistry(data_dir / "models")
    if not (data_dir / "fleet.duckdb").exists():
        seconds = seed(data_dir, args.miners, args.days)
        print(f"seeded {args.miners} miners x {args.days} days in {seconds:.0f} s")
    if registry.active_version(ModelKind.LSTM) is None:
        fixture_lstm(registry)
    started = time.perf_counter()
    stack = start_stack(data_dir, demo_miners=args.miners, log_level="WARNING")
    print(f"server and envoy up in {time.perf_counter() - started:.1f} s")
    try:
        # Measure the steady state an operator meets: start-up scoring of the whole fleet done.
        # (A few miners may lack the history for a window: wait until the count stops growing.)
        deadline, counts = time.monotonic() + 1800, [-1]
        while time.monotonic() < deadline:
            scored = stack.rest("GET", "/api/advanced/miners?page_size=1&min_risk_level=LOW").json()["total"]
            counts.append(scored)
            if scored >= args.miners or (scored > 0 and counts[-3:] == [scored] * 3):
                break
            time.sleep(5)
        print(f"{scored} miners scored {time.perf_counter() - started:.0f} s after start")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            loads, completes = [], []
            for _ in range(3):
                page.goto(stack.http_base + "/")
                page.wait_for_function(
                    "() => performance.getEntriesByName('fleet-complete').length > 0", timeout=300_000
                )
                marks = page.evaluate(
                    "() => ['fleet-rendered', 'fleet-complete']"
                    ".map(n => performance.getEntriesByName(n)[0].startTime)"
                )
                loads.append(marks[0])
                completes.append(marks[1])
                shown = page.locator(".summary").inner_text()
            print(f"navigation -> first rows rendered (ms): {', '.join(f'{v:.0f}' for v in loads)}")
            print(
                "navigation -> whole fleet loaded and rendered (ms): "
                + ", ".join(f"{v:.0f}" for v in completes)
            )
            print(f"page says: {shown}")
            page.wait_for_function(
                "() => document.querySelector('#live').dataset.state === 'live'", timeout=60_000
            )
            page.get_by_role("button", name="Map by site").click()
            started_map = page.evaluate("() => performance.now()")
            page.wait_for_selector("section.site canvas")
            map_ms = page.evaluate("() => performance.now()") - started_map
            print(f"switch to the map view ({args.miners} cells): {map_ms:.0f} ms")
            page.get_by_role("button", name="List").click()

            latencies = []
            targets = page.locator("table.fleet tbody tr").evaluate_all(
                "(rows, n) => rows.slice(-n).map(r => r.dataset.minerId)", args.updates
            )
            for miner_id in targets:
                page.evaluate("() => performance.clearMarks('fleet-live-rendered')")
                sent = page.evaluate("() => performance.timeOrigin + performance.now()")
                hot_reading(stack, miner_id)
                page.wait_for_function(
                    "id => performance.getEntriesByName('fleet-live-rendered')"
                    ".some(m => m.detail.includes(id))",
                    arg=miner_id,
                    timeout=60_000,
                )
                shown_at = page.evaluate(
                    "id => performance.timeOrigin + performance.getEntriesByName('fleet-live-rendered')"
                    ".find(m => m.detail.includes(id)).startTime",
                    miner_id,
                )
                latencies.append(shown_at - sent)
                level = page.locator(f'tr[data-miner-id="{miner_id}"] td.risk').inner_text()
                assert level == "Critical", level
            print(
                f"ingest (REST) -> update rendered on the open page (ms): "
                f"{', '.join(f'{v:.0f}' for v in latencies)}; median {statistics.median(latencies):.0f}"
            )
            if args.screenshot:  # after the updates: the riskiest miners on top
                page.wait_for_timeout(3000)  # the highlight of fresh rows fades
                page.screenshot(path=str(args.screenshot))
            browser.close()
    finally:
        stack.close()


if __name__ == "__main__":
    main()
