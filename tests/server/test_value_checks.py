"""Every value is checked before it is stored (issue 11, item 3), through Envoy as users send them.

Numbers must be finite and physically possible, strings have a length limit, path and body agree,
and feedback names a model version that exists. Each refusal is a 400 naming the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import wait_for_job
from tests.harness import Response, Stack, start_stack


@pytest.fixture(scope="module")
def values_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(Path(tmp_path_factory.mktemp("values")))
    yield running
    running.close()


def _fields(reply: Response) -> list[str]:
    for detail in reply.json().get("details", []):
        if detail["@type"].endswith("BadRequest"):
            return [v["field"] for v in detail["field_violations"]]
    return []


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nominal_hashrate_ths", "Infinity"),
        ("nominal_hashrate_ths", "NaN"),
        ("nominal_hashrate_ths", 1e12),
        ("nominal_power_w", "Infinity"),
        ("nominal_power_w", 1e9),
    ],
)
def test_upsert_refuses_non_finite_or_impossible_nominal_values(
    values_stack: Stack, field: str, value: object
) -> None:
    reply = values_stack.rest(
        "PUT", "/api/advanced/miners/10.70.0.1", {"hardware_model": "Antminer S19 Pro", field: value}
    )
    assert reply.status == 400, reply.body
    assert _fields(reply) == [f"miner.{field}"], reply.body
    assert values_stack.rest("GET", "/api/advanced/miners/10.70.0.1").status == 404


@pytest.mark.parametrize("field", ["hardware_model", "site", "make"])
def test_upsert_refuses_overlong_strings(values_stack: Stack, field: str) -> None:
    body = {"hardware_model": "Antminer S19 Pro", field: "x" * 100_000}
    reply = values_stack.rest("PUT", "/api/advanced/miners/10.70.0.2", body)
    assert reply.status == 400, reply.body[:300]
    assert _fields(reply) == [f"miner.{field}"]
    assert "at most 128 characters" in reply.json()["message"]
    assert len(reply.body) < 4096
    assert values_stack.rest("GET", "/api/advanced/miners/10.70.0.2").status == 404


def test_board_readings_are_checked_like_the_miner_readings(values_stack: Stack) -> None:
    sample = {
        "miner_id": "10.70.0.3",
        "timestamp": _now(),
        "hashrate_ths": 100.0,
        "boards": [
            {"index": -5, "hashrate_ths": -1, "temperature_c": 1e9},
            {"index": 1, "chip_temperature_c": "Infinity"},
            {"index": 1, "hashrate_ths": 30.0},
        ],
    }
    reply = values_stack.rest("POST", "/api/advanced/metrics", {"samples": [sample]})
    assert reply.status == 400, reply.body
    assert _fields(reply) == [
        "samples[0].boards[0].index",
        "samples[0].boards[0].hashrate_ths",
        "samples[0].boards[0].temperature_c",
        "samples[0].boards[1].chip_temperature_c",
        "samples[0].boards[2].index",
    ], reply.body
    assert values_stack.rest("GET", "/api/advanced/miners/10.70.0.3").status == 404
    good = {**sample, "boards": [{"index": 0, "hashrate_ths": 33.0, "temperature_c": 65.0}]}
    assert values_stack.rest("POST", "/api/advanced/metrics", {"samples": [good]}).status == 200


def test_sample_identity_strings_have_a_length_limit(values_stack: Stack) -> None:
    sample = {
        "miner_id": "10.70.0.4",
        "timestamp": _now(),
        "hashrate_ths": 90.0,
        "hardware_model": "S" * 100_000,
    }
    reply = values_stack.rest("POST", "/api/advanced/metrics", {"samples": [sample]})
    assert reply.status == 400, reply.body[:300]
    assert _fields(reply) == ["samples[0].hardware_model"]
    assert len(reply.body) < 4096


def test_train_path_and_body_must_name_the_same_model_kind(values_stack: Stack) -> None:
    reply = values_stack.rest("POST", "/api/advanced/train/lstm", {"model_kind": "AUTOENCODER", "epochs": 1})
    assert reply.status == 400, reply.body
    assert _fields(reply) == ["model_kind"]
    assert "path" in reply.json()["message"]
    jobs = values_stack.rest("GET", "/api/advanced/train/jobs").json()
    assert jobs.get("jobs", []) == []
    # The same kind twice is no conflict (the body may repeat the path).
    agree = values_stack.rest("POST", "/api/advanced/train/lstm", {"model_kind": "LSTM", "epochs": 1})
    assert agree.status == 200, agree.body
    assert agree.json()["model_kind"] == "LSTM"
    wait_for_job(values_stack, agree.json()["job_id"])  # not left running when the stack stops


def test_feedback_names_a_model_version_that_exists(values_stack: Stack) -> None:
    reply = values_stack.rest(
        "POST",
        "/api/advanced/feedback",
        {
            "miner_id": "192.168.1.100",
            "verdict": "FEEDBACK_VERDICT_CONFIRMED",
            "model_version": "lstm-never-trained",
        },
    )
    assert reply.status == 400, reply.body
    assert _fields(reply) == ["model_version"]
    assert "GET /api/advanced/models" in reply.json()["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/advanced/failures", {"miner_id": "192.168.1.101", "mode": "FAILURE_MODE_FAN"}),
        (
            "/api/advanced/planned-states",
            {
                "miner_id": "192.168.1.101",
                "kind": "PLANNED_STATE_KIND_MAINTENANCE",
                "start": "2026-01-01T00:00:00Z",
                "end": "2026-01-01T01:00:00Z",
            },
        ),
    ],
)
def test_an_overlong_note_is_refused_not_cut(values_stack: Stack, path: str, body: dict[str, str]) -> None:
    """A note over 1000 characters used to be stored cut to 1000, silently."""
    reply = values_stack.rest("POST", path, {**body, "note": "n" * 5000})
    assert reply.status == 400, reply.body[:300]
    assert _fields(reply) == ["note"]
    assert "at most 1000 characters" in reply.json()["message"]
    assert values_stack.rest("POST", path, {**body, "note": "n" * 1000}).status == 200
