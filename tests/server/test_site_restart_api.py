"""A site-wide restart (a firmware update) through DetectAnomalies: one site event, not miner anomalies.

A fleet of the simulator with firmware updates only (no failures, heat waves or pool incidents) is
written to the server's DuckDB file before it starts; the autoencoder trains through REST; then the
range around one firmware update of the second site is detected for one of its miners.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from server.domain.anomaly_decision import DEFAULT_DECISION
from server.sim import seed_store, simulate_fleet
from server.sim.settings import SETTINGS
from server.store import Store
from tests.conftest import wait_for_job
from tests.harness import start_stack

FIRMWARE_ONLY = replace(
    SETTINGS,
    failures_per_miner_day=1e-9,
    network_trouble_per_miner_day=0.0,
    pool_incidents_per_fleet_day=0.0,
    heat_waves_per_fleet_day=0.0,
    drifts_per_miner_day=0.0,
    reboots_per_miner_day=0.0,
    curtailments=0,
    firmware_updates_per_site_day=0.5,
)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_firmware_update_is_one_restart_site_event_and_no_miner_anomalies(tmp_path: Path) -> None:
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    fleet = simulate_fleet(26, 8.0, 32, end=end, settings=FIRMWARE_ONLY)
    updates = sorted(
        (e for e in fleet.site_events if e.kind == "firmware_update" and e.site == "demo-row-2"),
        key=lambda e: e.start,
    )
    # one with two days of history before it and a day after it, and no other update that close
    update = next(
        u
        for u in updates
        if u.start >= fleet.start + timedelta(days=2)
        and u.start <= end - timedelta(hours=24)
        and all(abs((o.start - u.start).total_seconds()) > 36 * 3600 for o in updates if o is not u)
    )
    store = Store.open(tmp_path / "fleet.duckdb")
    try:
        seed_store(store, fleet)
    finally:
        store.close()
    stack = start_stack(tmp_path, seed_demo_fleet=False, gate_autoencoder_min_recall=0.0)
    try:
        reply = stack.rest("POST", "/api/advanced/train/autoencoder", {"epochs": 2, "seed": 5})
        assert reply.status == 200, reply.body
        wait_for_job(stack, reply.json()["job_id"])
        miner = update.miner_ids[1]
        start, stop = update.start - timedelta(hours=2), update.start + timedelta(hours=22)
        reply = stack.rest(
            "GET", f"/api/advanced/detect/anomalies/{miner}?start={_iso(start)}&end={_iso(stop)}"
        )
        assert reply.status == 200, reply.body
        body = reply.json()
        restarts = [e for e in body["site_events"] if e["kind"] == "restart"]
        assert len(restarts) == 1, body["site_events"]
        event = restarts[0]
        assert event["site"] == "demo-row-2" and miner in event["miner_ids"]
        assert event["miners_affected"] >= 0.3 * event["miners_reporting"]
        began = datetime.fromisoformat(event["start"].replace("Z", "+00:00"))
        assert abs((began - update.start).total_seconds()) <= 20 * 60
        windows = body["windows"]
        after = [w for w in windows if datetime.fromisoformat(w["window_end"].replace("Z", "+00:00")) > began]
        assert after and not any(w["is_anomaly"] for w in after)
        warm = began + timedelta(hours=DEFAULT_DECISION.warmup_hours + 0.5)
        for w in after:
            at = datetime.fromisoformat(w["window_end"].replace("Z", "+00:00"))
            if w["deviates"] and at > warm:  # after the warm-up: the site event's, not the miner's
                assert w["suppression"] == "ANOMALY_SUPPRESSION_SITE_EVENT", w
    finally:
        stack.close()
