"""The history routes through Envoy: telemetry on a grid, risk history, the events timeline, range errors."""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from server.records import FEATURE_COLUMNS
from tests.harness import Stack, start_stack
from tests.history.conftest import eventually, train

RAW = ["hashrate_ths", "temperature_c", "fan_speed_rpm", "power_w", "accepted_shares", "rejected_shares"]
DEMO_MINER = "192.168.1.101"
STEP = 300


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _query(**params: object) -> str:
    return "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})


def _sample(miner_id: str, at: datetime, hashrate: float, accepted: int) -> dict[str, Any]:
    return {
        "miner_id": miner_id,
        "timestamp": _iso(at),
        "hashrate_ths": hashrate,
        "temperature_c": 70.0,
        "fan_speed_rpm": 5000.0,
        "power_w": 3200.0,
        "accepted_shares": accepted,
        "rejected_shares": 1,
    }


@pytest.fixture(scope="module")
def history_stack(tmp_path_factory: pytest.TempPathFactory, store_engine: dict[str, str]) -> Iterator[Stack]:
    """A stack whose retention rolls up raw samples more than 5 days older than their miner's newest
    every second (only the hand-written old miner has any), with both models trained through REST;
    once per store engine (DuckDB, PostgreSQL)."""
    running = start_stack(
        Path(tmp_path_factory.mktemp("history-api")),
        raw_retention_days=5.0,
        retention_interval_s=1.0,
        **store_engine,
    )
    try:
        train(running, "lstm", seed=3)
        train(running, "autoencoder", seed=3)
        yield running
    finally:
        running.close()


def _telemetry(stack: Stack, miner_id: str, **params: object) -> dict[str, Any]:
    reply = stack.rest("GET", f"/api/advanced/miners/{miner_id}/telemetry{_query(**params)}")
    assert reply.status == 200, reply.body
    return dict(reply.json())


def _series(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in body["series"] if s["name"] == name)


def test_one_day_of_telemetry_is_the_raw_grid(history_stack: Stack) -> None:
    body = _telemetry(history_stack, DEMO_MINER)  # default: the day before the newest sample
    assert body["miner_id"] == DEMO_MINER and body["step"] == STEP
    n = len(body["times"])
    assert 288 <= n <= 289
    assert [s["name"] for s in body["series"]] == RAW + list(FEATURE_COLUMNS)
    assert {s["kind"] for s in body["series"][:6]} == {"raw"} and {s["kind"] for s in body["series"][6:]} == {
        "feature"
    }
    times = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in body["times"]]
    assert all(b - a == timedelta(seconds=STEP) for a, b in zip(times, times[1:], strict=False))
    assert len(body["samples"]) == len(body["planned"]) == len(body["source"]) == n
    for series in body["series"]:
        assert len(series["min"]) == len(series["mean"]) == len(series["max"]) == n
        for lo, mean, hi in zip(series["min"], series["mean"], series["max"], strict=True):
            if mean is not None:  # one grid row per step: the three statistics agree
                assert lo == pytest.approx(mean) and hi == pytest.approx(mean)
    hashrate = _series(body, "hashrate_ths")["mean"]
    assert sum(body["samples"]) > 200 and sum(v is not None for v in hashrate) > 200
    assert all(s == "raw" for s, n_ in zip(body["source"], body["samples"], strict=True) if n_ > 0)


def test_gaps_are_null_planned_states_marked_and_steps_aggregate(history_stack: Stack) -> None:
    stack = history_stack
    miner = "10.20.30.40"
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    samples = [_sample(miner, base + timedelta(seconds=STEP * i), 100.0 + i, 10 * i) for i in range(12)]
    samples += [_sample(miner, base + timedelta(seconds=STEP * i), 150.0, 10 * i) for i in range(18, 30)]
    assert stack.rest("POST", "/api/advanced/metrics", {"samples": samples}).status == 200
    planned = {
        "miner_id": miner,
        "kind": "PLANNED_STATE_KIND_CURTAILMENT",
        "start": _iso(base + timedelta(seconds=STEP * 20)),
        "end": _iso(base + timedelta(seconds=STEP * 22)),
    }
    assert stack.rest("POST", "/api/advanced/planned-states", planned).status == 200

    body = _telemetry(
        stack, miner, start=_iso(base), end=_iso(base + timedelta(seconds=STEP * 30)), step=STEP
    )
    assert len(body["times"]) == 30
    assert body["samples"] == [1] * 12 + [0] * 6 + [1] * 12
    for series in body["series"]:
        assert series["mean"][12:18] == [None] * 6, series["name"]  # the gap: missing, not interpolated
    assert _series(body, "hashrate_ths")["mean"][:12] == [100.0 + i for i in range(12)]
    assert _series(body, "accepted_shares")["mean"][11] == 110.0  # the raw counter, cumulative
    assert _series(body, "accepted_shares")["mean"][12] is None
    assert _series(body, "hashrate")["mean"][18] == 150.0
    assert body["planned"] == [False] * 20 + [True, True] + [False] * 8
    assert body["source"] == ["raw"] * 12 + [""] * 6 + ["raw"] * 12
    assert [(p["kind"], p["start"]) for p in body["planned_states"]] == [
        ("PLANNED_STATE_KIND_CURTAILMENT", planned["start"])
    ]

    hourly = _telemetry(stack, miner, start=_iso(base), end=_iso(base + timedelta(hours=3)), step=3600)
    assert hourly["samples"] == [12, 6, 6]
    hashrate = _series(hourly, "hashrate_ths")
    assert (hashrate["min"][0], hashrate["mean"][0], hashrate["max"][0]) == (100.0, 105.5, 111.0)
    assert hourly["planned"] == [False, True, False]


