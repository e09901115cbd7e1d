"""One policy per RPC: the role it needs, its rate class and what the audit log records of it.

`POLICIES` is the one table, keyed by the full method name ("/mining.analytics.v1alpha1.FleetService/
Status"). Each service's RPCs are declared as keyword arguments of `_service`, so an RPC cannot be
declared twice (Python refuses a repeated keyword; `_table` refuses an RPC in two blocks). The server
fails closed on an RPC without a policy: `require_policies` refuses to start a server whose services
have one (server/app.py calls it), and the interceptors deny such a call to every caller, even with
authentication off. A test checks the table against every service descriptor of the protos.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pool
from mining.analytics.v1alpha1 import fleet_pb2

from server.auth import Role

PACKAGE = fleet_pb2.DESCRIPTOR.package

Fields = Callable[[Any], dict[str, Any]]


class RateClass(enum.Enum):
    """How often a client may call an RPC."""

    UNLIMITED = "unlimited"
    """Cheap calls: bounded only by the server's concurrency and message limits."""
    EXPENSIVE = "expensive"
    """Calls that cost seconds of CPU: a token bucket per client (settings expensive_calls_*)."""


def _none(message: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Audit:
    """An audit entry for a state-changing RPC: its action and the fields it records."""

    action: str
    request: Fields = _none  # fields read from the request (not read from a streamed request)
    response: Fields = _none  # fields read from each response


@dataclass(frozen=True)
class RpcPolicy:
    """Everything the interceptors decide about one RPC."""

    role: Role
    rate_class: RateClass = RateClass.UNLIMITED
    audit: Audit | None = field(default=None)  # None: the call changes nothing worth an entry


def _enum_name(message: Any, name: str) -> str:
    value = getattr(message, name)
    named = message.DESCRIPTOR.fields_by_name[name].enum_type.values_by_number.get(value)
    return named.name if named else str(value)


def _service(service: str, **rpcs: RpcPolicy) -> dict[str, RpcPolicy]:
    return {f"/{PACKAGE}.{service}/{rpc}": policy for rpc, policy in rpcs.items()}


def _table(*services: dict[str, RpcPolicy]) -> dict[str, RpcPolicy]:
    table: dict[str, RpcPolicy] = {}
    for rpcs in services:
        twice = sorted(table.keys() & rpcs.keys())
        if twice:
            raise ValueError(f"RPCs declared twice: {', '.join(twice)}")
        table.update(rpcs)
    return table


def _ingested(response: Any) -> dict[str, Any]:
    return {
        "written": response.written,
        "duplicates": response.duplicates,
        "registered": response.miners_registered,
    }


READ = RpcPolicy(Role.READER)

POLICIES: Mapping[str, RpcPolicy] = _table(
    _service(
        "FleetService",
        Status=READ,
        ListMiners=READ,
        GetMiner=READ,
        UpsertMiner=RpcPolicy(
            Role.WRITER,
            audit=Audit(
                "upsert_miner",
                lambda q: {"miner_id": q.miner.miner_id},
                lambda r: {"changed_miner_id": r.miner_id},  # the path id may alias another miner
            ),
        ),
        Backup=RpcPolicy(
            Role.TRAINER,
            audit=Audit(
                "backup", lambda q: {"name": q.name}, lambda r: {"path": r.path, "samples": r.samples}
            ),
        ),
    ),
    _service(
        "ScoringService",
        PredictFailureRisk=READ,
        DetectAnomalies=READ,
        ScoreFleet=RpcPolicy(Role.READER, RateClass.EXPENSIVE),
        SubscribeScores=READ,
    ),
    _service(
        "TelemetryService",
        WriteMetrics=RpcPolicy(
            Role.WRITER, audit=Audit("write_metrics", lambda q: {"batch_id": q.batch_id}, _ingested)
        ),
        IngestMetrics=RpcPolicy(
            Role.WRITER,
            audit=Audit("write_metrics", response=lambda r: {"batch_id": r.batch_id, **_ingested(r)}),
        ),
        RecordFailure=RpcPolicy(
            Role.WRITER,
            audit=Audit(
                "record_failure",
                lambda q: {"miner_id": q.miner_id, "mode": _enum_name(q, "mode")},
                lambda r: {"event_id": r.event_id},
            ),
        ),
        RecordRepair=RpcPolicy(
            Role.WRITER,
            audit=Audit(
                "record_repair", lambda q: {"event_id": q.event_id}, lambda r: {"miner_id": r.miner_id}
            ),
        ),
        ListFailures=READ,
        SetPlannedState=RpcPolicy(
            Role.WRITER,
            audit=Audit(
                "set_planned_state",
                lambda q: {"miner_id": q.miner_id, "kind": _enum_name(q, "kind")},
                lambda r: {"state_id": r.state_id},
            ),
        ),
        RecordFeedback=RpcPolicy(
            Role.WRITER,
            audit=Audit(
                "record_feedback", lambda q: {"miner_id": q.miner_id, "verdict": _enum_name(q, "verdict")}
            ),
        ),
    ),
    _service(
        "TrainingService",
        Train=RpcPolicy(
            Role.TRAINER,
            RateClass.EXPENSIVE,
            Audit(
                "train",
                lambda q: {"model_kind": _enum_name(q, "model_kind"), "request_id": q.request_id},
                lambda r: {"job_id": r.job_id},
            ),
        ),
        GetTrainJob=READ,
        ListTrainJobs=READ,
        WatchTrainJob=READ,
        CancelTrainJob=RpcPolicy(
            Role.TRAINER,
            audit=Audit(
                "cancel_job", lambda q: {"job_id": q.job_id}, lambda r: {"state": _enum_name(r, "state")}
            ),
        ),
        ListModels=READ,
        ActivateModel=RpcPolicy(
            Role.TRAINER,
            audit=Audit(
                "activate_model", lambda q: {"model_kind": _enum_name(q, "model_kind"), "version": q.version}
            ),
        ),
    ),
    _service(
        "HistoryService",
        GetMinerTelemetry=READ,
        GetMinerRiskHistory=READ,
        ListMinerEvents=READ,
    ),
)


def policy_for(method: str) -> RpcPolicy | None:
    """The RPC's policy; None for a method without one (callers deny it)."""
    return POLICIES.get(method)


def missing_policies(services: Iterable[str]) -> list[str]:
    """Full method names of the services' RPCs (from their descriptors) that have no policy."""
    pool = descriptor_pool.Default()
    methods = (
        f"/{service}/{rpc.name}" for service in services for rpc in pool.FindServiceByName(service).methods
    )
    return [method for method in methods if method not in POLICIES]


def require_policies(services: Iterable[str]) -> None:
    """Raises when a service has an RPC without a policy: the server must not start serving it."""
    missing = missing_policies(services)
    if missing:
        raise RuntimeError(
            f"no policy for {', '.join(missing)}: declare its role, rate class and audit in "
            "server/transport/policy.py (POLICIES) before serving it"
        )
