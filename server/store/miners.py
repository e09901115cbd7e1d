"""Miner registry: miner rows and the alias table that lets a miner keep its history.

A miner is known by its `miner_id` (usually the IP it was first seen at) and by aliases: every id
it was written under (IPs), its serial and its MAC. Resolution order when a record arrives:
serial, then MAC, then the id itself; the first that is already known names the miner. So a miner
that moves to a new IP, reported with its serial or MAC, keeps its miner_id and history, and the
new IP becomes one more alias. An alias that is some *other* miner's own miner_id is never moved.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from server.errors import MinerNotFound
from server.records import Miner
from server.store.sql import SqlCursor, fetch_one

_MINER_COLUMNS = "miner_id, hardware_model, make, nominal_hashrate_ths, nominal_power_w, serial, mac, site"


def normalize_mac(mac: str) -> str:
    """Lower-case, colon-separated MAC ('AA-BB-..' -> 'aa:bb:..')."""
    return mac.strip().lower().replace("-", ":")


def _id_kind(miner_id: str) -> str:
    try:
        ipaddress.ip_address(miner_id)
    except ValueError:
        return "id"
    return "ip"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def miner_from_row(row: Sequence[object]) -> Miner:
    """A Miner from a row selected as _MINER_COLUMNS."""
    miner_id, model, make, hashrate, power, serial, mac, site = row
    return Miner(
        miner_id=str(miner_id),
        hardware_model=str(model),
        make=str(make),
        nominal_hashrate_ths=float(hashrate),  # type: ignore[arg-type]
        nominal_power_w=float(power),  # type: ignore[arg-type]
        serial=str(serial),
        mac=str(mac),
        site=str(site),
    )


def resolve_many(cur: SqlCursor, aliases: Iterable[str]) -> dict[str, str]:
    """Map each known alias (id, IP, serial or MAC) to its miner_id; unknown ones are left out."""
    wanted = sorted({a for a in aliases} | {normalize_mac(a) for a in aliases})
    if not wanted:
        return {}
    rows = cur.execute(
        "SELECT alias, miner_id FROM miner_aliases WHERE alias IN (SELECT unnest($1::VARCHAR[]))",
        [wanted],
    ).fetchall()
    found = {str(alias): str(miner_id) for alias, miner_id in rows}
    resolved: dict[str, str] = {}
    for alias in set(aliases):
        miner_id = found.get(alias) or found.get(normalize_mac(alias))
        if miner_id is not None:
            resolved[alias] = miner_id
    return resolved


def get_miner(cur: SqlCursor, alias: str) -> Miner | None:
    miner_id = resolve_many(cur, [alias]).get(alias)
    if miner_id is None:
        return None
    row = fetch_one(cur, f"SELECT {_MINER_COLUMNS} FROM miners WHERE miner_id = ?", [miner_id])
    return miner_from_row(row) if row else None


def list_miners(cur: SqlCursor) -> list[Miner]:
    rows = cur.execute(f"SELECT {_MINER_COLUMNS} FROM miners ORDER BY miner_id").fetchall()
    return [miner_from_row(row) for row in rows]


def _add_aliases(cur: SqlCursor, miner_id: str, miner: Miner, now: datetime) -> None:
    aliases = [(miner.miner_id, _id_kind(miner.miner_id))]
    if miner.serial:
        aliases.append((miner.serial.strip(), "serial"))
    if miner.mac:
        aliases.append((normalize_mac(miner.mac), "mac"))
    for alias, kind in aliases:
        if fetch_one(cur, "SELECT 1 FROM miners WHERE miner_id = ? AND miner_id <> ?", [alias, miner_id]):
            continue  # another miner's own id: never repointed
        cur.execute(
            "INSERT INTO miner_aliases (alias, miner_id, kind, seen_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (alias) DO UPDATE SET miner_id = excluded.miner_id, kind = excluded.kind, "
            "seen_at = excluded.seen_at",
            [alias, miner_id, kind, now],
        )


def upsert_miners(cur: SqlCursor, miners: Sequence[Miner]) -> list[str]:
    """Insert or update miners (inside the caller's transaction); returns their miner_ids.

    On update, empty strings and zero nominal values in the incoming record keep the stored value.
    """
    now = _now()
    miner_ids: list[str] = []
    for miner in miners:
        keys = [k for k in (miner.serial.strip(), normalize_mac(miner.mac), miner.miner_id) if k]
        found = resolve_many(cur, keys)
        miner_id = next((found[k] for k in keys if k in found), None)
        if miner_id is None:
            miner_id = miner.miner_id
            cur.execute(
                f"INSERT INTO miners ({_MINER_COLUMNS}, registered_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    miner_id,
                    miner.hardware_model,
                    miner.make,
                    miner.nominal_hashrate_ths,
                    miner.nominal_power_w,
                    miner.serial.strip(),
                    normalize_mac(miner.mac),
                    miner.site,
                    now,
                    now,
                ],
            )
        else:
            cur.execute(
                """
                UPDATE miners SET
                    hardware_model = coalesce(nullif($2, ''), hardware_model),
                    make = coalesce(nullif($3, ''), make),
                    nominal_hashrate_ths = coalesce(nullif($4, 0), nominal_hashrate_ths),
                    nominal_power_w = coalesce(nullif($5, 0), nominal_power_w),
                    serial = coalesce(nullif($6, ''), serial),
                    mac = coalesce(nullif($7, ''), mac),
                    site = coalesce(nullif($8, ''), site),
                    updated_at = $9
                WHERE miner_id = $1
                """,
                [
                    miner_id,
                    miner.hardware_model,
                    miner.make,
                    miner.nominal_hashrate_ths,
                    miner.nominal_power_w,
                    miner.serial.strip(),
                    normalize_mac(miner.mac),
                    miner.site,
                    now,
                ],
            )
        _add_aliases(cur, miner_id, miner, now)
        miner_ids.append(miner_id)
    return miner_ids


def lookup(cur: SqlCursor, aliases: Iterable[str]) -> dict[str, Miner]:
    """Each known alias (id, IP, serial or MAC) -> its miner's record; unknown ones are left out."""
    resolved = resolve_many(cur, aliases)
    if not resolved:
        return {}
    rows = cur.execute(
        f"SELECT {_MINER_COLUMNS} FROM miners WHERE miner_id IN (SELECT unnest($1::VARCHAR[]))",
        [sorted(set(resolved.values()))],
    ).fetchall()
    records = {m.miner_id: m for m in map(miner_from_row, rows)}
    return {alias: records[miner_id] for alias, miner_id in resolved.items() if miner_id in records}


def resolve_batch(
    cur: SqlCursor,
    given: Sequence[str],
    identities: Mapping[str, Miner],
    *,
    auto_register: bool,
    default_model: str,
) -> tuple[dict[str, str], int]:
    """Map the ids a sample batch was written under to miner_ids (inside the caller's transaction).

    `identities` optionally gives, per written id, the serial, MAC and hardware model the samples
    carried. Each id resolves as upsert_miners does (serial, then MAC, then the id); the id, serial
    and MAC that are not yet aliases of that miner become aliases (its other fields are untouched).
    Unknown ids are registered from their identity (hardware model, default_model when it has
    none) when auto_register, else MinerNotFound. Returns (written id -> miner_id, miners registered).
    """
    keys_of: dict[str, list[str]] = {}
    for written in given:
        identity = identities.get(written)
        serial = identity.serial.strip() if identity else ""
        mac = normalize_mac(identity.mac) if identity else ""
        keys_of[written] = [k for k in (serial, mac, written) if k]
    found = resolve_many(cur, [k for keys in keys_of.values() for k in keys])
    resolved: dict[str, str] = {}
    unknown: list[str] = []
    new_aliases: list[Miner] = []
    for written, keys in keys_of.items():
        miner_id = next((found[k] for k in keys if k in found), None)
        if miner_id is None:
            unknown.append(written)
            continue
        resolved[written] = miner_id
        identity = identities.get(written)
        if identity is not None and any(found.get(k) != miner_id for k in keys):
            new_aliases.append(Miner(written, "", serial=identity.serial, mac=identity.mac))
    if unknown and not auto_register:
        raise MinerNotFound(sorted(unknown)[0])
    upsert_miners(cur, new_aliases)
    registered: set[str] = set()
    for written in sorted(unknown):
        identity = identities.get(written) or Miner(written, default_model)
        record = replace(identity, miner_id=written, hardware_model=identity.hardware_model or default_model)
        # One by one: two ids of one batch with the same serial register one miner.
        (miner_id,) = upsert_miners(cur, [record])
        resolved[written] = miner_id
        registered.add(miner_id)
    return resolved, len(registered)


def miner_stats(cur: SqlCursor) -> dict[str, tuple[int, datetime | None]]:
    rows = cur.execute(
        """
        SELECT m.miner_id, coalesce(s.n, 0), s.last_ts
        FROM miners m
        LEFT JOIN (SELECT miner_id, count(*) AS n, max(ts) AS last_ts FROM samples GROUP BY miner_id) s
            USING (miner_id)
        ORDER BY m.miner_id
        """
    ).fetchall()
    return {
        str(miner_id): (int(n), last_ts.replace(tzinfo=UTC) if last_ts is not None else None)
        for miner_id, n, last_ts in rows
    }