def test_thirty_days_come_back_downsampled_within_two_thousand_points(history_stack: Stack) -> None:
    end = datetime.now(UTC) + timedelta(minutes=5)
    body = _telemetry(history_stack, DEMO_MINER, start=_iso(end - timedelta(days=30)), end=_iso(end))
    assert body["step"] % STEP == 0 and body["step"] >= 30 * 86400 / 2000
    n = len(body["times"])
    assert 1000 < n <= 2000
    hashrate = _series(body, "hashrate_ths")
    present = [i for i, v in enumerate(hashrate["mean"]) if v is not None]
    assert present and present[0] > n // 2  # the small fleet has 3 days: earlier steps are gaps
    assert all(body["samples"][i] == 0 for i in range(present[0]))
    assert max(body["samples"]) == body["step"] // STEP  # a full step holds one sample per interval
    for i in present:
        assert hashrate["min"][i] <= hashrate["mean"][i] <= hashrate["max"][i]
    assert any(hashrate["min"][i] < hashrate["max"][i] for i in present)


def test_roll_ups_answer_past_raw_retention(history_stack: Stack) -> None:
    stack = history_stack
    miner = "10.20.30.41"
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=10)
    samples = [
        _sample(miner, base + timedelta(seconds=STEP * i), 100.0 + (i % 12), 10 * i) for i in range(48)
    ]
    # Retention counts from the miner's newest sample: a recent one puts the old ones 10 days past it.
    samples.append(_sample(miner, datetime.now(UTC) - timedelta(minutes=5), 100.0, 1000))
    assert stack.rest("POST", "/api/advanced/metrics", {"samples": samples}).status == 200
    window = {"start": _iso(base), "end": _iso(base + timedelta(hours=4)), "step": 3600}

    def rolled_up() -> dict[str, Any] | None:
        body = _telemetry(stack, miner, **window)
        return body if body["source"] == ["hourly"] * 4 else None

    body = eventually(rolled_up, timeout=60, what="the old samples rolled up")
    assert body["samples"] == [12, 12, 12, 12]
    hashrate = _series(body, "hashrate_ths")
    assert (
        hashrate["mean"] == [105.5] * 4 and hashrate["min"] == [100.0] * 4 and hashrate["max"] == [111.0] * 4
    )
    assert _series(body, "hashrate")["mean"] == [105.5] * 4
    assert _series(body, "temperature_trend")["mean"] == [None] * 4  # needs the raw grid
    assert _series(body, "accepted_shares")["mean"] == [None] * 4  # cumulative counters are not kept
    assert _series(body, "efficiency")["mean"][0] == pytest.approx(105.5 / 3200.0)


def test_risk_history_follows_new_windows_and_not_predictions(history_stack: Stack) -> None:
    stack = history_stack
    status = stack.rest("GET", "/api/advanced/status").json()
    lstm, autoencoder = status["lstm_model_info"]["version"], status["autoencoder_info"]["version"]

    def history() -> list[dict[str, Any]]:
        reply = stack.rest("GET", f"/api/advanced/miners/{DEMO_MINER}/risk-history")
        assert reply.status == 200, reply.body
        return list(reply.json()["points"])

    # Both promotions rescored the fleet; the autoencoder's re-decided the same window.
    first = eventually(lambda: [p for p in history() if p["anomaly_model_version"] == autoencoder] or None)
    assert [p["model_version"] for p in first] == [lstm]
    assert first[0]["risk_level"] in ("LOW", "MEDIUM", "HIGH", "CRITICAL")
    assert 0.0 <= first[0]["risk_score"] <= 1.0 and first[0]["anomaly_score"] > 0.0

    for _ in range(3):  # predictions never write a point
        assert stack.rest("GET", f"/api/advanced/predict/failure-risk/{DEMO_MINER}").status == 200
    assert len(history()) == len(first)

    newest = datetime.fromisoformat(
        stack.rest("GET", f"/api/advanced/miners/{DEMO_MINER}").json()["last_seen"]
    )
    sample = _sample(DEMO_MINER, newest + timedelta(seconds=STEP), 100.0, 10_000_000)
    assert stack.rest("POST", "/api/advanced/metrics", {"samples": [sample]}).status == 200
    points = eventually(lambda: h if len(h := history()) == len(first) + 1 else None)
    times = [p["time"] for p in points]
    assert times == sorted(times) and times[-1] == sample["timestamp"]
    assert points[-1]["model_version"] == lstm
    month = _query(start=_iso(datetime.now(UTC) - timedelta(days=30)))  # only start: end is now
    reply = stack.rest("GET", f"/api/advanced/miners/{DEMO_MINER}/risk-history{month}")
    assert reply.json()["points"] == points


