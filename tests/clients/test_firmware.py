"""Each firmware's replies, read over TCP from a fake miner, land in the right fields and units."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clients.collector.collector import MinerTarget, read_miner
from clients.collector.firmware import BoardReading, Firmware, Reading, number, parse_model, sensor_max
from tests.clients.conftest import MinerFactory
from tests.clients.fake_miners import FIRMWARE_REPLIES, INVALID_COMMAND

POLLED_AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


async def read(fake_miner: MinerFactory, firmware: str, **overrides: bytes) -> Reading:
    miner = await fake_miner({**FIRMWARE_REPLIES[firmware], **overrides})
    return await read_miner(MinerTarget("127.0.0.1", miner.port), timeout=5, now=POLLED_AT)


async def test_antminer_s9_bmminer_maps_ghs_chains_and_sparse_fans(fake_miner: MinerFactory) -> None:
    reading = await read(fake_miner, "antminer_s9")
    assert reading.firmware is Firmware.ANTMINER
    assert reading.hardware_model == "Antminer S9"
    assert reading.hashrate_ths == pytest.approx(13.61225)  # "GHS 5s": "13612.25" GH/s
    assert (reading.accepted_shares, reading.rejected_shares) == (18431, 27)
    # chains 6..8 become boards 0..2; tempN is the PCB, temp2_N the chips; chain_rate1 "" is no board.
    assert reading.boards == [
        BoardReading(0, pytest.approx(4.52116), 58.0, 73.0),
        BoardReading(1, pytest.approx(4.55032), 61.0, 77.0),
        BoardReading(2, pytest.approx(4.54077), 57.0, 71.0),
    ]
    assert reading.temperature_c == 77.0  # hottest chip
    assert reading.fan_speeds_rpm == [5880.0, 6120.0]  # fan3 and fan6 of eight slots, fan_num 2
    assert reading.fan_speed_rpm == 6000.0
    assert reading.power_w is None  # stock bmminer does not report power: missing, not 0
    assert reading.timestamp == POLLED_AT
    assert reading.miner_id.startswith("127.0.0.1:")


async def test_antminer_s19_reads_sensor_strings(fake_miner: MinerFactory) -> None:
    reading = await read(fake_miner, "antminer_s19")
    assert reading.hardware_model == "Antminer S19 Pro"
    assert reading.hashrate_ths == pytest.approx(110.25033)
    assert [b.hashrate_ths for b in reading.boards] == pytest.approx([36.75011, 36.80002, 36.7002])
    assert [(b.temperature_c, b.chip_temperature_c) for b in reading.boards] == [(60, 77), (61, 78), (59, 76)]
    assert reading.temperature_c == 78.0
    assert reading.fan_speeds_rpm == [5400.0, 5460.0, 5520.0, 5400.0]


async def test_antminer_stopped_fan_counts_as_zero_rpm(fake_miner: MinerFactory) -> None:
    from tests.clients.fake_miners import S9_STATS_BOARDS, S9_STATS_VERSION, dumps, status

    stats = dict(S9_STATS_BOARDS, fan6=0)
    reply = dumps({"STATUS": status("CGMiner stats", "bmminer 1.0.0"), "STATS": [S9_STATS_VERSION, stats]})
    reading = await read(fake_miner, "antminer_s9", stats=reply)
    assert reading.fan_speeds_rpm == [5880.0, 0.0]
    assert reading.fan_speed_rpm == 2940.0


async def test_braiins_os_maps_mhs_temps_fans_and_tuner_power(fake_miner: MinerFactory) -> None:
    reading = await read(fake_miner, "braiins")
    assert reading.firmware is Firmware.BRAIINS
    assert reading.hashrate_ths == pytest.approx(13.99)  # "MHS 1m": 13990000 MH/s
    assert (reading.accepted_shares, reading.rejected_shares) == (4200, 3)
    assert reading.boards == [
        BoardReading(0, pytest.approx(4.66), 53.0, 68.0),
        BoardReading(1, pytest.approx(4.67), 55.0, 70.5),
        BoardReading(2, pytest.approx(4.66), 52.0, 67.0),
    ]
    assert reading.temperature_c == 70.5
    assert reading.fan_speeds_rpm == [4380.0, 4320.0]
    assert reading.power_w == 1290.0  # ApproximateMinerPowerConsumption, not the 1350 W PowerLimit
    assert reading.hardware_model == "Antminer S9"  # devdetails' "Bitmain Antminer S9"


async def test_braiins_without_tunerstatus_keeps_power_missing(fake_miner: MinerFactory) -> None:
    reading = await read(fake_miner, "braiins", tunerstatus=INVALID_COMMAND)
    assert reading.power_w is None
    assert reading.hashrate_ths == pytest.approx(13.99)  # the rest of the reading survives


async def test_whatsminer_maps_summary_power_fans_and_slot_boards(fake_miner: MinerFactory) -> None:
    reading = await read(fake_miner, "whatsminer")  # its summary carries raw control characters
    assert reading.firmware is Firmware.WHATSMINER
    assert reading.hashrate_ths == pytest.approx(86.01)
    assert reading.power_w == 3310.0
    assert reading.fan_speeds_rpm == [4890.0, 4860.0]  # Fan Speed In, Fan Speed Out
    assert reading.fan_speed_rpm == 4875.0
    assert [(b.index, b.temperature_c, b.chip_temperature_c) for b in reading.boards] == [
        (0, 72.0, 79.5),
        (1, 73.5, 81.0),
        (2, 71.0, 78.0),
    ]
    assert [b.hashrate_ths for b in reading.boards] == pytest.approx([28.67, 28.69, 28.65])
    assert reading.temperature_c == 81.0
    assert (reading.accepted_shares, reading.rejected_shares) == (1234, 5)
    assert reading.hardware_model == "Whatsminer M30S"  # devdetails' "M30S_VE10"


async def test_whatsminer_without_a_model_in_devdetails_asks_get_version(fake_miner: MinerFactory) -> None:
    from tests.clients.fake_miners import WM_GET_VERSION, dumps

    reading = await read(
        fake_miner, "whatsminer", devdetails=INVALID_COMMAND, get_version=dumps(WM_GET_VERSION)
    )
    assert reading.hardware_model == "Whatsminer M50S++"


async def test_a_firmware_that_names_no_model_leaves_it_empty(fake_miner: MinerFactory) -> None:
    reading = await read(fake_miner, "braiins", devdetails=INVALID_COMMAND)
    assert reading.hardware_model == ""  # the server registers it as "unknown"
    assert reading.hashrate_ths == pytest.approx(13.99)


async def test_a_model_learnt_earlier_is_not_asked_again(fake_miner: MinerFactory) -> None:
    miner = await fake_miner(FIRMWARE_REPLIES["whatsminer"])
    target = MinerTarget("127.0.0.1", miner.port)
    reading = await read_miner(target, timeout=5, now=POLLED_AT, hardware_model="Whatsminer M30S")
    assert reading.hardware_model == "Whatsminer M30S" and miner.commands["devdetails"] == 0


@pytest.mark.parametrize(
    ("firmware", "reply", "model"),
    [
        (Firmware.BRAIINS, {"DEVDETAILS": [{"Model": "Bitmain Antminer S19j Pro"}]}, "Antminer S19j Pro"),
        (Firmware.BRAIINS, {"DEVDETAILS": [{"Model": ""}, {"Model": "Antminer S9"}]}, "Antminer S9"),
        (Firmware.WHATSMINER, {"DEVDETAILS": [{"Model": "M30S+_VE40"}]}, "Whatsminer M30S+"),
        (Firmware.WHATSMINER, {"Msg": {"miner_type": "M60S"}}, "Whatsminer M60S"),
        (Firmware.WHATSMINER, {"DEVDETAILS": [{"Name": "SM"}]}, ""),
        (Firmware.BRAIINS, {"Msg": "invalid cmd"}, ""),
    ],
)
def test_parse_model_reads_each_firmwares_naming(
    firmware: Firmware, reply: dict[str, object], model: str
) -> None:
    assert parse_model(firmware, reply) == model


@pytest.mark.parametrize(
    ("value", "expected"),
    [("4521.16", 4521.16), (12, 12.0), ("", None), (None, None), ("nan", None), (True, None)],
)
def test_number_accepts_numeric_strings_only(value: object, expected: float | None) -> None:
    assert number(value) == expected


def test_sensor_max_takes_the_hottest_present_sensor() -> None:
    assert sensor_max("62-61-77-76") == 77.0
    assert sensor_max("0-0-0-0") is None
    assert sensor_max(58) == 58.0
