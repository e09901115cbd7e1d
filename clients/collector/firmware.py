"""Maps cgminer-family API replies of each firmware to one `Reading` in our units (TH/s, C, RPM, W).

Field names per firmware (as the firmware spells them):

- Stock Antminer (bmminer, cgminer 4.x): summary `GHS 5s` / `GHS av` (GH/s, often as strings);
  stats entry with `chain_rateN` (GH/s), `tempN` (PCB), `temp2_N` (chip), or on newer models
  `temp_pcbN` / `temp_chipN` ("62-61-77-76", one value per sensor), `fanN` (RPM) and `fan_num`,
  `Type` (the model, e.g. "Antminer S19 Pro").
- Braiins OS (bosminer): summary `MHS 1m` / `MHS 5s` (MH/s); devs per board `MHS 1m`; `temps`
  with `Board` / `Chip` per board ID; `fans` with `RPM`; `tunerstatus` with
  `ApproximateMinerPowerConsumption` (W) and `PowerLimit` (W).
- Whatsminer (btminer): summary `MHS 1m`, `Power` (W, -1 when unknown), `Fan Speed In` /
  `Fan Speed Out` (RPM), `Temperature`; devs per board (`Slot`/`ASC`) `MHS 1m`, `Temperature`,
  `Chip Temp Avg`.

The hardware model: stock Antminer names it in `stats` (`Type`, asked every poll). Braiins OS and
Whatsminer name it in `devdetails` (`Model` of each board entry: "Bitmain Antminer S19j Pro",
"M30S+_VE40"); older Whatsminer API 2 firmware without it answers `get_version` (`Msg.miner_type`).
Those are asked once per miner (`MODEL_COMMANDS`, `parse_model`): a miner's model does not change.

A reading absent from the reply stays None (the server stores it as missing, never as 0).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

GH_PER_TH: Final = 1e3
MH_PER_TH: Final = 1e6


class Firmware(enum.Enum):
    ANTMINER = "antminer"  # stock Bitmain bmminer / cgminer
    BRAIINS = "braiins"  # Braiins OS bosminer
    WHATSMINER = "whatsminer"  # MicroBT btminer


# The commands each firmware needs beyond `summary`, which is always sent first.
EXTRA_COMMANDS: Final[Mapping[Firmware, tuple[str, ...]]] = {
    Firmware.ANTMINER: ("stats",),
    Firmware.BRAIINS: ("devs", "temps", "fans", "tunerstatus"),
    Firmware.WHATSMINER: ("devs",),
}


# The commands that name the hardware model, asked in order until one does (once per miner).
MODEL_COMMANDS: Final[Mapping[Firmware, tuple[str, ...]]] = {
    Firmware.ANTMINER: (),  # `stats`, asked every poll, carries `Type`
    Firmware.BRAIINS: ("devdetails",),
    Firmware.WHATSMINER: ("devdetails", "get_version"),
}


@dataclass(frozen=True, slots=True)
class BoardReading:
    """One hash board: index 0-based in the miner's board order."""

    index: int
    hashrate_ths: float | None = None
    temperature_c: float | None = None
    chip_temperature_c: float | None = None


@dataclass(slots=True)
class Reading:
    """One sample of one miner, timestamped by the collector's UTC clock."""

    miner_id: str
    timestamp: datetime
    firmware: Firmware
    hashrate_ths: float | None = None
    temperature_c: float | None = None
    fan_speed_rpm: float | None = None
    power_w: float | None = None
    accepted_shares: int | None = None
    rejected_shares: int | None = None
    boards: list[BoardReading] = field(default_factory=list)
    fan_speeds_rpm: list[float] = field(default_factory=list)
    hardware_model: str = ""


def number(value: Any) -> float | None:
    """A finite float from a number or numeric string; None for "", null, NaN and junk."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def sensor_max(value: Any) -> float | None:
    """The hottest of a dash-separated sensor string ("62-61-77-76") or a single number; 0 is no sensor."""
    if isinstance(value, str) and "-" in value.strip("-"):
        readings = [number(part) for part in value.split("-")]
    else:
        readings = [number(value)]
    present = [r for r in readings if r is not None and r > 0]
    return max(present) if present else None


def _positive(value: Any) -> float | None:
    result = number(value)
    return result if result is not None and result > 0 else None


def _count(value: Any) -> int | None:
    result = number(value)
    return int(result) if result is not None and result >= 0 else None


def _first_entry(reply: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    entries = (reply or {}).get(key)
    if isinstance(entries, list) and entries and isinstance(entries[0], Mapping):
        return entries[0]
    return {}


def _entries(reply: Mapping[str, Any] | None, key: str) -> list[Mapping[str, Any]]:
    entries = (reply or {}).get(key)
    return [e for e in entries if isinstance(e, Mapping)] if isinstance(entries, list) else []


def _first_number(entry: Mapping[str, Any], keys: Iterable[str]) -> float | None:
    for key in keys:
        value = number(entry.get(key))
        if value is not None:
            return value
    return None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _max(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def detect_firmware(summary: Mapping[str, Any]) -> Firmware:
    """Which firmware answered, from summary's STATUS Description, falling back to its field names."""
    status = _first_entry(summary, "STATUS")
    description = str(status.get("Description", "")).lower()
    if "bos" in description:  # "BOSminer bosminer-plus-tuner 0.2.0", "BOSer boser-buildroot ..."
        return Firmware.BRAIINS
    if "btminer" in description or "whatsminer" in description:
        return Firmware.WHATSMINER
    if "bmminer" in description or "cgminer" in description:
        return Firmware.ANTMINER
    fields = _first_entry(summary, "SUMMARY")
    if "Fan Speed In" in fields or "Power" in fields:
        return Firmware.WHATSMINER
    if "MHS 1m" in fields:
        return Firmware.BRAIINS
    return Firmware.ANTMINER


