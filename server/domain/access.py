"""Which miners the caller may see: the one rule every RPC that names a miner goes through.

- `resolve(id or alias)` gives the miner the caller may see, else MinerNotFound: a miner outside the
  caller's scope answers exactly like one that does not exist.
- `visible(miners)` / `visible_ids()` filter lists, counts and stream filters.
- `may_claim(keys, known)` guards identity resolution on writes: every id, serial or MAC a write
  names that already belongs to a miner must belong to one the caller may see, so resolution never
  moves or changes a miner outside the caller's scope (its record, its aliases, its history).

The caller is server.auth.current(): the RPC's principal, SYSTEM for background work, and NOBODY
(sees nothing) for code that runs without either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from server import auth
from server.domain import validation
from server.errors import MinerNotFound
from server.records import Miner
from server.store import FleetStore


class MinerAccess:
    """Resolves ids and aliases to miners for the current caller."""

    def __init__(self, store: FleetStore) -> None:
        self._store = store

    @staticmethod
    def allows(miner: Miner | None) -> bool:
        """Whether the current caller may know that `miner` exists (None: it does not)."""
        return miner is not None and auth.current().can_see(miner)

    @staticmethod
    def scoped() -> bool:
        """Whether the current caller sees only part of the fleet."""
        return auth.current().scoped

    def resolve_blocking(self, miner_id: str, field: str = "miner_id") -> Miner:
        """The miner `miner_id` (an id, IP, serial or MAC) names, if the caller may see it; else
        MinerNotFound. Blocking (store read)."""
        validation.miner_id(miner_id, field)
        miner = self._store.get_miner(miner_id)
        if not self.allows(miner):
            raise MinerNotFound(miner_id)
        assert miner is not None
        return miner

    async def resolve(self, miner_id: str, field: str = "miner_id") -> Miner:
        """`resolve_blocking` in a worker thread."""
        validation.miner_id(miner_id, field)
        return await asyncio.to_thread(self.resolve_blocking, miner_id, field)

    @staticmethod
    def visible(miners: Iterable[Miner]) -> list[Miner]:
        """The miners the caller may see."""
        principal = auth.current()
        return [m for m in miners if principal.can_see(m)]

    def visible_ids_blocking(self) -> frozenset[str] | None:
        """The ids of the miners the caller may see; None when it sees every miner. Blocking."""
        if not self.scoped():
            return None
        return frozenset(m.miner_id for m in self.visible(self._store.list_miners()))

    async def visible_ids(self) -> frozenset[str] | None:
        return await asyncio.to_thread(self.visible_ids_blocking)

    @staticmethod
    def may_claim(keys: Iterable[str], known: Mapping[str, Miner]) -> bool:
        """Whether a write may use these identity keys (id, serial, MAC): each key `known` maps to a
        miner names one the caller may see. Unknown keys are free to claim."""
        principal = auth.current()
        return all(principal.can_see(known[k]) for k in keys if k and k in known)
