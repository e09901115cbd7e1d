"""The one miner-access rule (server/domain/access.py): fails closed, system work is explicit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from server import auth
from server.auth import Principal, Role
from server.domain.access import MinerAccess
from server.errors import MinerNotFound
from server.records import Miner
from server.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = Store.open(tmp_path / "fleet.duckdb")
    opened.upsert_miners(
        [
            Miner("10.0.0.1", "Antminer S19 Pro", serial="SER-A", site="site-a"),
            Miner("10.0.0.2", "Antminer S19 Pro", serial="SER-B", site="site-b"),
        ]
    )
    return opened


def _resolve(access: MinerAccess, miner_id: str) -> str:
    return asyncio.run(access.resolve(miner_id)).miner_id


def test_code_without_a_principal_sees_no_miner(store: Store) -> None:
    access = MinerAccess(store)
    with pytest.raises(MinerNotFound):
        _resolve(access, "10.0.0.1")
    assert access.visible(store.list_miners()) == []
    assert access.visible_ids_blocking() == frozenset()
    store.close()


def test_the_system_principal_sees_every_miner_by_id_and_alias(store: Store) -> None:
    access = MinerAccess(store)
    with auth.acting_as(auth.SYSTEM):
        assert _resolve(access, "SER-B") == "10.0.0.2"
        assert access.visible_ids_blocking() is None
    assert auth.current() is auth.NOBODY  # acting_as restores the caller
    store.close()


def test_a_site_scope_resolves_its_own_and_hides_the_rest_like_absent_ones(store: Store) -> None:
    access = MinerAccess(store)
    site_a = Principal("site-a", frozenset({Role.READER}), miner_ids=frozenset(), sites=frozenset({"site-a"}))
    with auth.acting_as(site_a):
        assert _resolve(access, "SER-A") == "10.0.0.1"
        for hidden in ("10.0.0.2", "SER-B", "10.0.0.9"):
            with pytest.raises(MinerNotFound) as caught:
                _resolve(access, hidden)
            assert caught.value.message.replace(hidden, "<id>") == MinerNotFound("<id>").message
        known = store.lookup_miners(["SER-B", "10.0.0.1", "10.0.0.7"])
        assert access.may_claim(["10.0.0.1", "10.0.0.7"], known)
        assert not access.may_claim(["10.0.0.1", "SER-B"], known)
    store.close()
