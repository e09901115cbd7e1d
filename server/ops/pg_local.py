"""A local PostgreSQL server for tests and the demo: initdb + pg_ctl in a folder, on a loopback port.

`local_postgres()` initialises a cluster (once: a folder that already holds one is reused), starts it
on 127.0.0.1 and a free port (Unix sockets off, so the folder's path length never matters), creates
the database and yields a `LocalPostgres` whose `url` (`postgresql://postgres@127.0.0.1:PORT/mfh`)
the store takes. On exit the server stops; a temporary cluster stops with `-m immediate` (nothing to
keep) and its folder is removed, a kept one (`data_dir=...`) stops with `-m fast` (a clean
checkpoint). Authentication is `trust` on loopback only: a throw-away cluster, never a deployment.

`initdb` and `pg_ctl` refuse to run as root: as root the cluster's folder belongs to, and both run as,
the unprivileged user `postgres` (Debian's package creates it; `make setup` makes sure it exists).
Otherwise they run as the calling user. The binaries are Debian's (`/usr/lib/postgresql/N/bin`, not
on PATH; `make setup` installs the package); MFH_PG_BIN names another folder.

As a command it starts a cluster, runs a program with MFH_STORE set to the cluster's URL, and stops
the cluster when the program exits (`make run-postgres`):

    python -m server.ops.pg_local --data-dir var/postgres -- mining-health-server --with-envoy
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

SERVER_USER = "postgres"
"""The OS user the server runs as when we are root, and the database superuser's name."""
DATABASE = "mfh"
_START_TRIES = 5
_PG_CTL_TIMEOUT_S = 120


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed, or the cluster failed to initialise or start."""


def pg_bin_dir() -> Path:
    """The folder holding initdb and pg_ctl: MFH_PG_BIN, else Debian's newest installed version."""
    override = os.environ.get("MFH_PG_BIN")
    if override:
        return Path(override)
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise PostgresUnavailable(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run `make setup` "
            "(installs Debian's postgresql) or set MFH_PG_BIN to the folder holding initdb and pg_ctl"
        )
    return found[-1].parent


