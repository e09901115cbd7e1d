"""The client and the CLI against the real server (port 0, temp DuckDB).

RPCs that the server still answers UNIMPLEMENTED are skipped with the RPC's name, so these tests
turn on by themselves as the server grows.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from mining.analytics.v1alpha1 import common_pb2, training_pb2

from clients.client import ClientError, FleetHealthClient
from clients.collector import Collector, CollectorConfig, MinerTarget
from clients.collector.sink import GrpcSink
from tests.clients.conftest import COLOUR, MinerFactory, Terminal, run_cli, run_cli_into_closed_pipe
from tests.clients.fake_miners import FIRMWARE_REPLIES
from tests.clients.test_cli import write_telemetry
from tests.clients.test_collector import FakeClock
from tests.harness import ServerThread, start_server

DEMO_MINERS = 8  # tests.harness.SMALL_FLEET


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """The real server with the small demo fleet."""
    try:
        server = start_server(tmp_path_factory.mktemp("demo"))
    except ImportError as exc:  # the fleet simulator has not landed in this tree yet
        pytest.skip(f"server cannot seed the demo fleet yet: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """The real server with an empty store, for writes."""
    server = start_server(tmp_path_factory.mktemp("bare"), seed_demo_fleet=False)
    yield server
    server.stop()


def target(server: ServerThread) -> str:
    return f"127.0.0.1:{server.port}"


def skip_if_unimplemented(stderr: str, rpc: str) -> None:
    if "UNIMPLEMENTED" in stderr:
        pytest.skip(f"server does not implement {rpc} yet")


def test_status_json_reports_the_store(bare_server: ServerThread) -> None:
    result = run_cli("--target", target(bare_server), "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["lstm_model"] is False and status["lstm_model_info"]["loaded"] is False
    assert "hashrate" in status["feature_columns"] and status["sequence_length"] > 0


def test_unknown_miner_is_not_found_with_its_reason(bare_server: ServerThread) -> None:
    with FleetHealthClient(target(bare_server)) as client, pytest.raises(ClientError) as caught:
        client.get_miner("10.9.9.9")
    assert (caught.value.code, caught.value.reason) == (grpc.StatusCode.NOT_FOUND, "MINER_NOT_FOUND")
    assert "10.9.9.9" in caught.value.message


def test_demo_fleet_status_and_miners_sorted_by_risk(demo_server: ServerThread) -> None:
    status = run_cli("--target", target(demo_server), "status", "--json")
    assert status.returncode == 0, status.stderr
    assert (
        json.loads(status.stdout)["miners"] == DEMO_MINERS and int(json.loads(status.stdout)["samples"]) > 0
    )

    listing = run_cli("--target", target(demo_server), "miners", "--json")
    assert listing.returncode == 0, listing.stderr
    miners = json.loads(listing.stdout)
    assert len(miners) == DEMO_MINERS
    assert [m["risk_score"] for m in miners] == sorted((m["risk_score"] for m in miners), reverse=True)
    limited = run_cli("--target", target(demo_server), "miners", "--limit", "3")
    assert limited.returncode == 0 and len(limited.stdout.splitlines()) == 1 + 3  # header + rows

    with FleetHealthClient(target(demo_server)) as client:
        paged = [m.miner_id for m in client.iter_miners(page_size=3)]
        assert sorted(paged) == sorted(m["miner_id"] for m in miners) and len(set(paged)) == DEMO_MINERS
        assert client.get_miner(paged[0]).miner_id == paged[0]


def test_risk_before_training_is_model_not_trained(demo_server: ServerThread) -> None:
    with FleetHealthClient(target(demo_server)) as client:
        miner_id = next(client.iter_miners()).miner_id
    result = run_cli("--target", target(demo_server), "risk", miner_id)
    skip_if_unimplemented(result.stderr, "PredictFailureRisk")
    assert result.returncode == 1
    assert "FAILED_PRECONDITION MODEL_NOT_TRAINED" in result.stderr
    with FleetHealthClient(target(demo_server)) as client, pytest.raises(ClientError) as caught:
        client.predict_failure_risk(miner_id)
    assert (caught.value.code, caught.value.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "MODEL_NOT_TRAINED",
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_import_writes_the_file_into_the_store(
    bare_server: ServerThread, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"telemetry{suffix}"
    write_telemetry(path)
    result = run_cli("--target", target(bare_server), "--json", "import", str(path), "--batch-size", "2")
    skip_if_unimplemented(result.stderr, "IngestMetrics")
    assert result.returncode == 0, result.stderr
    totals = json.loads(result.stdout)
    assert (totals["rows"], totals["batches"], totals["written"] + totals["duplicates"]) == (3, 2, 3)
    with FleetHealthClient(target(bare_server)) as client:
        assert client.get_miner("10.0.0.1").sample_count >= 2
        assert client.get_miner("10.0.0.2").sample_count >= 1


async def test_collector_writes_readings_and_reports_an_outage_once(
    bare_server: ServerThread, fake_miner: MinerFactory
) -> None:
    miners = [await fake_miner(FIRMWARE_REPLIES[name]) for name in ("antminer_s19", "braiins", "whatsminer")]
    config = CollectorConfig(
        targets=tuple(MinerTarget.parse(m.target) for m in miners),
        interval_s=1,
        timeout_s=5,
        outage_after_s=2,
    )
    clock = FakeClock()
    with FleetHealthClient(target(bare_server), retries=0) as client:
        collector = Collector(config, GrpcSink(client), clock=clock)
        assert len(await collector.poll_round()) == 3
        if collector.pending:
            with pytest.raises(ClientError) as caught:
                await asyncio.to_thread(client.write_metrics, [])
            assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED, caught.value
            pytest.skip("server does not implement WriteMetrics yet")
        models = []
        for miner in miners:
            stored = await asyncio.to_thread(client.get_miner, miner.target)
            assert stored.sample_count == 1
            models.append(stored.hardware_model)
        # Each firmware's own replies name the model (stats, devdetails): none registers as "unknown".
        assert models == ["Antminer S19 Pro", "Antminer S9", "Whatsminer M30S"]

        dead = miners[1]
        dead.mode = "close"
        for _ in range(6):  # down from t=1; reported once past 2 s, then not again
            clock.advance(1)
            await collector.poll_round()
        outages = (await asyncio.to_thread(client.list_failures, dead.target)).failures
        assert [(event.mode, event.miner_id) for event in outages] == [
            (common_pb2.FAILURE_MODE_OUTAGE, dead.target)
        ]
        assert outages[0].occurred_at.ToDatetime(tzinfo=UTC) == FakeClock.START + timedelta(seconds=1)
        assert (await asyncio.to_thread(client.get_miner, miners[0].target)).sample_count == 7


def test_cli_reports_an_unreachable_server() -> None:
    result = run_cli("--target", "127.0.0.1:1", "--timeout", "5", "status")
    assert result.returncode == 1 and "error: UNAVAILABLE" in result.stderr


@pytest.fixture
def fresh_demo_server(tmp_path: Path) -> Iterator[ServerThread]:
    """A demo-fleet server of its own, for tests that change its models."""
    try:
        server = start_server(tmp_path)
    except ImportError as exc:
        pytest.skip(f"server cannot seed the demo fleet yet: {exc}")
    yield server
    server.stop()


def test_train_both_models_then_score_a_miner(fresh_demo_server: ServerThread) -> None:
    server = target(fresh_demo_server)
    for kind in ("lstm", "autoencoder"):
        trained = run_cli("--target", server, "train", kind, "--epochs", "1", "--seed", "3", timeout=300)
        assert trained.returncode == 0, trained.stderr
        assert trained.stdout.splitlines()[0].endswith(": SUCCEEDED")
        assert "1/1" in trained.stderr  # the epoch bar reached the end

    with FleetHealthClient(server) as client:
        miner_id = next(client.iter_miners()).miner_id
        # The server reports a job SUCCEEDED (promoted) a moment before the new model is served;
        # wait for Status to show both loaded (reported to the server's owners).
        deadline = time.monotonic() + 60
        while not ((status := client.status()).lstm_model and status.autoencoder):
            assert time.monotonic() < deadline, f"models never loaded: {status}"
            time.sleep(0.1)
        assert {m.model_kind for m in client.list_models().models} == {
            common_pb2.LSTM,
            common_pb2.AUTOENCODER,
        }
    risk = run_cli("--target", server, "--json", "risk", miner_id, "--explain")
    assert risk.returncode == 0, risk.stderr
    scored = json.loads(risk.stdout)
    assert scored["miner_id"] == miner_id and 0 <= scored["risk_score"] <= 1 and scored["risk_factors"]
    anomalies = run_cli("--target", server, "--json", "anomalies", miner_id)
    assert anomalies.returncode == 0, anomalies.stderr
    windows = json.loads(anomalies.stdout)["windows"]
    assert windows and [w["window_end"] for w in windows] == sorted(w["window_end"] for w in windows)


def test_subscription_delivers_heartbeats(bare_server: ServerThread) -> None:
    with FleetHealthClient(target(bare_server), retries=0) as client:
        events = client.subscribe_scores(heartbeat_seconds=1, timeout=60)
        try:
            first = next(events)
        finally:
            events.close()
    assert first.WhichOneof("event") in {"heartbeat", "update"}


def test_watch_cli_prints_one_json_line_per_event(bare_server: ServerThread) -> None:
    command = [
        sys.executable,
        "-m",
        "clients.cli",
        "--target",
        target(bare_server),
        "--json",
        "watch",
        "--heartbeat",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = [json.loads(process.stdout.readline()) for _ in range(2)]
    finally:
        process.terminate()
        process.wait(30)
    assert all("heartbeat" in line for line in lines)
    assert all(isinstance(line["sequence"], str) for line in lines)  # uint64 prints as a string


@pytest.mark.parametrize("command", ["status", "miners", "models", "failures", "fleet"])
def test_commands_close_quietly_when_the_reader_has_gone(demo_server: ServerThread, command: str) -> None:
    result = run_cli_into_closed_pipe("--target", target(demo_server), command)
    # fleet answers FAILED_PRECONDITION before any model is trained: an error, still no traceback.
    assert result.returncode == (1 if command == "fleet" else 0), result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


@pytest.fixture
def patient_demo_server(tmp_path: Path) -> Iterator[ServerThread]:
    """A demo-fleet server without early stopping: a long job runs until it is cancelled."""
    server = start_server(tmp_path, train_patience=100_000)
    yield server
    server.stop()


def cli_json(server: ServerThread, *args: str) -> Any:
    result = run_cli("--target", target(server), "--json", *args, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_registry_fleet_and_labels_through_the_cli(patient_demo_server: ServerThread) -> None:
    server = patient_demo_server
    for seed in ("3", "4"):
        job = cli_json(server, "train", "lstm", "--epochs", "1", "--seed", seed)
        assert job["state"] == "JOB_STATE_SUCCEEDED"
    versions = cli_json(server, "models", "lstm")
    assert len(versions) == 2 and sum(v["active"] for v in versions) == 1
    inactive = next(v["version"] for v in versions if not v["active"])
    assert cli_json(server, "activate", "lstm", inactive)["version"] == inactive
    assert [v["version"] for v in cli_json(server, "models", "lstm") if v["active"]] == [inactive]
    code, shown = Terminal("--target", target(server), "models", "lstm").finish()
    assert code == 0 and inactive in shown and COLOUR.search(shown), shown  # the active row in green
    piped = run_cli("--target", target(server), "models", "lstm")
    assert "\x1b[" not in piped.stdout and len(piped.stdout.splitlines()) == 1 + 2

    fleet = cli_json(server, "fleet", "--top", "3")
    risks = [score["risk_score"] for score in fleet["scores"]]
    assert 0 < len(risks) <= 3 and risks == sorted(risks, reverse=True)
    assert {score["model_version"] for score in fleet["scores"]} == {inactive}
    miner_id = fleet["scores"][0]["miner_id"]

    feedback = cli_json(server, "feedback", miner_id, "confirmed", "--note", "fan replaced")
    assert (feedback["verdict"], feedback["model_version"]) == ("FEEDBACK_VERDICT_CONFIRMED", inactive)
    recorded = cli_json(server, "failures", miner_id, "--record", "fan", "--note", "ticket 7")
    listed = cli_json(server, "failures", miner_id)
    assert recorded["event_id"] in [event["event_id"] for event in listed]
    assert next(e for e in listed if e["event_id"] == recorded["event_id"])["note"] == "ticket 7"


def test_ctrl_c_while_following_leaves_the_job_and_cancel_stops_it(patient_demo_server: ServerThread) -> None:
    server = target(patient_demo_server)
    command = [
        sys.executable,
        "-m",
        "clients.cli",
        "--target",
        server,
        "train",
        "autoencoder",
        "--epochs",
        "10000",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with FleetHealthClient(server) as client:
        deadline = time.monotonic() + 120
        while not (jobs := client.list_train_jobs().jobs) or jobs[0].state != training_pb2.JOB_STATE_RUNNING:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        job_id = jobs[0].job_id
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130
        assert client.get_train_job(job_id).state == training_pb2.JOB_STATE_RUNNING  # only following stopped
    hint = f"cancel it with: mining-health --target {server} cancel {job_id}"
    assert hint in stderr
    cancelled = run_cli(*hint.removeprefix("cancel it with: mining-health ").split())
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"job {job_id}: CANCELLED"


def test_import_reports_rows_that_repeat_a_time_with_other_values(
    bare_server: ServerThread, tmp_path: Path
) -> None:
    # An export that repeats an hour (a clock change): the same miner and time twice, other readings.
    path = tmp_path / "repeated.csv"
    path.write_text(
        "miner_id,timestamp,hashrate_ths,temperature_c,fan_speed_rpm,power_w,accepted_shares,rejected_shares\n"
        "10.0.13.1,2026-11-25T01:00:00Z,100,70,5880,3250,10,1\n"
        "10.0.13.1,2026-11-25T01:05:00Z,100,70,5880,3250,20,1\n"
        "10.0.13.1,2026-11-25T01:00:00Z,98,72,5900,3240,30,1\n"
    )
    result = run_cli("--target", target(bare_server), "--json", "import", str(path))
    skip_if_unimplemented(result.stderr, "IngestMetrics")
    assert result.returncode == 0, result.stderr
    totals = json.loads(result.stdout)
    assert (totals["written"], totals["duplicates"], totals["conflicts"]) == (2, 0, 1)