def _summary_fields(reading: Reading, summary: Mapping[str, Any]) -> Mapping[str, Any]:
    fields = _first_entry(summary, "SUMMARY")
    reading.accepted_shares = _count(fields.get("Accepted"))
    reading.rejected_shares = _count(fields.get("Rejected"))
    return fields


def parse_antminer(reading: Reading, summary: Mapping[str, Any], stats: Mapping[str, Any] | None) -> None:
    fields = _summary_fields(reading, summary)
    ghs = _first_number(fields, ("GHS 5s", "GHS av"))
    reading.hashrate_ths = ghs / GH_PER_TH if ghs is not None else None
    # STATS[0] is the version block (with `Type`), the readings are in the entry with chain fields.
    entries = _entries(stats, "STATS")
    for entry in entries:
        if isinstance(entry.get("Type"), str) and not reading.hardware_model:
            reading.hardware_model = entry["Type"]
    board_stats = next((e for e in entries if any(str(k).startswith("chain_rate") for k in e)), None)
    if board_stats is None:
        return
    chains = sorted(
        int(match.group(1))
        for key in board_stats
        if (match := re.fullmatch(r"chain_rate(\d+)", str(key))) and number(board_stats[key]) is not None
    )
    for index, chain in enumerate(chains):
        ghs_board = number(board_stats.get(f"chain_rate{chain}"))
        pcb = sensor_max(board_stats.get(f"temp_pcb{chain}")) or _positive(board_stats.get(f"temp{chain}"))
        chip = sensor_max(board_stats.get(f"temp_chip{chain}")) or _positive(
            board_stats.get(f"temp2_{chain}")
        )
        reading.boards.append(
            BoardReading(
                index=index,
                hashrate_ths=ghs_board / GH_PER_TH if ghs_board is not None else None,
                temperature_c=pcb,
                chip_temperature_c=chip,
            )
        )
    # fanN slots are sparse (an S9 reports fan1..fan8 with two populated); `fan_num` says how many
    # fans the miner has, so a stopped fan (0 RPM) still counts instead of vanishing.
    slots = sorted(
        (int(match.group(1)), number(value) or 0.0)
        for key, value in board_stats.items()
        if (match := re.fullmatch(r"fan(\d+)", str(key)))
    )
    spinning = [rpm for _, rpm in slots if rpm > 0]
    expected = _count(board_stats.get("fan_num"))
    if expected is not None and len(spinning) < expected:
        spinning += [0.0] * (expected - len(spinning))
    reading.fan_speeds_rpm = spinning
    reading.fan_speed_rpm = _mean(spinning)
    reading.temperature_c = _max(b.chip_temperature_c for b in reading.boards) or _max(
        b.temperature_c for b in reading.boards
    )
    reading.power_w = _positive(fields.get("Power")) or _positive(board_stats.get("total_power"))


