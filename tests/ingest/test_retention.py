"""Retention: raw samples older than the retention period *before their miner's newest sample* are
rolled up into hourly rows and deleted; the wall clock never removes imported history, and every
write reports which of its samples stay raw and which are kept only as hourly roll-ups."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from mining.analytics.v1alpha1 import telemetry_pb2, telemetry_pb2_grpc

from server.domain.housekeeping import apply_retention, surely_raw
from server.domain.ingest import MAX_FUTURE
from tests.harness import ServerThread, start_server
from tests.ingest.builders import T0, batch, stamp
from tests.ingest.conftest import QUIET

OLD = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=200)
"""A grid start well past the default 90-day retention by the wall clock."""


def old_sample(miner_id: str, at: datetime, **fields: object) -> telemetry_pb2.MetricSample:
    values: dict[str, object] = {"hashrate_ths": 100.0, "temperature_c": 70.0, "fan_speed_rpm": 4000.0}
    values.update(fields)
    return telemetry_pb2.MetricSample(
        miner_id=miner_id, timestamp=stamp(at), **{k: v for k, v in values.items() if v is not None}
    )


def test_samples_past_retention_roll_up_into_hourly_rows(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    store, settings = server.app.store, server.settings
    counters = [100 * (step + 1) for step in range(18)]
    counters[8:] = [50 * (step - 7) for step in range(8, 18)]  # a reboot at step 8
    telemetry.WriteMetrics(
        batch(
            *(
                old_sample(
                    "10.6.0.1",
                    OLD + timedelta(minutes=5 * step),
                    hashrate_ths=90.0 + step,
                    accepted_shares=acc,
                )
                for step, acc in enumerate(counters)
            )
        )
    )
    # The miner's newest sample, 90 days on and half past the second hour: only the first whole hour
    # is past retention, counted from the data, not from the clock.
    newest = OLD + timedelta(days=settings.raw_retention_days, hours=1, minutes=30)
    reply = telemetry.WriteMetrics(batch(old_sample("10.6.0.1", newest)))
    assert (reply.kept_raw, reply.kept_hourly) == (1, 0)
    assert apply_retention(store, settings) == (1, 12)
    (hour,) = store.read_hourly("10.6.0.1")
    assert (hour["hour"], hour["n_samples"]) == (OLD, 12)
    assert (hour["hashrate_ths_min"], hour["hashrate_ths_mean"], hour["hashrate_ths_max"]) == (
        90.0,
        95.5,
        101.0,
    )
    # Deltas: 100 x 7 up to the reboot, then the new count 50, then 50 x 3; the first has no previous.
    assert hour["accepted_shares_delta"] == 100 * 7 + 50 + 50 * 3
    assert hour["rejected_shares_delta"] is None
    assert hour["quality"] == 1  # partial: power and rejected shares were missing
    assert [s.timestamp for s in store.read_samples("10.6.0.1")] == [
        *(OLD + timedelta(minutes=5 * step) for step in range(12, 18)),
        newest,
    ]
    # Running it again changes nothing; a late sample for a rolled hour is reported as kept hourly,
    # and merged in next time.
    assert apply_retention(store, settings) == (0, 0)
    reply = telemetry.WriteMetrics(batch(old_sample("10.6.0.1", OLD, hashrate_ths=200.0)))
    assert (reply.written, reply.kept_raw, reply.kept_hourly) == (1, 0, 1)
    assert apply_retention(store, settings) == (1, 1)
    (hour,) = store.read_hourly("10.6.0.1")
    assert (hour["n_samples"], hour["hashrate_ths_max"]) == (13, 200.0)
    assert abs(hour["hashrate_ths_mean"] - (95.5 * 12 + 200.0) / 13) < 1e-9  # type: ignore[operator]


def test_imported_history_older_than_retention_by_the_clock_stays_raw(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    """A single machine's months-old history, imported for training: the clock deletes nothing."""
    store, settings = server.app.store, server.settings
    steps = 3 * 12  # three hours, 200 days old
    reply = telemetry.WriteMetrics(
        batch(*(old_sample("10.6.2.1", OLD + timedelta(minutes=5 * step)) for step in range(steps)))
    )
    assert (reply.written, reply.kept_raw, reply.kept_hourly) == (steps, steps, 0)
    apply_retention(store, settings)
    assert len(store.read_samples("10.6.2.1")) == steps
    assert store.read_hourly("10.6.2.1") == []


