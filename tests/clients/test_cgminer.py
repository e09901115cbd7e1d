"""The cgminer-family API client: reply decoding with firmware quirks, and the TCP exchange."""

from __future__ import annotations

import pytest

from clients.collector.cgminer import CommandFailed, MalformedReply, MinerUnreachable, decode_reply, query
from tests.clients.conftest import MinerFactory
from tests.clients.fake_miners import INVALID_COMMAND, dumps


def test_trailing_nul_byte_is_stripped() -> None:
    assert decode_reply(b'{"STATUS":[{"STATUS":"S"}],"id":1}\x00') == {"STATUS": [{"STATUS": "S"}], "id": 1}


def test_missing_comma_between_objects_is_repaired() -> None:
    reply = decode_reply(b'{"STATS":[{"Type":"Antminer S9"}{"chain_rate6":"4521.16"}],"id":1}\x00')
    assert reply["STATS"] == [{"Type": "Antminer S9"}, {"chain_rate6": "4521.16"}]


def test_control_characters_are_tolerated() -> None:
    reply = decode_reply(b'{"SUMMARY":[{"Power Mode":"Nor\x02mal",\x01"Power":3310}]}')
    assert reply["SUMMARY"][0]["Power"] == 3310


def test_trailing_commas_are_repaired() -> None:
    assert decode_reply(b'{"FANS":[{"RPM":4380},],"id":1,}') == {"FANS": [{"RPM": 4380}], "id": 1}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"SUMMARY":[{"GHS 5s":', "invalid JSON"),
        (b"Socket connect failed: Connection refused\n", "invalid JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b"\x00", "empty reply"),
    ],
)
def test_unrepairable_reply_is_rejected_cleanly(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedReply, match=message) as caught:
        decode_reply(raw, "10.0.0.1:4028")
    assert caught.value.target == "10.0.0.1:4028"


async def test_query_reads_a_reply_and_sends_the_command(fake_miner: MinerFactory) -> None:
    miner = await fake_miner({"summary": dumps({"STATUS": [{"STATUS": "S"}], "SUMMARY": [{"GHS 5s": 1}]})})
    reply = await query("127.0.0.1", miner.port, "summary", timeout=5)
    assert reply["SUMMARY"] == [{"GHS 5s": 1}]
    assert miner.commands == {"summary": 1}


async def test_query_stops_at_nul_when_the_miner_keeps_the_socket_open(fake_miner: MinerFactory) -> None:
    miner = await fake_miner({"summary": dumps({"STATUS": [{"STATUS": "S"}]}, nul=True)}, keep_open=True)
    assert await query("127.0.0.1", miner.port, "summary", timeout=5) == {"STATUS": [{"STATUS": "S"}]}


async def test_miner_that_closes_without_reply_is_unreachable(fake_miner: MinerFactory) -> None:
    miner = await fake_miner(mode="close")
    with pytest.raises(MinerUnreachable, match="connection closed without a reply"):
        await query("127.0.0.1", miner.port, "summary", timeout=5)


async def test_miner_that_never_answers_times_out(fake_miner: MinerFactory) -> None:
    miner = await fake_miner(mode="hang")
    with pytest.raises(MinerUnreachable, match=r"summary: no reply within 0\.3 s"):
        await query("127.0.0.1", miner.port, "summary", timeout=0.3)
    assert miner.connections == 1


async def test_refused_connection_is_unreachable(fake_miner: MinerFactory) -> None:
    miner = await fake_miner()
    port = miner.port
    await miner.close()
    with pytest.raises(MinerUnreachable, match=f"127.0.0.1:{port}: summary"):
        await query("127.0.0.1", port, "summary", timeout=5)


async def test_error_status_raises_command_failed(fake_miner: MinerFactory) -> None:
    miner = await fake_miner({"tunerstatus": INVALID_COMMAND})
    with pytest.raises(CommandFailed, match="tunerstatus: Invalid command"):
        await query("127.0.0.1", miner.port, "tunerstatus", timeout=5)


async def test_broken_json_over_tcp_is_malformed(fake_miner: MinerFactory) -> None:
    miner = await fake_miner({"summary": b'{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"GHS 5s":"1"'})
    with pytest.raises(MalformedReply, match="invalid JSON"):
        await query("127.0.0.1", miner.port, "summary", timeout=5)