def parse_braiins(
    reading: Reading,
    summary: Mapping[str, Any],
    devs: Mapping[str, Any] | None,
    temps: Mapping[str, Any] | None,
    fans: Mapping[str, Any] | None,
    tunerstatus: Mapping[str, Any] | None,
) -> None:
    fields = _summary_fields(reading, summary)
    mhs = _first_number(fields, ("MHS 1m", "MHS 5s", "MHS av"))
    reading.hashrate_ths = mhs / MH_PER_TH if mhs is not None else None
    # Boards are keyed by ID (1..3, or 6..8 on S9) in devs and temps alike.
    hashrates: dict[int, float | None] = {}
    for dev in _entries(devs, "DEVS"):
        board_id = _count(dev.get("ID"))
        if board_id is not None:
            board_mhs = _first_number(dev, ("MHS 1m", "MHS 5s", "MHS av"))
            hashrates[board_id] = board_mhs / MH_PER_TH if board_mhs is not None else None
    temperatures: dict[int, tuple[float | None, float | None]] = {}
    for temp in _entries(temps, "TEMPS"):
        board_id = _count(temp.get("ID"))
        if board_id is not None:
            temperatures[board_id] = (_positive(temp.get("Board")), _positive(temp.get("Chip")))
    for index, board_id in enumerate(sorted(hashrates.keys() | temperatures.keys())):
        board_temp, chip_temp = temperatures.get(board_id, (None, None))
        reading.boards.append(BoardReading(index, hashrates.get(board_id), board_temp, chip_temp))
    reading.fan_speeds_rpm = [
        rpm for fan in _entries(fans, "FANS") if (rpm := number(fan.get("RPM"))) is not None
    ]
    reading.fan_speed_rpm = _mean(reading.fan_speeds_rpm)
    reading.temperature_c = _max(b.chip_temperature_c for b in reading.boards) or _max(
        b.temperature_c for b in reading.boards
    )
    tuner = _first_entry(tunerstatus, "TUNERSTATUS")
    # The tuner's estimate of wall power; PowerLimit is the target, used only when no estimate is given.
    reading.power_w = _positive(tuner.get("ApproximateMinerPowerConsumption")) or _positive(
        tuner.get("PowerLimit")
    )


def parse_whatsminer(reading: Reading, summary: Mapping[str, Any], devs: Mapping[str, Any] | None) -> None:
    fields = _summary_fields(reading, summary)
    mhs = _first_number(fields, ("MHS 1m", "MHS 5s", "MHS av"))
    reading.hashrate_ths = mhs / MH_PER_TH if mhs is not None else None
    reading.power_w = _positive(fields.get("Power"))  # -1 when the PSU does not report
    fans = [number(fields.get(key)) for key in ("Fan Speed In", "Fan Speed Out")]
    reading.fan_speeds_rpm = [rpm for rpm in fans if rpm is not None and rpm >= 0]
    reading.fan_speed_rpm = _mean(reading.fan_speeds_rpm)
    boards = sorted(
        ((_count(dev.get("Slot", dev.get("ASC"))), dev) for dev in _entries(devs, "DEVS")),
        key=lambda pair: -1 if pair[0] is None else pair[0],
    )
    for index, (_, dev) in enumerate(boards):
        board_mhs = _first_number(dev, ("MHS 1m", "MHS 5s", "MHS av"))
        reading.boards.append(
            BoardReading(
                index=index,
                hashrate_ths=board_mhs / MH_PER_TH if board_mhs is not None else None,
                temperature_c=_positive(dev.get("Temperature")),
                chip_temperature_c=_positive(dev.get("Chip Temp Avg")),
            )
        )
    reading.temperature_c = (
        _max(b.chip_temperature_c for b in reading.boards)
        or _positive(fields.get("Chip Temp Avg"))
        or _max(b.temperature_c for b in reading.boards)
        or _positive(fields.get("Temperature"))
    )


def parse_model(firmware: Firmware, reply: Mapping[str, Any]) -> str:
    """The hardware model named in a `devdetails` or `get_version` reply, or "" when it names none.

    Braiins OS: "Bitmain Antminer S19j Pro" -> "Antminer S19j Pro". Whatsminer: the model before
    the board variant, with the make: "M30S+_VE40" -> "Whatsminer M30S+" (the server's hardware
    catalogue knows models, not board variants).
    """
    names = [str(entry.get("Model", "")).strip() for entry in _entries(reply, "DEVDETAILS")]
    message = reply.get("Msg")
    if isinstance(message, Mapping):  # btminer's get_version: {"Msg": {"miner_type": ...}}
        names.append(str(message.get("miner_type", "")).strip())
    name = next((n for n in names if n), "")
    if not name:
        return ""
    if firmware is Firmware.WHATSMINER:
        model = re.split(r"[_.\s]", name, maxsplit=1)[0]
        return model if model.lower().startswith("whatsminer") else f"Whatsminer {model}"
    return re.sub(r"^bitmain\s+", "", name, flags=re.IGNORECASE)


def parse_reading(
    miner_id: str, timestamp: datetime, summary: Mapping[str, Any], extra: Mapping[str, Mapping[str, Any]]
) -> Reading:
    """One Reading from `summary` and the firmware's extra replies by command (missing ones skipped)."""
    firmware = detect_firmware(summary)
    reading = Reading(miner_id=miner_id, timestamp=timestamp, firmware=firmware)
    if firmware is Firmware.ANTMINER:
        parse_antminer(reading, summary, extra.get("stats"))
    elif firmware is Firmware.BRAIINS:
        parse_braiins(
            reading,
            summary,
            extra.get("devs"),
            extra.get("temps"),
            extra.get("fans"),
            extra.get("tunerstatus"),
        )
    else:
        parse_whatsminer(reading, summary, extra.get("devs"))
    return reading