def test_events_timeline_lists_failures_planned_states_and_feedback_in_order(history_stack: Stack) -> None:
    stack = history_stack
    miner = "10.20.30.42"
    now = datetime.now(UTC).replace(microsecond=0)
    assert (
        stack.rest(
            "POST", "/api/advanced/metrics", {"samples": [_sample(miner, now - timedelta(hours=3), 100, 1)]}
        )
    ).status == 200
    failure = {
        "miner_id": miner,
        "occurred_at": _iso(now - timedelta(hours=2)),
        "mode": "FAILURE_MODE_FAN",
        "repaired_at": _iso(now - timedelta(hours=1)),
        "note": "fan replaced",
    }
    assert stack.rest("POST", "/api/advanced/failures", failure).status == 200
    planned = {
        "miner_id": miner,
        "kind": "PLANNED_STATE_KIND_MAINTENANCE",
        "start": _iso(now - timedelta(hours=5)),
        "end": _iso(now - timedelta(hours=4)),
    }
    assert stack.rest("POST", "/api/advanced/planned-states", planned).status == 200
    verdict = {"miner_id": miner, "verdict": "FEEDBACK_VERDICT_CONFIRMED", "note": "was the fan"}
    assert stack.rest("POST", "/api/advanced/feedback", verdict).status == 200

    reply = stack.rest("GET", f"/api/advanced/miners/{miner}/events")
    assert reply.status == 200, reply.body
    events = reply.json()["events"]
    assert [(e["kind"], e["label"]) for e in events] == [
        ("MINER_EVENT_KIND_PLANNED_STATE", "PLANNED_STATE_KIND_MAINTENANCE"),
        ("MINER_EVENT_KIND_FAILURE", "FAILURE_MODE_FAN"),
        ("MINER_EVENT_KIND_FEEDBACK", "FEEDBACK_VERDICT_CONFIRMED"),
    ]
    assert events[1]["end"] == failure["repaired_at"] and events[1]["note"] == "fan replaced"
    narrow = stack.rest(
        "GET", f"/api/advanced/miners/{miner}/events{_query(start=_iso(now - timedelta(minutes=150)))}"
    ).json()["events"]
    assert [e["kind"] for e in narrow] == ["MINER_EVENT_KIND_FAILURE", "MINER_EVENT_KIND_FEEDBACK"]


@pytest.mark.parametrize(
    ("route", "params", "field"),
    [
        ("telemetry", {"start": "2026-11-02T00:00:00Z", "end": "2026-11-01T00:00:00Z"}, "end"),
        ("telemetry", {"start": "2024-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "start"),
        ("telemetry", {"step": 10}, "step"),
        ("telemetry", {"start": "2026-10-01T00:00:00Z", "end": "2026-10-31T00:00:00Z", "step": 600}, "step"),
        ("risk-history", {"start": "2026-11-02T00:00:00Z", "end": "2026-11-02T00:00:00Z"}, "end"),
        ("risk-history", {"start": "2025-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "start"),
        ("events", {"start": "2026-11-02T00:00:00Z", "end": "2026-11-01T00:00:00Z"}, "end"),
    ],
)
def test_bad_ranges_answer_400_naming_the_field(
    history_stack: Stack, route: str, params: dict[str, object], field: str
) -> None:
    reply = history_stack.rest("GET", f"/api/advanced/miners/{DEMO_MINER}/{route}{_query(**params)}")
    assert reply.status == 400, reply.body
    body = reply.json()
    assert body["code"] == 3 and body["message"].startswith(f"{field}:")
    violations = [v for d in body["details"] for v in d.get("field_violations", [])]
    assert [v["field"] for v in violations] == [field]


def test_unknown_miner_answers_404_and_bad_id_400(history_stack: Stack) -> None:
    for route in ("telemetry", "risk-history", "events"):
        missing = history_stack.rest("GET", f"/api/advanced/miners/10.99.99.99/{route}")
        assert missing.status == 404, missing.body
        assert any(d.get("reason") == "MINER_NOT_FOUND" for d in missing.json()["details"])
        unknown_param = history_stack.rest("GET", f"/api/advanced/miners/{DEMO_MINER}/{route}?bogus=1")
        assert unknown_param.status == 400


def test_missing_values_are_json_null_never_nan(history_stack: Stack) -> None:
    body = _telemetry(history_stack, DEMO_MINER)
    for series in body["series"]:
        for value in series["mean"]:
            assert value is None or (isinstance(value, float | int) and math.isfinite(value))
