"""Ingestion over REST through real Envoy: JSON metrics, aliases in paths, feedback, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Stack, start_stack
from tests.ingest.builders import at
from tests.ingest.conftest import QUIET


@pytest.fixture(scope="module")
def rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(Path(tmp_path_factory.mktemp("rest")), **QUIET)
    yield running
    running.close()


def sample_json(miner_id: str, step: int, **fields: object) -> dict[str, object]:
    return {
        "miner_id": miner_id,
        "timestamp": at(step).isoformat().replace("+00:00", "Z"),
        "hashrate_ths": 100.0,
        "temperature_c": 70.0,
        "fan_speed_rpm": 4000,
        "power_w": 3200,
        "accepted_shares": str(1000 * (step + 1)),  # int64: a JSON string or number
        "rejected_shares": 5 * (step + 1),
        **fields,
    }


def test_metrics_post_stores_a_json_batch_and_resolves_a_moved_miner(rest: Stack) -> None:
    identity = {"serial": "SN-REST-1", "hardware_model": "Whatsminer M30S"}
    body = {"samples": [sample_json("10.8.0.1", step, **identity) for step in range(2)], "batch_id": "r1"}
    reply = rest.rest("POST", "/api/advanced/metrics", body)
    assert reply.status == 200, reply.body
    assert reply.json() == {
        "written": 2,
        "duplicates": 0,
        "miners_registered": 1,
        "batch_id": "r1",
        "kept_raw": 2,
        "kept_hourly": 0,
        "conflicts": 0,
        "conflict_details": [],
    }
    again = rest.rest("POST", "/api/advanced/metrics", body)
    assert again.json() == {
        "written": 0,
        "duplicates": 2,
        "miners_registered": 0,
        "batch_id": "r1",
        "kept_raw": 2,
        "kept_hourly": 0,
        "conflicts": 0,
        "conflict_details": [],
    }
    # The miner moves to 10.8.0.2; its history stays on one miner, found by the new IP.
    moved = {"samples": [sample_json("10.8.0.2", step, **identity) for step in range(2, 4)]}
    assert rest.rest("POST", "/api/advanced/metrics", moved).json()["miners_registered"] == 0
    miner = rest.rest("GET", "/api/advanced/miners/10.8.0.2")
    assert miner.status == 200, miner.body
    assert (miner.json()["miner_id"], miner.json()["hardware_model"]) == ("10.8.0.1", "Whatsminer M30S")
    assert len(rest.server.app.store.read_samples("10.8.0.2")) == 4
    # Scoring paths resolve the alias too: no model yet (400), not an unknown miner (404).
    predicted = rest.rest("GET", "/api/advanced/predict/failure-risk/10.8.0.2")
    assert predicted.status == 400 and predicted.json()["details"][0]["reason"] == "MODEL_NOT_TRAINED"


def test_metrics_post_with_bad_samples_is_400_naming_each_field(rest: Stack) -> None:
    body = {"samples": [sample_json("10.8.1.1", 0), sample_json("10.8.1.1", 1, temperature_c=900)]}
    reply = rest.rest("POST", "/api/advanced/metrics", body)
    assert reply.status == 400
    error = reply.json()
    assert error["code"] == 3 and error["message"].startswith("1 invalid field(s): samples[1].temperature_c")
    bad = next(d for d in error["details"] if d["@type"].endswith("BadRequest"))
    assert [v["field"] for v in bad["field_violations"]] == ["samples[1].temperature_c"]
    assert rest.rest("GET", "/api/advanced/miners/10.8.1.1").status == 404


def test_feedback_post_records_a_verdict(rest: Stack) -> None:
    rest.rest("POST", "/api/advanced/metrics", {"samples": [sample_json("10.8.2.1", 0)]})
    reply = rest.rest(
        "POST",
        "/api/advanced/feedback",
        {"miner_id": "10.8.2.1", "verdict": "FEEDBACK_VERDICT_FALSE_ALARM", "note": "dusty filter only"},
    )
    assert reply.status == 200, reply.body
    body = reply.json()
    assert (body["miner_id"], body["verdict"], body["model_version"], body["note"]) == (
        "10.8.2.1",
        "FEEDBACK_VERDICT_FALSE_ALARM",
        "",
        "dusty filter only",
    )
    assert rest.server.app.store.list_feedback("10.8.2.1")[0]["feedback_id"] == body["feedback_id"]