def test_import_reports_the_history_kept_only_as_hourly_rows(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    """A live miner's year-old history: the part past retention before its newest sample is reported
    as kept hourly in the acknowledgement, and that is what retention then does."""
    store, settings = server.app.store, server.settings
    telemetry.WriteMetrics(batch(old_sample("10.6.3.1", T0)))  # the miner's live data
    horizon = T0 - timedelta(days=settings.raw_retention_days)
    old = [
        horizon - timedelta(hours=3) + timedelta(minutes=5 * step) for step in range(4)
    ]  # past the horizon
    kept = [horizon + timedelta(hours=1, minutes=5 * step) for step in range(3)]  # inside it
    reply = telemetry.WriteMetrics(batch(*(old_sample("10.6.3.1", ts) for ts in [*old, *kept])))
    assert (reply.written, reply.kept_raw, reply.kept_hourly) == (7, 3, 4)
    assert apply_retention(store, settings) == (1, 4)
    assert [s.timestamp for s in store.read_samples("10.6.3.1")] == [*kept, T0]
    assert [h["n_samples"] for h in store.read_hourly("10.6.3.1")] == [4]


def test_the_server_rolls_up_periodically(tmp_path: Path) -> None:
    settings = {**QUIET, "raw_retention_days": 1.0, "retention_interval_s": 0.05}
    running = start_server(tmp_path, **settings)
    try:
        running.app.store.write_samples([])  # nothing to do: an empty store rolls nothing up
        from server.records import Sample

        running.app.store.write_samples(
            [Sample("10.6.1.1", T0 + timedelta(minutes=5 * step), hashrate_ths=100.0) for step in range(3)]
            + [Sample("10.6.1.1", T0 + timedelta(days=1, hours=2), hashrate_ths=100.0)]
        )
        deadline = time.monotonic() + 20
        while running.app.store.counts().samples > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.app.store.counts().samples == 1
        assert [h["n_samples"] for h in running.app.store.read_hourly("10.6.1.1")] == [3]
    finally:
        running.stop()


def test_a_batch_within_retention_of_now_is_all_raw_and_older_ones_are_still_counted(
    server: ServerThread, telemetry: telemetry_pb2_grpc.TelemetryServiceStub
) -> None:
    """Live batches skip the store's horizon query (no stored sample is stamped later than 10 min
    ahead of now); a sample past a miner's horizon is still reported as kept hourly."""
    settings = server.settings
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    retention = timedelta(days=settings.raw_retention_days)

    def raw(at: datetime, bound: datetime) -> bool:
        return surely_raw(np.array([np.datetime64(at.replace(tzinfo=None), "us")]), bound, settings)

    edge = now - retention + timedelta(minutes=20)
    past = now - retention - timedelta(hours=1)
    assert raw(now, now) and raw(edge, now + MAX_FUTURE) and not raw(past, now + MAX_FUTURE)

    telemetry.WriteMetrics(batch(old_sample("10.6.4.1", now)))  # the miner's live data
    reply = telemetry.WriteMetrics(batch(old_sample("10.6.4.1", edge)))
    assert (reply.written, reply.kept_raw, reply.kept_hourly) == (1, 1, 0)
    reply = telemetry.WriteMetrics(batch(old_sample("10.6.4.1", past)))
    assert (reply.written, reply.kept_raw, reply.kept_hourly) == (1, 0, 1)
