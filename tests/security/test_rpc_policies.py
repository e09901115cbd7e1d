"""One policy per RPC (role, rate class, audit), and the server fails closed on an RPC without one."""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
from pathlib import Path

import grpc
import mining.analytics.v1alpha1 as protos
import pytest

from server import app
from server.auth import Role, TokenStore, mint
from server.config import Settings
from server.ops.limits import RateLimiter
from server.transport import policy
from server.transport.errors import ErrorMappingInterceptor
from server.transport.interceptors import AuthInterceptor, LimitsInterceptor
from server.transport.policy import PACKAGE, POLICIES, RateClass, RpcPolicy


def _every_rpc_in_the_protos() -> tuple[set[str], list[str]]:
    """(services, full method names) of every service in every generated module of the package."""
    services: set[str] = set()
    methods: list[str] = []
    for module in pkgutil.iter_modules(protos.__path__):
        if not module.name.endswith("_pb2"):
            continue
        descriptor = importlib.import_module(f"{protos.__name__}.{module.name}").DESCRIPTOR
        for service in descriptor.services_by_name.values():
            services.add(service.full_name)
            methods.extend(f"/{service.full_name}/{method.name}" for method in service.methods)
    return services, methods


def test_every_rpc_of_every_service_has_exactly_one_policy() -> None:
    services, methods = _every_rpc_in_the_protos()
    assert len(methods) == len(set(methods)) >= 26
    assert sorted(POLICIES) == sorted(methods)  # one entry each: nothing missing, nothing stale
    assert all(isinstance(p, RpcPolicy) and isinstance(p.role, Role) for p in POLICIES.values())
    # The start-up check reads app.SERVICE_NAMES: it must name every service the protos define.
    assert set(app.SERVICE_NAMES) == services
    assert policy.missing_policies(app.SERVICE_NAMES) == []


def test_the_policies_keep_the_roles_limits_and_audits_of_before() -> None:
    def of(name: str) -> RpcPolicy:
        return POLICIES[f"/{PACKAGE}.{name}"]

    expensive = {m.rsplit(".", 1)[1] for m, p in POLICIES.items() if p.rate_class is RateClass.EXPENSIVE}
    assert expensive == {"TrainingService/Train", "ScoringService/ScoreFleet"}
    audited = {m.rsplit(".", 1)[1]: p.audit.action for m, p in POLICIES.items() if p.audit is not None}
    assert audited == {
        "TrainingService/Train": "train",
        "TrainingService/CancelTrainJob": "cancel_job",
        "TrainingService/ActivateModel": "activate_model",
        "TelemetryService/WriteMetrics": "write_metrics",
        "TelemetryService/IngestMetrics": "write_metrics",
        "TelemetryService/RecordFailure": "record_failure",
        "TelemetryService/RecordRepair": "record_repair",
        "TelemetryService/SetPlannedState": "set_planned_state",
        "TelemetryService/RecordFeedback": "record_feedback",
        "FleetService/Backup": "backup",
        "FleetService/UpsertMiner": "upsert_miner",
    }
    assert of("FleetService/Backup").role is Role.TRAINER
    assert of("TelemetryService/RecordFeedback").role is Role.WRITER
    assert of("ScoringService/ScoreFleet").role is Role.READER


def test_the_server_refuses_to_start_with_an_rpc_without_a_policy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forgotten = f"/{PACKAGE}.ScoringService/ScoreFleet"
    monkeypatch.setattr(policy, "POLICIES", {m: p for m, p in POLICIES.items() if m != forgotten})
    settings = Settings(grpc_port=0, metrics_port=0, data_dir=tmp_path / "data")
    with pytest.raises(RuntimeError, match="no policy for .*ScoringService/ScoreFleet"):
        asyncio.run(app.start(settings))
    assert not (tmp_path / "data").exists()  # refused before it opened the store or bound a port


UNDECLARED = f"/{PACKAGE}.FleetService/NotDeclaredAnywhere"
DECLARED = f"/{PACKAGE}.FleetService/Status"


async def _call_both(tokens: TokenStore | None, metadata: tuple[tuple[str, str], ...]) -> dict[str, object]:
    """A real server with the auth chain and raw-bytes handlers for an undeclared and a declared RPC."""
    ran: list[str] = []

    def echo(name: str) -> grpc.RpcMethodHandler:
        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            ran.append(name)
            return request

        return grpc.unary_unary_rpc_method_handler(handle)

    server = grpc.aio.server(
        interceptors=[
            ErrorMappingInterceptor(),
            AuthInterceptor(tokens),
            LimitsInterceptor(RateLimiter(60, 5)),
        ]
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                f"{PACKAGE}.FleetService",
                {"NotDeclaredAnywhere": echo("undeclared"), "Status": echo("status")},
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary(UNDECLARED)(b"x", metadata=metadata, timeout=30)
            answer = await channel.unary_unary(DECLARED)(b"y", metadata=metadata, timeout=30)
    finally:
        await server.stop(None)
    return {"error": refused.value, "answer": answer, "ran": ran}


def test_an_rpc_without_a_policy_is_refused_even_with_auth_off() -> None:
    result = asyncio.run(_call_both(None, ()))
    error = result["error"]
    assert isinstance(error, grpc.aio.AioRpcError)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "FleetService/NotDeclaredAnywhere has no policy" in (error.details() or "")
    assert result["answer"] == b"y" and result["ran"] == ["status"]  # the handler never ran


def test_an_rpc_without_a_policy_is_refused_to_an_admin_token(tmp_path: Path) -> None:
    token, entry = mint("root", ["admin"], [])
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps({"tokens": [entry]}))
    tokens_file.chmod(0o600)
    result = asyncio.run(_call_both(TokenStore.load(tokens_file), (("authorization", f"Bearer {token}"),)))
    error = result["error"]
    assert isinstance(error, grpc.aio.AioRpcError)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "no policy" in (error.details() or "")
    assert result["ran"] == ["status"]


def test_the_security_docs_role_table_matches_the_policies() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    documented: dict[str, set[str]] = {}
    for role in Role:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{role.value}` |"))
        documented[role.value] = {name.strip() for name in row.split("|")[2].split(",")}
    declared: dict[str, set[str]] = {role.value: set() for role in Role}
    for method, rpc_policy in POLICIES.items():
        declared[rpc_policy.role.value].add(method.rsplit("/", 1)[1])
    assert documented == declared


def test_an_rpc_declared_in_two_blocks_is_refused() -> None:
    with pytest.raises(ValueError, match="declared twice: .*FleetService/Status"):
        policy._table(
            policy._service("FleetService", Status=policy.READ),
            policy._service("FleetService", Status=policy.READ),
        )
