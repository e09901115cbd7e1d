"""Fake miners: real asyncio TCP servers on 127.0.0.1 that answer the cgminer JSON API like firmware does.

The replies are written for these tests, shaped after captured replies of each firmware (field
names, string-typed numbers, the version block in STATS[0], sparse fanN slots), with their quirks:
bmminer's missing comma between STATS objects and trailing NUL, btminer's raw control characters.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Reply = bytes | Callable[[], bytes]


def status(message: str, description: str) -> list[dict[str, Any]]:
    return [{"STATUS": "S", "When": 1764072000, "Code": 11, "Msg": message, "Description": description}]


def dumps(value: Any, *, nul: bool = False) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode() + (b"\x00" if nul else b"")


# -- stock Antminer S9 (bmminer): GH/s as strings, chains 6..8, temp (PCB) / temp2_ (chip) --------

S9_SUMMARY = {
    "STATUS": status("Summary", "bmminer 1.0.0"),
    "SUMMARY": [
        {
            "Elapsed": 93617,
            "GHS 5s": "13612.25",
            "GHS av": 13575.71,
            "Found Blocks": 0,
            "Getworks": 5624,
            "Accepted": 18431,
            "Rejected": 27,
            "Hardware Errors": 112,
            "Utility": 11.81,
            "Discarded": 179820,
            "Stale": 0,
            "Get Failures": 0,
            "Remote Failures": 0,
            "Network Blocks": 158,
            "Total MH": 1.27e12,
            "Device Hardware%": 0.0005,
            "Device Rejected%": 0.1462,
            "Last getwork": 1764072000,
        }
    ],
    "id": 1,
}
S9_STATS_VERSION = {
    "BMMiner": "2.0.0",
    "Miner": "16.8.1.3",
    "CompileTime": "Fri Nov 17 17:37:49 CST 2017",
    "Type": "Antminer S9",
}
S9_STATS_BOARDS = {
    "STATS": 0,
    "ID": "BC50",
    "Elapsed": 93617,
    "Calls": 0,
    "Wait": 0.0,
    "Max": 0.0,
    "Min": 99999999.0,
    "GHS 5s": "13612.25",
    "GHS av": 13575.71,
    "miner_count": 3,
    "frequency": "650",
    "fan_num": 2,
    "fan1": 0,
    "fan2": 0,
    "fan3": 5880,
    "fan4": 0,
    "fan5": 0,
    "fan6": 6120,
    "fan7": 0,
    "fan8": 0,
    "temp_num": 3,
    "temp1": 0,
    "temp2": 0,
    "temp3": 0,
    "temp4": 0,
    "temp5": 0,
    "temp6": 58,
    "temp7": 61,
    "temp8": 57,
    "temp2_1": 0,
    "temp2_6": 73,
    "temp2_7": 77,
    "temp2_8": 71,
    "temp_max": 61,
    "Device Hardware%": 0.0005,
    "no_matching_work": 112,
    "chain_acn1": 0,
    "chain_acn6": 63,
    "chain_acn7": 63,
    "chain_acn8": 63,
    "chain_acs6": " oooooooo oooooooo oooooooo oooooooo oooooooo oooooooo oooooooo oooooooo",
    "chain_hw6": 41,
    "chain_hw7": 38,
    "chain_hw8": 33,
    "chain_rate1": "",
    "chain_rate6": "4521.16",
    "chain_rate7": "4550.32",
    "chain_rate8": "4540.77",
}


def s9_stats() -> bytes:
    """bmminer's real quirk: the two STATS objects without a comma between them, then a NUL."""
    head = dumps({"STATUS": status("CGMiner stats", "bmminer 1.0.0")})[:-1]
    return head + b',"STATS":[' + dumps(S9_STATS_VERSION) + dumps(S9_STATS_BOARDS) + b'],"id":1}' + b"\x00"


# -- stock Antminer S19 Pro (cgminer 4.x): chains 1..3, temp_pcbN / temp_chipN sensor strings ------

S19_SUMMARY = {
    "STATUS": status("Summary", "cgminer 4.9.2"),
    "SUMMARY": [
        {
            "Elapsed": 1200,
            "GHS 5s": 110250.33,
            "GHS av": 109870.1,
            "Accepted": 512,
            "Rejected": 1,
            "Hardware Errors": 3,
        }
    ],
    "id": 1,
}
S19_STATS = {
    "STATUS": status("CGMiner stats", "cgminer 4.9.2"),
    "STATS": [
        {
            "CGMiner": "4.9.2",
            "Miner": "uart_trans.1.3",
            "CompileTime": "Mon Jun 14 2021",
            "Type": "Antminer S19 Pro",
        },
        {
            "STATS": 0,
            "ID": "BTM_SOC0",
            "Elapsed": 1200,
            "GHS 5s": 110250.33,
            "GHS av": 109870.1,
            "miner_count": 3,
            "fan_num": 4,
            "fan1": 5400,
            "fan2": 5460,
            "fan3": 5520,
            "fan4": 5400,
            "temp_num": 3,
            "temp1": 60,
            "temp2": 61,
            "temp3": 59,
            "temp_pcb1": "45-44-60-59",
            "temp_pcb2": "46-45-61-60",
            "temp_pcb3": "44-43-59-58",
            "temp_chip1": "62-61-77-76",
            "temp_chip2": "63-62-78-77",
            "temp_chip3": "61-60-76-75",
            "chain_acn1": 114,
            "chain_acn2": 114,
            "chain_acn3": 114,
            "chain_rate1": "36750.11",
            "chain_rate2": "36800.02",
            "chain_rate3": "36700.20",
        },
    ],
    "id": 1,
}