@dataclass(frozen=True, slots=True)
class _RunAs:
    """Who runs initdb, pg_ctl and the server: `postgres` when we are root, else ourselves."""

    uid: int
    gid: int

    @classmethod
    def pick(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls(os.geteuid(), os.getegid())
        try:
            entry = pwd.getpwnam(SERVER_USER)
        except KeyError as exc:
            raise PostgresUnavailable(
                f"running as root, PostgreSQL needs the unprivileged user {SERVER_USER!r}: run `make "
                f"setup` (or `useradd --system {SERVER_USER}`)"
            ) from exc
        return cls(entry.pw_uid, entry.pw_gid)

    def kwargs(self) -> dict[str, Any]:
        """subprocess arguments that drop to this user (nothing to drop when it is us)."""
        if self.uid == os.geteuid():
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def own(self, path: Path) -> None:
        """Hands `path` to this user, who must also be able to reach it through its parents."""
        if self.uid == os.geteuid():
            return
        os.chown(path, self.uid, self.gid)
        reach = subprocess.run(["test", "-w", str(path)], cwd="/", timeout=30, check=False, **self.kwargs())
        if reach.returncode != 0:
            raise PostgresUnavailable(
                f"the user {SERVER_USER!r} cannot reach {path}: a folder above it is private (e.g. 0700); "
                "keep the cluster under folders that others may enter (o+x)"
            )


def _free_loopback_port() -> int:
    """A port free on 127.0.0.1 now; the start retries with another when it was taken meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalPostgres:
    """A running local cluster: `url` names its database; `database_url(name)` another one."""

    root: Path
    port: int
    database: str
    bin_dir: Path
    run_as: _RunAs

    @property
    def url(self) -> str:
        return self.database_url(self.database)

    def database_url(self, name: str) -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{name}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def create_database(self, name: str) -> str:
        """Creates database `name` (when missing) and returns its URL."""
        with psycopg.connect(self.database_url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.database_url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def running(self) -> bool:
        status = self._pg_ctl("status", check=False)
        return status.returncode == 0

    def stop(self, mode: str = "immediate") -> None:
        """Stops the server (`immediate`: no checkpoint; `fast`: a clean shutdown). Idempotent."""
        if (self.data_dir / "postmaster.pid").exists():
            self._pg_ctl("stop", "-w", "-m", mode, check=False)

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(
            self.run_as, [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args], self.root, check
        )


def _run(run_as: _RunAs, argv: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=_PG_CTL_TIMEOUT_S,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
        **run_as.kwargs(),
    )
    if check and done.returncode != 0:
        raise PostgresUnavailable(f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _initdb(run_as: _RunAs, bin_dir: Path, root: Path) -> None:
    _run(
        run_as,
        [
            str(bin_dir / "initdb"),
            "-D",
            str(root / "data"),
            "-U",
            SERVER_USER,
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
        root,
    )


def _start(pg: LocalPostgres, fsync: bool) -> None:
    """Starts on pg.port; retries on a fresh port when that one was taken between probe and bind."""
    for attempt in range(_START_TRIES):
        options = (
            f"-p {pg.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            f"-c fsync={'on' if fsync else 'off'}"
        )
        log_file = pg.root / "server.log"
        started = pg._pg_ctl(
            "start", "-w", "-t", str(_PG_CTL_TIMEOUT_S), "-l", str(log_file), "-o", options, check=False
        )
        if started.returncode == 0:
            return
        log_tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        if "could not bind" in log_tail and attempt + 1 < _START_TRIES:
            pg.port = _free_loopback_port()
            continue
        raise PostgresUnavailable(f"pg_ctl start failed: {started.stderr.strip()}\n{log_tail}")


@contextlib.contextmanager
def local_postgres(
    data_dir: Path | None = None, *, database: str = DATABASE, port: int = 0, fsync: bool | None = None
) -> Iterator[LocalPostgres]:
    """A running cluster with `database` created. `data_dir` keeps the cluster there (created on first
    use, reused after); without it a temporary one is removed on exit. `port` 0 picks a free one.
    `fsync` defaults to on for a kept cluster and off for a temporary one (tests; a benchmark that
    compares durable writes turns it on)."""
    bin_dir = pg_bin_dir()
    run_as = _RunAs.pick()
    temporary = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="mfh-pg-")) if data_dir is None else Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    pg = LocalPostgres(root, port or _free_loopback_port(), database, bin_dir, run_as)
    try:
        run_as.own(root)
        if not (root / "data" / "PG_VERSION").exists():
            _initdb(run_as, bin_dir, root)
        _start(pg, fsync=not temporary if fsync is None else fsync)
        try:
            pg.create_database(database)
            yield pg
        finally:
            pg.stop("immediate" if temporary else "fast")
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


def _wait_child(child: subprocess.Popen[bytes]) -> int:
    """Waits for the child, passing SIGTERM on; Ctrl-C reaches it through the terminal's group."""
    previous = signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                continue  # the child got the same SIGINT; wait for it to shut down
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.ops.pg_local",
        description="Start a local PostgreSQL, run a command with MFH_STORE set to its URL, then stop it.",
    )
    parser.add_argument("--data-dir", type=Path, help="keep the cluster here (default: a temporary one)")
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    parser.add_argument("--database", default=DATABASE, help=f"database to create (default {DATABASE})")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the program to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        with local_postgres(args.data_dir, database=args.database, port=args.port) as pg:
            print(f"PostgreSQL running: {pg.url} (data in {pg.data_dir})", file=sys.stderr, flush=True)
            if not command:
                print("no command given; stopping", file=sys.stderr)
                return 0
            started = time.monotonic()
            child = subprocess.Popen(command, env={**os.environ, "MFH_STORE": pg.url})
            code = _wait_child(child)
            print(f"{command[0]} exited {code} after {time.monotonic() - started:.0f} s", file=sys.stderr)
            return code
    except PostgresUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
