"""Bearer-token authentication, roles and miner scopes, over gRPC and through Envoy (REST)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from mining.analytics.v1alpha1 import (
    common_pb2,
    fleet_pb2,
    fleet_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

from server.app import SERVICE_NAMES
from server.auth import Principal, Role, TokenFileError, TokenStore, hash_token
from server.records import Miner
from tests.harness import start_server
from tests.security.conftest import AuthStack


def _fleet(auth_stack: AuthStack) -> fleet_pb2_grpc.FleetServiceStub:
    return fleet_pb2_grpc.FleetServiceStub(auth_stack.stack.channel)


def _miners(auth_stack: AuthStack, token: str) -> list[common_pb2.Miner]:
    reply = _fleet(auth_stack).ListMiners(
        fleet_pb2.ListMinersRequest(), metadata=auth_stack.metadata(token), timeout=30
    )
    return list(reply.miners)


def test_missing_token_is_unauthenticated_over_grpc(auth_stack: AuthStack) -> None:
    with pytest.raises(grpc.RpcError) as error:
        _fleet(auth_stack).Status(fleet_pb2.StatusRequest(), timeout=30)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer" in error.value.details()


def test_missing_or_wrong_token_is_401_through_envoy(auth_stack: AuthStack) -> None:
    missing = auth_stack.stack.rest("GET", "/api/advanced/status")
    assert missing.status == 401
    assert missing.json()["code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    wrong = auth_stack.stack.rest(
        "GET", "/api/advanced/status", headers={"authorization": "Bearer mfh_not-a-token"}
    )
    assert wrong.status == 401
    assert "invalid token" in wrong.json()["message"]


def test_valid_token_reads_over_grpc_and_rest(auth_stack: AuthStack) -> None:
    reply = _fleet(auth_stack).Status(
        fleet_pb2.StatusRequest(), metadata=auth_stack.metadata("reader"), timeout=30
    )
    assert reply.miners == 8
    rest = auth_stack.stack.rest("GET", "/api/advanced/status", headers=auth_stack.headers("reader"))
    assert rest.status == 200
    assert rest.json()["miners"] == 8


def test_reader_may_not_train_permission_denied_and_403(auth_stack: AuthStack) -> None:
    stub = training_pb2_grpc.TrainingServiceStub(auth_stack.stack.channel)
    with pytest.raises(grpc.RpcError) as error:
        stub.Train(
            training_pb2.TrainRequest(model_kind=common_pb2.LSTM, epochs=1),
            metadata=auth_stack.metadata("reader"),
            timeout=30,
        )
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "needs the role trainer" in error.value.details()
    rest = auth_stack.stack.rest(
        "POST", "/api/advanced/train/lstm", {"epochs": 1}, headers=auth_stack.headers("reader")
    )
    assert rest.status == 403
    assert "needs the role trainer" in rest.json()["message"]


def test_writer_may_not_read_and_trainer_may_not_write(auth_stack: AuthStack) -> None:
    denied = auth_stack.stack.rest("GET", "/api/advanced/miners", headers=auth_stack.headers("writer"))
    assert denied.status == 403
    sample = {"miner_id": "auth-writer-1", "timestamp": "2026-01-01T00:00:00Z", "temperature_c": 60}
    refused = auth_stack.stack.rest(
        "POST", "/api/advanced/metrics", {"samples": [sample]}, headers=auth_stack.headers("trainer")
    )
    assert refused.status == 403
    written = auth_stack.stack.rest(
        "POST", "/api/advanced/metrics", {"samples": [sample]}, headers=auth_stack.headers("writer")
    )
    assert written.status == 200, written.body
    assert written.json()["written"] == 1


def test_roles_add_up(auth_stack: AuthStack) -> None:
    headers = auth_stack.headers("reader-trainer")
    assert auth_stack.stack.rest("GET", "/api/advanced/models", headers=headers).status == 200
    # Allowed past auth: the trainer role reaches the domain, which answers for the job id.
    cancel = auth_stack.stack.rest("POST", "/api/advanced/train/jobs/no-such-job/cancel", {}, headers=headers)
    assert cancel.status == 404
    assert "no training job" in cancel.json()["message"]


def test_health_and_reflection_need_no_token(auth_stack: AuthStack) -> None:
    health = health_pb2_grpc.HealthStub(auth_stack.stack.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=30).status == 1
    listed = auth_stack.stack.grpcurl("list")
    assert listed.returncode == 0, listed.stderr
    for name in SERVICE_NAMES:
        assert name in listed.stdout


def test_scoped_token_lists_only_its_miners(auth_stack: AuthStack) -> None:
    everything = _miners(auth_stack, "admin")
    by_id = sorted(m.miner_id for m in everything if not m.miner_id.startswith("auth-"))
    scoped = _miners(auth_stack, "scoped-ids")
    assert sorted(m.miner_id for m in scoped) == by_id[:2]
    site = next(m.site for m in everything if m.miner_id == by_id[0])
    in_site = _miners(auth_stack, "scoped-site")
    assert in_site and {m.site for m in in_site} == {site}
    assert len(in_site) == sum(1 for m in everything if m.site == site)


def test_out_of_scope_miner_reads_exactly_like_a_missing_one(auth_stack: AuthStack) -> None:
    everything = sorted(
        m.miner_id for m in _miners(auth_stack, "admin") if not m.miner_id.startswith("auth-")
    )
    hidden = everything[-1]
    stub = _fleet(auth_stack)
    answers = {}
    for miner_id in (hidden, "10.255.255.254"):
        with pytest.raises(grpc.RpcError) as error:
            stub.GetMiner(
                fleet_pb2.GetMinerRequest(miner_id=miner_id),
                metadata=auth_stack.metadata("scoped-ids"),
                timeout=30,
            )
        answers[miner_id] = (error.value.code(), error.value.details().replace(miner_id, "X"))
    assert answers[hidden] == answers["10.255.255.254"]
    assert answers[hidden][0] == grpc.StatusCode.NOT_FOUND
    # Scoring answers NOT_FOUND for it too (before any model question), and REST 404.
    scoring = scoring_pb2_grpc.ScoringServiceStub(auth_stack.stack.channel)
    with pytest.raises(grpc.RpcError) as error:
        scoring.PredictFailureRisk(
            scoring_pb2.PredictFailureRiskRequest(miner_id=hidden),
            metadata=auth_stack.metadata("scoped-ids"),
            timeout=30,
        )
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    rest = auth_stack.stack.rest(
        "GET", f"/api/advanced/detect/anomalies/{hidden}", headers=auth_stack.headers("scoped-ids")
    )
    assert rest.status == 404
    visible = auth_stack.stack.rest(
        "GET", f"/api/advanced/miners/{everything[0]}", headers=auth_stack.headers("scoped-ids")
    )
    assert visible.status == 200


def test_principal_scope_by_ids_and_sites() -> None:
    principal = Principal(
        "ops", frozenset({Role.READER}), miner_ids=frozenset({"a"}), sites=frozenset({"s1"})
    )
    assert principal.can_see(Miner("a", "S19", site="s9"))
    assert principal.can_see(Miner("b", "S19", site="s1"))
    assert not principal.can_see(Miner("c", "S19", site="s2"))
    assert Principal("all", frozenset(Role)).can_see(Miner("c", "S19"))


def test_mint_cli_prints_token_and_hashed_entry(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.auth",
            "mint",
            "--name",
            "ops",
            "--roles",
            "reader,trainer",
            "--miners",
            "site:site-a,192.168.1.100",
            "--add-to",
            str(tokens_file),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token, entry_line = result.stdout.strip().splitlines()
    entry = json.loads(entry_line)
    assert entry == {
        "name": "ops",
        "sha256": hash_token(token),
        "roles": ["reader", "trainer"],
        "miners": ["site:site-a", "192.168.1.100"],
    }
    assert token not in tokens_file.read_text()  # only the hash is stored
    principal = TokenStore.load(tokens_file).resolve(token)
    assert principal is not None and principal.name == "ops"
    assert principal.roles == {Role.READER, Role.TRAINER}
    assert principal.sites == {"site-a"} and principal.miner_ids == {"192.168.1.100"}
    assert TokenStore.load(tokens_file).resolve(token + "x") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "auth tokens file"),
        ('{"tokens": [{"name": "a", "sha256": "zz", "roles": ["reader"]}]}', "64 hex digits"),
        ('{"tokens": [{"name": "a", "sha256": "' + "0" * 64 + '", "roles": ["root"]}]}', "unknown role"),
    ],
)
def test_malformed_tokens_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(TokenFileError, match=message):
        TokenStore.load(path)


def test_auth_off_logs_a_loud_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="server.security"):
        server = start_server(tmp_path, metrics_port=-1)
        server.stop()
    assert any("AUTHENTICATION IS OFF" in r.getMessage() for r in caplog.records)
