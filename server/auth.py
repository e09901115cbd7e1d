"""Who is calling and what they may see: bearer tokens, roles, miner scopes, and the token-mint CLI.

Tokens live in a JSON file named by the setting auth_tokens_file:

    {"tokens": [{"name": "ops", "sha256": "<hex>", "roles": ["reader", "trainer"],
                 "miners": ["192.168.1.100", "site:site-a"]}]}

Only the SHA-256 of each token is stored. A plain hash (no salt, no slow KDF) is enough because the
tokens are 256-bit random strings minted by `python -m server.auth mint`: nothing to guess or to
look up in a dictionary. Hashes are compared in constant time.

The transport's auth interceptor resolves the caller to a `Principal` and sets it in a context
variable for the call (asyncio.to_thread copies it into worker threads). The domain asks one service,
server/domain/access.py, wherever a miner is named, so a token scoped to some miners sees nothing
else: other miners answer NOT_FOUND exactly like miners that do not exist.

The default fails closed: code that runs without a caller's principal is NOBODY and sees no miner.
Background work (warm-up, rescoring, housekeeping, outage scans) runs under `acting_as(SYSTEM)`.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import enum
import hashlib
import hmac
import json
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from server.records import Miner

SITE_PREFIX = "site:"
TOKEN_BYTES = 32


class Role(enum.StrEnum):
    """What a token may do; roles add up."""

    READER = "reader"
    """Predict, detect, status, list and get miners, models, jobs and failures, score, subscribe."""
    WRITER = "writer"
    """Write telemetry, failures, planned states, feedback, miners."""
    TRAINER = "trainer"
    """Train, cancel jobs, activate model versions."""


ADMIN = "admin"  # shorthand in the tokens file for every role


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one RPC: a token's name (or the peer address when auth is off) and its rights."""

    name: str
    roles: frozenset[Role]
    miner_ids: frozenset[str] | None = None
    """Miners this principal may see; None with sites None = every miner."""
    sites: frozenset[str] | None = None
    authenticated: bool = False

    @property
    def scoped(self) -> bool:
        return self.miner_ids is not None or self.sites is not None

    def has(self, role: Role) -> bool:
        return role in self.roles

    def can_see(self, miner: Miner) -> bool:
        """Whether this principal may know that `miner` exists."""
        if not self.scoped:
            return True
        return miner.miner_id in (self.miner_ids or ()) or miner.site in (self.sites or ())


NOBODY = Principal(name="nobody", roles=frozenset(), miner_ids=frozenset(), sites=frozenset())
"""Who runs code that no caller and no background task claimed: no role, no miner."""
SYSTEM = Principal(name="system", roles=frozenset(Role))
"""The server's own background work: warm-up, rescoring, housekeeping, outage scans."""

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal", default=NOBODY)


def current() -> Principal:
    """The caller of the RPC being served; NOBODY where no one set one (fails closed)."""
    return _current.get()


def set_current(principal: Principal) -> contextvars.Token[Principal]:
    return _current.set(principal)


def reset_current(token: contextvars.Token[Principal]) -> None:
    _current.reset(token)


@contextlib.contextmanager
def acting_as(principal: Principal) -> Iterator[None]:
    """Runs the body (and the tasks and threads it starts, which copy the context) as `principal`."""
    token = _current.set(principal)
    try:
        yield
    finally:
        _current.reset(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenFileError(ValueError):
    """The tokens file is missing, unreadable or malformed."""


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    principal: Principal


class TokenStore:
    """The tokens of a tokens file; `resolve` maps a presented token to its Principal."""

    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def load(cls, path: Path) -> TokenStore:
        try:
            mode = Path(path).stat().st_mode
        except OSError as exc:
            raise TokenFileError(f"auth tokens file {path}: {exc}") from exc
        if mode & 0o022:
            raise TokenFileError(
                f"auth tokens file {path}: others can write it (mode {mode & 0o777:o}), so they could add "
                f"a token; chmod 600 {path}"
            )
        try:
            document = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise TokenFileError(f"auth tokens file {path}: {exc}") from exc
        raw = document.get("tokens") if isinstance(document, dict) else None
        if not isinstance(raw, list):
            raise TokenFileError(f'auth tokens file {path}: expected {{"tokens": [...]}}')
        entries, names = [], set()
        for index, item in enumerate(raw):
            where = f"auth tokens file {path}, tokens[{index}]"
            if not isinstance(item, dict):
                raise TokenFileError(f"{where}: expected an object")
            name, digest = item.get("name"), item.get("sha256")
            if not isinstance(name, str) or not name:
                raise TokenFileError(f"{where}: 'name' is required")
            if name in names:
                raise TokenFileError(f"{where}: duplicate name {name!r}")
            names.add(name)
            if not isinstance(digest, str) or len(digest) != 64:
                raise TokenFileError(f"{where}: 'sha256' must be 64 hex digits")
            try:
                digest_bytes = bytes.fromhex(digest)
            except ValueError as exc:
                raise TokenFileError(f"{where}: 'sha256' must be 64 hex digits") from exc
            entries.append(_Entry(digest_bytes, _principal(name, item, where)))
        return cls(entries)

    def resolve(self, token: str) -> Principal | None:
        """The token's principal, or None. Compares against every entry in constant time."""
        presented = hashlib.sha256(token.encode()).digest()
        found: Principal | None = None
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.digest):
                found = entry.principal
        return found


