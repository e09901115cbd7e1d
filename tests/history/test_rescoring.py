"""Rescoring the whole fleet whenever a model becomes active, proven through the API.

The defect this fixes: after training the LSTM through the API, ListMiners showed risk only for the
miners someone had asked about (the fleet was scored only at start-up).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import grpc
from mining.analytics.v1alpha1 import scoring_pb2, scoring_pb2_grpc

from tests.harness import Stack, start_stack
from tests.history.conftest import all_miners, eventually, scrape, train


def test_training_the_lstm_scores_every_miner_without_anyone_asking(fresh_stack: Stack) -> None:
    stack = fresh_stack
    before = all_miners(stack)
    assert before and all(m["risk_level"] == "RISK_LEVEL_UNSPECIFIED" for m in before)

    job = train(stack, "lstm", seed=3)
    assert job["promoted"] is True, job

    def fleet_scored() -> list[dict[str, object]] | None:
        miners = all_miners(stack)
        return miners if all(m["risk_level"] != "RISK_LEVEL_UNSPECIFIED" for m in miners) else None

    miners = eventually(fleet_scored, timeout=60, what="every miner scored after the promotion")
    assert len(miners) == len(before)
    risks = [float(m["risk_score"]) for m in miners]  # type: ignore[arg-type]
    assert risks == sorted(risks, reverse=True)  # the ranking follows the new scores
    metrics = scrape(stack)
    by_level = {
        labels[0][1]: value for (name, labels), value in metrics.items() if name == "mfh_miners_by_risk_level"
    }
    assert sum(by_level.values()) == len(miners), by_level


def _subscribe(stack: Stack) -> tuple[Any, list[scoring_pb2.ScoreEvent], threading.Thread]:
    """Opens a gRPC score subscription and collects its events in a thread."""
    stub = scoring_pb2_grpc.ScoringServiceStub(stack.channel)
    stream = stub.SubscribeScores(scoring_pb2.SubscribeScoresRequest(heartbeat_seconds=1), timeout=300)
    events: list[scoring_pb2.ScoreEvent] = []

    def read() -> None:
        try:
            for event in stream:
                events.append(event)
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    eventually(lambda: bool(events), timeout=30, what="the first heartbeat")
    return stream, events, reader


def test_activating_another_version_rescores_and_subscribers_hear_every_miner(fresh_stack: Stack) -> None:
    stack = fresh_stack
    train(stack, "lstm", seed=4)  # a second version, promoted or not
    versions = stack.rest("GET", "/api/advanced/models?model_kind=LSTM").json()["models"]
    assert len(versions) == 2
    inactive = next(v["version"] for v in versions if not v["active"])
    runs_before = scrape(stack)[("mfh_rescore_runs", ())]
    stream, events, reader = _subscribe(stack)
    try:
        reply = stack.rest("POST", f"/api/advanced/models/lstm/{inactive}/activate")
        assert reply.status == 200, reply.body
        miners = {m["miner_id"] for m in all_miners(stack)}

        def rescored() -> set[str] | None:
            heard = {
                e.update.miner_id
                for e in events
                if e.HasField("update") and e.update.model_version == inactive
            }
            return heard if heard == miners else None

        eventually(rescored, timeout=60, what="an update from the activated version for every miner")
        # the windows prepared for the version that stopped serving are dropped, not kept forever
        memo = stack.server.app.scoring.memo
        assert memo.versions() == {inactive}, memo.versions()
        assert len(memo) == len(miners)
    finally:
        stream.cancel()
        reader.join(10)
    metrics = eventually(
        lambda: m if (m := scrape(stack))[("mfh_rescore_runs", ())] > runs_before else None, timeout=30
    )
    assert metrics[("mfh_rescore_running", ())] == 0
    assert (
        metrics[("mfh_rescore_miners_done", ())] == metrics[("mfh_rescore_miners_total", ())] == len(miners)
    )
    for miner_id in miners:  # the history holds the activated version's point for every miner
        points = stack.rest("GET", f"/api/advanced/miners/{miner_id}/risk-history").json()["points"]
        assert inactive in {p["model_version"] for p in points}, miner_id


def test_a_restart_scores_the_fleet_and_keeps_the_risk_history(tmp_path: Path) -> None:
    stack = start_stack(tmp_path)
    try:
        train(stack, "lstm", seed=3)
        eventually(lambda: all(m["risk_level"] != "RISK_LEVEL_UNSPECIFIED" for m in all_miners(stack)))
        points = stack.rest("GET", "/api/advanced/miners/192.168.1.102/risk-history").json()["points"]
        assert len(points) == 1
    finally:
        stack.close()
    restarted = start_stack(tmp_path)
    try:

        def fleet_scored() -> list[dict[str, Any]] | None:
            miners = all_miners(restarted)
            return miners if all(m["risk_level"] != "RISK_LEVEL_UNSPECIFIED" for m in miners) else None

        scored = eventually(fleet_scored, timeout=60, what="the fleet scored after the restart")
        assert scored
        after = restarted.rest("GET", "/api/advanced/miners/192.168.1.102/risk-history").json()["points"]
        assert after[0]["model_version"] == points[0]["model_version"]
        assert after[0]["time"] == points[0]["time"] and after[0]["risk_score"] == points[0]["risk_score"]
        assert len(after) == 1  # the same window and version: rescoring at start replaced it in place
    finally:
        restarted.close()
