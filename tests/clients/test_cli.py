"""The CLI as a subprocess against the scripted server and fake miners: output, exit codes, import."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from pathlib import Path

import duckdb
import pytest

from tests.clients.conftest import REPO_ROOT, MinerFactory, run_cli
from tests.clients.fake_miners import FIRMWARE_REPLIES
from tests.clients.fake_server import FakeServer, start_fake_server

SUBCOMMANDS = ("status", "train", "train-watch", "risk", "anomalies", "miners", "watch", "import", "collect")


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_explains_itself_with_an_example(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "example:\n  mining-health " in result.stdout and "--target" in result.stdout


def test_usage_errors_exit_2() -> None:
    assert run_cli("train", "gru").returncode == 2
    result = run_cli("miners", "--min-risk", "SEVERE")
    assert result.returncode == 2 and "'SEVERE' is not one of LOW, MEDIUM, HIGH, CRITICAL" in result.stderr


def test_train_follows_epochs_and_reports_the_registered_model(fake_server: FakeServer) -> None:
    result = run_cli("--target", fake_server.target, "train", "lstm", "--epochs", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == ["job job-1: SUCCEEDED", "model lstm-fake-1: promoted to active"]
    assert "3/3" in result.stderr and "val_loss" in result.stderr  # the tqdm bar
    assert fake_server.script.train_requests[0].epochs == 3


def test_train_json_prints_the_final_job_only(fake_server: FakeServer) -> None:
    result = run_cli("train", "lstm", "--json", "--target", fake_server.target)
    job = json.loads(result.stdout)
    assert (result.returncode, job["state"], job["model_version"]) == (
        0,
        "JOB_STATE_SUCCEEDED",
        "lstm-fake-1",
    )


def test_server_error_exits_1_with_code_reason_and_message(fake_server: FakeServer) -> None:
    result = run_cli("--target", fake_server.target, "risk", "10.0.0.1")
    assert result.returncode == 1
    assert "error: FAILED_PRECONDITION MODEL_NOT_TRAINED: no LSTM model is trained" in result.stderr
    as_json = run_cli("--target", fake_server.target, "--json", "risk", "10.0.0.1")
    assert json.loads(as_json.stdout)["error"]["reason"] == "MODEL_NOT_TRAINED"


def test_token_comes_from_the_environment(fake_server: FakeServer) -> None:
    result = run_cli("status", env={"MFH_TARGET": fake_server.target, "MFH_TOKEN": "from-env"})
    assert result.returncode == 0, result.stderr
    assert fake_server.script.metadata[0]["authorization"] == "Bearer from-env"


def write_telemetry(path: Path) -> None:
    """Three rows: one with every column, one with missing readings, one with an offset timestamp."""
    fmt = "(FORMAT parquet)" if path.suffix == ".parquet" else "(HEADER)"
    duckdb.sql(
        f"""COPY (SELECT * FROM (VALUES
              ('10.0.0.1', TIMESTAMP '2026-11-25 12:00:00', 100.5, 70.0, 5880.0, 3250.0, 10, 1),
              ('10.0.0.1', TIMESTAMP '2026-11-25 12:05:00', NULL, 71.0, NULL, NULL, NULL, NULL),
              ('10.0.0.2', TIMESTAMP '2026-11-25 13:00:00', 95.0, 68.0, 6000.0, 3100.0, 20, 0))
            AS t(miner_id, timestamp, hashrate_ths, temperature_c, fan_speed_rpm, power_w,
                 accepted_shares, rejected_shares)) TO '{path}' {fmt}"""
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_import_streams_columns_in_batches(fake_server: FakeServer, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"telemetry{suffix}"
    write_telemetry(path)
    result = run_cli("--target", fake_server.target, "import", str(path), "--batch-size", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "rows": 3,
        "batches": 2,
        "written": 3,
        "duplicates": 0,
        "conflicts": 0,
        "miners_registered": 0,
    }
    first, second = fake_server.script.batches
    assert (first.batch_id, second.batch_id) == (f"{path.name}#1", f"{path.name}#2")
    columns = first.columns
    assert list(columns.miner_id) == ["10.0.0.1", "10.0.0.1"]
    assert list(columns.timestamp_ms) == [1795608000000, 1795608300000]  # UTC
    assert columns.hashrate_ths[0] == 100.5 and math.isnan(columns.hashrate_ths[1])  # missing -> NaN
    assert list(columns.accepted_shares) == [10, -1]  # missing counter -> -1
    assert list(second.columns.rejected_shares) == [0]


def test_import_rejects_a_file_without_required_columns(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("host,hashrate_ths\n10.0.0.1,100\n")
    result = run_cli("--target", "127.0.0.1:1", "import", str(path))
    assert result.returncode == 2
    assert "missing column(s) miner_id, timestamp" in result.stderr


async def test_collect_once_sends_readings_of_every_firmware(fake_miner: MinerFactory) -> None:
    # The scripted server runs in its own threads; the fake miners on this loop, so the CLI runs async.
    server = start_fake_server()
    try:
        miners = [
            await fake_miner(FIRMWARE_REPLIES[name]) for name in ("antminer_s9", "braiins", "whatsminer")
        ]
        dead = await fake_miner(mode="close")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "clients.cli",
            "--target",
            server.target,
            "--json",
            "collect",
            "--once",
            *(m.target for m in [*miners, dead]),
            "--miner-timeout",
            "5",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, stderr.decode()
        assert json.loads(stdout) == {"miners": 4, "readings": 3}
        samples = {s.miner_id: s for batch in server.script.batches for s in batch.samples}
        assert set(samples) == {m.target for m in miners}
        assert samples[miners[0].target].hardware_model == "Antminer S9"
        assert len(samples[miners[1].target].boards) == 3 and samples[miners[1].target].power_w == 1290.0
        assert list(samples[miners[2].target].fan_speeds_rpm) == [4890.0, 4860.0]
        assert f"{dead.target}: summary: connection closed without a reply" in stderr.decode()
    finally:
        server.stop()
