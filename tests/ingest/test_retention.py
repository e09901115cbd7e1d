"""Retention: raw samples past the retention period are rolled up into hourly rows and deleted."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from mining.analytics.v1alpha1 import telemetry_pb2_grpc

from server.domain.housekeeping import apply_retention
from tests.harness import ServerThread, start_server
from tests.ingest.builders import T0, batch, metric
from tests.ingest.conftest import QUIET


def test_samples_past_retention_roll_up_into_hourly_rows(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    store, settings = server.app.store, server.settings
    counters = [100 * (step + 1) for step in range(18)]
    counters[8:] = [50 * (step - 7) for step in range(8, 18)]  # a reboot at step 8
    telemetry.WriteMetrics(
        batch(
            *(
                metric("10.6.0.1", step, hashrate_ths=90.0 + step, accepted_shares=acc, rejected_shares=None)
                for step, acc in enumerate(counters)
            )
        )
    )
    # 90 days later, half past the second hour: only the first whole hour is past retention.
    later = T0 + timedelta(days=settings.raw_retention_days, hours=1, minutes=30)
    assert apply_retention(store, settings, now=later) == (1, 12)
    (hour,) = store.read_hourly("10.6.0.1")
    assert (hour["hour"], hour["n_samples"]) == (T0, 12)
    assert (hour["hashrate_ths_min"], hour["hashrate_ths_mean"], hour["hashrate_ths_max"]) == (
        90.0,
        95.5,
        101.0,
    )
    # Deltas: 100 x 7 up to the reboot, then the new count 50, then 50 x 3; the first has no previous.
    assert hour["accepted_shares_delta"] == 100 * 7 + 50 + 50 * 3
    assert hour["rejected_shares_delta"] is None
    assert hour["quality"] == 1  # partial: rejected shares were missing
    assert [s.timestamp for s in store.read_samples("10.6.0.1")] == [
        T0 + timedelta(minutes=5 * step) for step in range(12, 18)
    ]
    # Running it again changes nothing; a late sample for a rolled hour is merged in next time.
    assert apply_retention(store, settings, now=later) == (0, 0)
    telemetry.WriteMetrics(batch(metric("10.6.0.1", 0, hashrate_ths=200.0)))
    assert apply_retention(store, settings, now=later) == (1, 1)
    (hour,) = store.read_hourly("10.6.0.1")
    assert (hour["n_samples"], hour["hashrate_ths_max"]) == (13, 200.0)
    assert abs(hour["hashrate_ths_mean"] - (95.5 * 12 + 200.0) / 13) < 1e-9  # type: ignore[operator]


def test_the_server_rolls_up_periodically(tmp_path: Path) -> None:
    settings = {**QUIET, "raw_retention_days": 1.0, "retention_interval_s": 0.05}
    running = start_server(tmp_path, **settings)
    try:
        running.app.store.write_samples([])  # nothing to do: an empty store rolls nothing up
        from server.records import Sample

        running.app.store.write_samples(
            [Sample("10.6.1.1", T0 + timedelta(minutes=5 * step), hashrate_ths=100.0) for step in range(3)]
        )
        deadline = time.monotonic() + 20
        while running.app.store.counts().samples and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.app.store.counts().samples == 0
        assert [h["n_samples"] for h in running.app.store.read_hourly("10.6.1.1")] == [3]
    finally:
        running.stop()