def _principal(name: str, item: dict[str, object], where: str) -> Principal:
    roles_raw = item.get("roles", [])
    if not isinstance(roles_raw, list) or not roles_raw:
        raise TokenFileError(f"{where}: 'roles' must list at least one of reader, writer, trainer, admin")
    roles: set[Role] = set()
    for role in roles_raw:
        if role == ADMIN:
            roles.update(Role)
        elif role in Role._value2member_map_:
            roles.add(Role(role))
        else:
            raise TokenFileError(f"{where}: unknown role {role!r} (reader, writer, trainer, admin)")
    scope = item.get("miners")
    if scope is None:
        return Principal(name, frozenset(roles), authenticated=True)
    if not isinstance(scope, list) or not all(isinstance(s, str) and s for s in scope):
        raise TokenFileError(f"{where}: 'miners' must list miner ids and 'site:NAME' entries")
    sites = frozenset(s[len(SITE_PREFIX) :] for s in scope if s.startswith(SITE_PREFIX))
    miner_ids = frozenset(s for s in scope if not s.startswith(SITE_PREFIX))
    return Principal(name, frozenset(roles), miner_ids=miner_ids, sites=sites, authenticated=True)


def mint(name: str, roles: list[str], miners: list[str]) -> tuple[str, dict[str, object]]:
    """A new random token and its tokens-file entry (the token itself is never stored)."""
    token = "mfh_" + secrets.token_urlsafe(TOKEN_BYTES)
    entry: dict[str, object] = {"name": name, "sha256": hash_token(token), "roles": roles}
    if miners:
        entry["miners"] = miners
    _principal(name, entry, "new token")  # validates roles and scope
    return token, entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m server.auth", description="Mint bearer tokens for the tokens file."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    mint_cmd = commands.add_parser("mint", help="print a new token and its tokens-file entry")
    mint_cmd.add_argument("--name", required=True, help="who holds the token (shown in the audit log)")
    mint_cmd.add_argument("--roles", required=True, help="comma-separated: reader,writer,trainer or admin")
    mint_cmd.add_argument(
        "--miners", default="", help="optional scope, comma-separated miner ids and site:NAME entries"
    )
    mint_cmd.add_argument(
        "--add-to", type=Path, default=None, help="append the entry to this tokens file (created if absent)"
    )
    args = parser.parse_args(argv)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    miners = [m.strip() for m in args.miners.split(",") if m.strip()]
    try:
        token, entry = mint(args.name, roles, miners)
    except TokenFileError as exc:
        raise SystemExit(str(exc)) from None
    if args.add_to is not None:
        path: Path = args.add_to
        document = json.loads(path.read_text()) if path.exists() else {"tokens": []}
        if any(t.get("name") == args.name for t in document["tokens"]):
            raise SystemExit(f"{path} already has a token named {args.name!r}")
        document["tokens"].append(entry)
        path.write_text(json.dumps(document, indent=2) + "\n")
        path.chmod(0o600)  # the server refuses a tokens file others can write
        print(f"added {args.name!r} to {path}", file=sys.stderr)
    print(
        f"line 1: the token for {args.name} (shown once, stored nowhere); line 2: its tokens-file entry",
        file=sys.stderr,
    )
    print(token)
    print(json.dumps(entry))


if __name__ == "__main__":
    main()