# -- Braiins OS (bosminer): MH/s, boards by ID 6..8, temps/fans/tunerstatus commands ---------------

BOS_DESCRIPTION = "BOSminer bosminer-plus-tuner 0.2.0-a8a7bbb"
BOS_SUMMARY = {
    "STATUS": status("Summary", BOS_DESCRIPTION),
    "SUMMARY": [
        {
            "Elapsed": 86400,
            "MHS av": 13980000.0,
            "MHS 5s": 14010000.0,
            "MHS 1m": 13990000.0,
            "MHS 5m": 13985000.0,
            "MHS 15m": 13979000.0,
            "Found Blocks": 0,
            "Getworks": 2200,
            "Accepted": 4200,
            "Rejected": 3,
            "Hardware Errors": 40,
            "Utility": 2.9,
            "Stale": 0,
            "Best Share": 123456789,
        }
    ],
    "id": 1,
}
BOS_DEVS = {
    "STATUS": status("3 ASC(s)", BOS_DESCRIPTION),
    "DEVS": [
        {
            "ASC": i,
            "Name": "BC5",
            "ID": board_id,
            "Enabled": "Y",
            "Status": "Alive",
            "Temperature": 0.0,
            "MHS av": mhs,
            "MHS 5s": mhs,
            "MHS 1m": mhs,
            "MHS 5m": mhs,
            "MHS 15m": mhs,
            "Accepted": 1400,
            "Rejected": 1,
            "Hardware Errors": 13,
        }
        for i, (board_id, mhs) in enumerate(((6, 4660000.0), (7, 4670000.0), (8, 4660000.0)))
    ],
    "id": 1,
}
BOS_TEMPS = {
    "STATUS": status("3 Temp(s)", BOS_DESCRIPTION),
    "TEMPS": [
        {"TEMPS": 0, "ID": 6, "Board": 53.0, "Chip": 68.0},
        {"TEMPS": 1, "ID": 7, "Board": 55.0, "Chip": 70.5},
        {"TEMPS": 2, "ID": 8, "Board": 52.0, "Chip": 67.0},
    ],
    "id": 1,
}
BOS_FANS = {
    "STATUS": status("2 Fan(s)", BOS_DESCRIPTION),
    "FANS": [{"FANS": 0, "ID": 0, "Speed": 70, "RPM": 4380}, {"FANS": 1, "ID": 1, "Speed": 70, "RPM": 4320}],
    "id": 1,
}
BOS_TUNERSTATUS = {
    "STATUS": status("Tuner Status", BOS_DESCRIPTION),
    "TUNERSTATUS": [
        {
            "PowerLimit": 1350,
            "DynamicPowerScaling": "Disabled",
            "ApproximateChainPowerConsumption": 1200,
            "ApproximateMinerPowerConsumption": 1290,
            "TunerChainStatus": [
                {
                    "HashchainIndex": 6,
                    "Iteration": 5,
                    "StageMessage": "Tuning individual chips",
                    "Status": "Stable",
                    "PowerLimit": 400,
                    "ApproximatePowerConsumptionWatt": 400,
                }
            ],
        }
    ],
    "id": 1,
}

# Braiins OS names the model in devdetails, once per hash board.
BOS_DEVDETAILS = {
    "STATUS": status("Device Details", BOS_DESCRIPTION),
    "DEVDETAILS": [
        {
            "DEVDETAILS": i,
            "Name": "BC5",
            "ID": board_id,
            "Driver": "bitmain",
            "Kernel": "",
            "Model": "Bitmain Antminer S9",
            "Device Path": "",
            "Chips": 63,
            "Cores": 7560,
        }
        for i, board_id in enumerate((6, 7, 8))
    ],
    "id": 1,
}

# -- Whatsminer M30S (btminer): MH/s, Power and fans in summary, boards by Slot in devs -------------

