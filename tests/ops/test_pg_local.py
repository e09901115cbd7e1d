"""The local PostgreSQL helper behind the test fixture and `make run-postgres`: a real server."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from server.ops.pg_local import SERVER_USER, PostgresUnavailable, local_postgres, pg_bin_dir


def test_postgres_url_fixture_accepts_connections(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://postgres@127.0.0.1:")
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS fixture_probe (n int)")
        conn.execute("INSERT INTO fixture_probe VALUES (41), (1)")
        assert conn.execute("SELECT sum(n) FROM fixture_probe").fetchone() == (42,)
        assert conn.execute("SELECT current_database()").fetchone() == ("mfh",)


def test_fresh_postgres_databases_are_empty_and_separate(fresh_postgres_url: str, postgres_url: str) -> None:
    assert fresh_postgres_url != postgres_url
    with psycopg.connect(fresh_postgres_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert tables == (0,)


def test_server_runs_unprivileged_and_is_gone_after_exit() -> None:
    with local_postgres() as pg:
        root, port = pg.root, pg.port
        with psycopg.connect(pg.url) as conn:
            data_dir = conn.execute("SELECT current_setting('data_directory')").fetchone()
            assert data_dir == (str(pg.data_dir),)
            assert conn.execute("SELECT current_setting('listen_addresses')").fetchone() == ("127.0.0.1",)
        pid = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
        owner = Path(f"/proc/{pid}").stat().st_uid
        if os.geteuid() == 0:
            assert owner != 0, "initdb/pg_ctl refuse root: the server must run as the unprivileged user"
            assert Path(f"/proc/{pid}").owner() == SERVER_USER
        else:
            assert owner == os.geteuid()
        assert pg.running()
    assert not root.exists(), "a temporary cluster's folder is removed on exit"
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/mfh", connect_timeout=5)


def test_kept_cluster_keeps_its_data_across_restarts() -> None:
    # Not tmp_path: as root its parent is 0700 and the unprivileged server could not enter it.
    keep = Path(tempfile.mkdtemp(prefix="mfh-pg-keep-")) / "pg"
    keep.parent.chmod(0o755)
    try:
        with local_postgres(keep) as pg, psycopg.connect(pg.url) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        with local_postgres(keep) as pg, psycopg.connect(pg.url) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(7,)]
        assert (keep / "data" / "PG_VERSION").exists()
    finally:
        shutil.rmtree(keep.parent, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to another user")
def test_private_parent_folder_is_refused_with_a_clear_error() -> None:
    private = Path(tempfile.mkdtemp(prefix="mfh-pg-private-"))  # 0700, owned by root
    try:
        with (
            pytest.raises(PostgresUnavailable, match="cannot reach .* private"),
            local_postgres(private / "pg"),
        ):
            pass
    finally:
        shutil.rmtree(private, ignore_errors=True)


def test_command_runs_a_program_with_mfh_store_set() -> None:
    probe = (
        "import os, psycopg; c = psycopg.connect(os.environ['MFH_STORE']); "
        "print('answer', c.execute('SELECT 6 * 7').fetchone()[0])"
    )
    done = subprocess.run(
        [sys.executable, "-m", "server.ops.pg_local", "--", sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "answer 42" in done.stdout
    assert "PostgreSQL running: postgresql://postgres@127.0.0.1:" in done.stderr


def test_setup_script_is_idempotent_and_leaves_what_the_fixture_needs() -> None:
    # `make setup` runs it on every call: with PostgreSQL present it installs nothing and succeeds.
    root = Path(__file__).resolve().parents[2]
    for _ in range(2):
        done = subprocess.run(
            ["bash", str(root / "deploy" / "setup-postgres.sh")], capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr
    assert (pg_bin_dir() / "initdb").exists() and (pg_bin_dir() / "pg_ctl").exists()
    if os.geteuid() == 0:
        assert pwd.getpwnam(SERVER_USER).pw_uid != 0
