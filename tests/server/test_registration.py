"""Registration by hardware model: PUT /api/advanced/miners/{id} with a catalogued model fills make and
nominal hashrate and power unless given; an unknown model is accepted with a warning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Stack, start_stack


@pytest.fixture(scope="module")
def rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(
        Path(tmp_path_factory.mktemp("registration")),
        seed_demo_fleet=False,
        outage_scan_interval_s=0,
        retention_interval_s=0,
    )
    yield running
    running.close()


def put(rest: Stack, miner_id: str, **fields: object) -> dict[str, object]:
    reply = rest.rest("PUT", f"/api/advanced/miners/{miner_id}", {"miner_id": miner_id, **fields})
    assert reply.status == 200, reply.body
    return dict(reply.json())


def test_catalogued_model_fills_make_and_nameplate(rest: Stack) -> None:
    body = put(rest, "10.16.0.1", hardware_model="antminer s19-pro")
    assert (body["hardware_model"], body["make"]) == ("Antminer S19 Pro", "Bitmain")
    assert (body["nominal_hashrate_ths"], body["nominal_power_w"]) == (110.0, 3250.0)
    assert body["warnings"] == []
    stored = rest.rest("GET", "/api/advanced/miners/10.16.0.1").json()
    assert (stored["make"], stored["nominal_hashrate_ths"], stored["nominal_power_w"]) == (
        "Bitmain",
        110.0,
        3250.0,
    )


def test_given_nameplate_values_win_over_the_catalogue(rest: Stack) -> None:
    body = put(
        rest, "10.16.0.2", hardware_model="Whatsminer M30S", nominal_hashrate_ths=80.0, make="MicroBT Inc"
    )
    assert (body["make"], body["nominal_hashrate_ths"], body["nominal_power_w"]) == (
        "MicroBT Inc",
        80.0,
        3230.0,
    )


def test_unknown_model_is_accepted_with_a_warning(rest: Stack) -> None:
    body = put(rest, "10.16.0.3", hardware_model="Avalon A1366")
    assert (body["hardware_model"], body["make"], body["nominal_hashrate_ths"]) == ("Avalon A1366", "", 0.0)
    (warning,) = body["warnings"]
    assert "Avalon A1366" in str(warning) and "catalogue" in str(warning) and "median" in str(warning)