WM_SUMMARY = {
    "STATUS": status("Summary", "btminer"),
    "SUMMARY": [
        {
            "Elapsed": 5000,
            "MHS av": 85950000.0,
            "MHS 5s": 86210000.0,
            "MHS 1m": 86010000.0,
            "MHS 5m": 85900000.0,
            "MHS 15m": 85920000.0,
            "Accepted": 1234,
            "Rejected": 5,
            "Temperature": 76.0,
            "freq_avg": 595,
            "Fan Speed In": 4890,
            "Fan Speed Out": 4860,
            "Power": 3310,
            "Power Rate": 38.48,
            "Uptime": 5050,
            "Chip Temp Min": 70.0,
            "Chip Temp Max": 88.0,
            "Chip Temp Avg": 80.4,
            "Power Mode": "Normal",
            "Firmware Version": "'20210322.22.REL'",
            "MAC": "C4:11:04:01:02:03",
        }
    ],
    "Code": 131,
    "id": 1,
}
WM_DEVS = {
    "STATUS": status("3 ASC(s)", "btminer"),
    "DEVS": [
        {
            "ASC": slot,
            "Slot": slot,
            "Enabled": "Y",
            "Status": "Alive",
            "Temperature": temp,
            "Chip Frequency": 595,
            "MHS av": mhs,
            "MHS 5s": mhs,
            "MHS 1m": mhs,
            "MHS 5m": mhs,
            "MHS 15m": mhs,
            "Chip Temp Min": 70.0,
            "Chip Temp Max": 88.0,
            "Chip Temp Avg": chip,
            "Effective Chips": 148,
            "PCB SN": f"HEM2001{slot}",
        }
        for slot, temp, chip, mhs in (
            (0, 72.0, 79.5, 28670000.0),
            (1, 73.5, 81.0, 28690000.0),
            (2, 71.0, 78.0, 28650000.0),
        )
    ],
    "id": 1,
}


# btminer names the model with its board variant after an underscore.
WM_DEVDETAILS = {
    "STATUS": status("Device Details", "btminer"),
    "DEVDETAILS": [
        {
            "DEVDETAILS": slot,
            "Name": "SM",
            "ID": slot,
            "Driver": "bitmicro",
            "Kernel": "",
            "Model": "M30S_VE10",
        }
        for slot in (0, 1, 2)
    ],
    "id": 1,
}
# API 2 firmware: get_version answers in btminer's own shape (Msg is an object), no login needed.
WM_GET_VERSION = {
    "STATUS": "S",
    "When": 1764072000,
    "Code": 131,
    "Msg": {"api_ver": "2.0.5", "fw_ver": "20230911.12.Rel", "platform": "H6OS", "miner_type": "M50S++_VK30"},
    "Description": "",
}


def with_control_chars(reply: Mapping[str, Any]) -> bytes:
    """btminer sometimes puts raw control characters between tokens and inside strings."""
    return dumps(reply).replace(b'"Power Mode"', b'\x01"Power Mode"').replace(b"Normal", b"Nor\x02mal")


FIRMWARE_REPLIES: dict[str, dict[str, Reply]] = {
    "antminer_s9": {"summary": dumps(S9_SUMMARY, nul=True), "stats": s9_stats()},
    "antminer_s19": {"summary": dumps(S19_SUMMARY), "stats": dumps(S19_STATS)},
    "braiins": {
        "summary": dumps(BOS_SUMMARY),
        "devs": dumps(BOS_DEVS),
        "temps": dumps(BOS_TEMPS),
        "fans": dumps(BOS_FANS),
        "tunerstatus": dumps(BOS_TUNERSTATUS),
        "devdetails": dumps(BOS_DEVDETAILS),
    },
    "whatsminer": {
        "summary": with_control_chars(WM_SUMMARY),
        "devs": dumps(WM_DEVS),
        "devdetails": dumps(WM_DEVDETAILS),
    },
}

INVALID_COMMAND = dumps(
    {
        "STATUS": [
            {
                "STATUS": "E",
                "When": 1764072000,
                "Code": 14,
                "Msg": "Invalid command",
                "Description": "cgminer 4.9.2",
            }
        ],
        "id": 1,
    }
)


@dataclass
class FakeMiner:
    """A TCP server on 127.0.0.1:<port 0> answering commands from `replies`.

    `mode` changes the behaviour of every connection: "answer" (reply, and with keep_open leave
    the socket open after the reply), "close" (read the command, hang up without replying),
    "hang" (never answer).
    """

    replies: dict[str, Reply] = field(default_factory=dict)
    mode: str = "answer"
    keep_open: bool = False
    connections: int = 0
    commands: Counter[str] = field(default_factory=Counter)
    server: asyncio.Server | None = None
    _hung: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> FakeMiner:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        for writer in self._hung:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        request = await reader.read(4096)
        if self.mode == "close":
            writer.close()
            return
        if self.mode == "hang":
            self._hung.append(writer)
            return
        command = json.loads(request)["command"]
        self.commands[command] += 1
        reply = self.replies.get(command, INVALID_COMMAND)
        writer.write(reply() if callable(reply) else reply)
        await writer.drain()
        if self.keep_open:
            # Some firmwares end with NUL and leave the socket open; the client must not wait for EOF.
            self._hung.append(writer)
            return
        writer.close()
