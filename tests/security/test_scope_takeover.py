"""Identity resolution never moves or changes a miner the caller may not see (issue 11, item 1).

A token scoped to site-a names another site's miner by its serial or MAC, under an id it may touch
(its own miner, or a new id in its own site). Before the fix the store merged them: the victim's site,
model and nominal figures were rewritten and the id became its alias. The audit names the miner changed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tests.security.conftest import SiteStack

VICTIM, VICTIM_SERIAL, VICTIM_MAC = "192.168.1.104", "SIM000004", "02:00:00:00:00:04"


def _victim(sites: SiteStack) -> dict[str, object]:
    reply = sites.rest("GET", f"/api/advanced/miners/{VICTIM}", token="admin")
    assert reply.status == 200, reply.body
    return dict(reply.json())


def test_upsert_naming_another_sites_serial_or_mac_changes_nothing(sites: SiteStack) -> None:
    before = _victim(sites)
    attempts = [
        ("10.66.0.1", {"serial": VICTIM_SERIAL}),  # a new id in the token's own site
        ("10.66.0.2", {"mac": VICTIM_MAC}),
        ("192.168.1.100", {"serial": VICTIM_SERIAL}),  # the token's own miner
        ("192.168.1.101", {"mac": VICTIM_MAC.upper().replace(":", "-")}),
    ]
    for miner_id, identity in attempts:
        body = {
            "hardware_model": "Takeover 9000",
            "site": "site-a",
            "nominal_hashrate_ths": 1.0,
            "nominal_power_w": 1.0,
            **identity,
        }
        reply = sites.rest("PUT", f"/api/advanced/miners/{miner_id}", body)
        assert reply.status == 403, (miner_id, identity, reply.status, reply.body)
        assert "scope" in reply.json()["message"]
    after = _victim(sites)
    assert after == before
    # The attempted ids did not become the victim's aliases, nor miners of their own.
    for miner_id in ("10.66.0.1", "10.66.0.2"):
        assert sites.rest("GET", f"/api/advanced/miners/{miner_id}", token="admin").status == 404
    own = sites.rest("GET", "/api/advanced/miners/192.168.1.100", token="admin").json()
    assert own["miner_id"] == "192.168.1.100" and own["serial"] == "SIM000000"


def test_samples_cannot_take_another_sites_alias_or_serial(sites: SiteStack) -> None:
    """A sample under a new id carrying the victim's serial, and one under the victim's IP alias
    carrying the token's own serial, are refused; the victim keeps its aliases."""
    # The victim moved to 10.67.0.5 (an admin write under its serial): that IP is now its alias.
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    moved = sites.rest(
        "POST",
        "/api/advanced/metrics",
        {
            "samples": [
                {"miner_id": "10.67.0.5", "serial": VICTIM_SERIAL, "timestamp": now, "hashrate_ths": 99}
            ]
        },
        token="admin",
    )
    assert moved.status == 200, moved.body
    for sample in (
        {"miner_id": "10.67.0.6", "serial": VICTIM_SERIAL},
        {"miner_id": "10.67.0.5", "serial": "SIM000000"},  # the victim's alias, the token's own serial
        {"miner_id": "192.168.1.100", "mac": VICTIM_MAC},
    ):
        reply = sites.rest(
            "POST", "/api/advanced/metrics", {"samples": [{**sample, "timestamp": now, "hashrate_ths": 1}]}
        )
        assert reply.status == 400, (sample, reply.status, reply.body)
    alias = sites.rest("GET", "/api/advanced/miners/10.67.0.5", token="admin").json()
    assert alias["miner_id"] == VICTIM


def test_audit_names_the_miner_an_upsert_changed(sites: SiteStack) -> None:
    """An admin's upsert under a new IP with a known serial changes that serial's miner: the audit
    line says which miner changed, not only the id in the path."""
    reply = sites.rest(
        "PUT",
        "/api/advanced/miners/10.68.0.1",
        {"hardware_model": "Antminer S19 Pro", "serial": "SIM000003"},
        token="admin",
    )
    assert reply.status == 200 and reply.json()["miner_id"] == "192.168.1.103", reply.body
    entries = [json.loads(line) for line in (sites.data_dir / "audit.log").read_text().splitlines()]
    upserts = [e for e in entries if e["action"] == "upsert_miner" and e.get("miner_id") == "10.68.0.1"]
    assert upserts and upserts[-1]["changed_miner_id"] == "192.168.1.103", upserts
    refused = [e for e in entries if e["action"] == "upsert_miner" and e.get("miner_id") == "10.66.0.1"]
    assert refused and refused[-1]["outcome"] == "PERMISSION_DENIED"
