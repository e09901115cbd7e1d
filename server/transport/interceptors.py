"""Interceptors for security and operations: metrics, authentication, audit, limits.

The server installs them in this order, outermost first:

    MetricsInterceptor      counts every RPC and its final status code, times it
    ErrorMappingInterceptor (server/transport/errors.py) turns exceptions into statuses
    AuthInterceptor         bearer token -> Principal (a context variable for the call); role check
    AuditInterceptor        writes who did what for state-changing RPCs
    LimitsInterceptor       refuses calls already cancelled or past their deadline; rate limits

Auth and limits raise domain errors (Unauthenticated, PermissionDenied, RateLimited), so the one
error-mapping interceptor turns them into statuses like any other error. Health and reflection are
never authenticated (load balancers and grpcurl need them).
"""

from __future__ import annotations

import ipaddress
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from mining.analytics.v1alpha1 import fleet_pb2, telemetry_pb2

from server import auth
from server.auth import Principal, Role, TokenStore
from server.errors import DomainError, PermissionDenied, RateLimited, Unauthenticated
from server.ops.audit import AuditLog, RefusalLog
from server.ops.limits import RateLimiter
from server.ops.metrics import Metrics
from server.transport.codes import grpc_code

log = logging.getLogger(__name__)

PACKAGE = fleet_pb2.DESCRIPTOR.package
UNAUTHENTICATED_PREFIXES = ("/grpc.health.", "/grpc.reflection.")

# The role each RPC needs. An RPC missing here is refused to every token (a test checks that every
# RPC in the protos is listed), so a new RPC is never served unprotected by accident.
REQUIRED_ROLE: dict[str, Role] = {
    f"/{PACKAGE}.{name}": role
    for name, role in {
        "FleetService/Status": Role.READER,
        "FleetService/ListMiners": Role.READER,
        "FleetService/GetMiner": Role.READER,
        "FleetService/UpsertMiner": Role.WRITER,
        "FleetService/Backup": Role.TRAINER,
        "ScoringService/PredictFailureRisk": Role.READER,
        "ScoringService/DetectAnomalies": Role.READER,
        "ScoringService/ScoreFleet": Role.READER,
        "ScoringService/SubscribeScores": Role.READER,
        "TelemetryService/WriteMetrics": Role.WRITER,
        "TelemetryService/IngestMetrics": Role.WRITER,
        "TelemetryService/RecordFailure": Role.WRITER,
        "TelemetryService/RecordRepair": Role.WRITER,
        "TelemetryService/ListFailures": Role.READER,
        "TelemetryService/SetPlannedState": Role.WRITER,
        "TelemetryService/RecordFeedback": Role.WRITER,
        "TrainingService/Train": Role.TRAINER,
        "TrainingService/GetTrainJob": Role.READER,
        "TrainingService/ListTrainJobs": Role.READER,
        "TrainingService/WatchTrainJob": Role.READER,
        "TrainingService/CancelTrainJob": Role.TRAINER,
        "TrainingService/ListModels": Role.READER,
        "TrainingService/ActivateModel": Role.TRAINER,
        "HistoryService/GetMinerTelemetry": Role.READER,
        "HistoryService/GetMinerRiskHistory": Role.READER,
        "HistoryService/ListMinerEvents": Role.READER,
    }.items()
}

# Calls that cost seconds of CPU: rate limited per client.
EXPENSIVE = frozenset({f"/{PACKAGE}.TrainingService/Train", f"/{PACKAGE}.ScoringService/ScoreFleet"})

Behavior = Callable[..., Any]
Wrap = Callable[[str, Behavior], Behavior]


def rewrap(handler: grpc.RpcMethodHandler, method: str, unary: Wrap, stream: Wrap) -> grpc.RpcMethodHandler:
    """The handler with its behaviour wrapped: `unary` for single responses, `stream` for streams."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(method, handler.unary_unary), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(method, handler.stream_unary), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream(method, handler.unary_stream), **kwargs)
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(stream(method, handler.stream_stream), **kwargs)
    return handler


async def _responses(result: Any) -> AsyncIterator[Any]:
    """A streaming handler's responses: it is an async generator, or a coroutine that writes its
    responses itself with context.write (as grpc_health's Watch does)."""
    if hasattr(result, "__aiter__"):
        async for response in result:
            yield response
    else:
        await result


class _Interceptor(grpc.aio.ServerInterceptor):
    """Base: wraps the behaviour of every RPC (except `skip` prefixes) with `around_unary/stream`."""

    skip: tuple[str, ...] = ()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(self.skip):
            return handler
        return rewrap(handler, method, self.around_unary, self.around_stream)

    def around_unary(self, method: str, behavior: Behavior) -> Behavior:
        raise NotImplementedError

    def around_stream(self, method: str, behavior: Behavior) -> Behavior:
        raise NotImplementedError


def short_method(method: str) -> str:
    """'/mining.analytics.v1alpha1.FleetService/Status' -> 'FleetService/Status'."""
    return method.rsplit(".", 1)[-1] if method.startswith(f"/{PACKAGE}.") else method.lstrip("/")


class ProxyTrust:
    """Whose x-forwarded-for names the client: peers on the server's Unix socket (Envoy started with
    --with-envoy) and the configured proxies (setting trusted_proxies). Anyone else, loopback
    included, is named by its own address, so a local process cannot pick the address the audit log
    and the per-client rate limit see."""

    def __init__(self, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()) -> None:
        self._networks = tuple(networks)

    def _trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def client_address(self, context: grpc.aio.ServicerContext) -> str:
        """The caller's address: the peer's host, or, behind a trusted proxy, the address it saw."""
        peer = context.peer() or "unknown"
        kind, _, rest = peer.partition(":")
        if kind == "unix":
            host, trusted = "unix-socket", True
        elif kind in ("ipv4", "ipv6"):
            host = urllib.parse.unquote(rest.rsplit(":", 1)[0]).strip("[]")
            trusted = self._trusted(host)
        else:
            host, trusted = peer, False
        if trusted:
            # Envoy (use_remote_address) appends the address it saw last in x-forwarded-for.
            for key, value in context.invocation_metadata() or ():
                if key == "x-forwarded-for" and value:
                    return str(value).rsplit(",", 1)[-1].strip()
        return host


def client_address(context: grpc.aio.ServicerContext) -> str:
    """The caller's own address (no proxy trusted)."""
    return ProxyTrust().client_address(context)


# ---- metrics --------------------------------------------------------------------------------------


def _code_of(context: grpc.aio.ServicerContext, exc: BaseException | None) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if exc is None:
        return "OK"
    if isinstance(exc, BaseException) and type(exc).__name__ == "CancelledError":
        return "CANCELLED"
    return "UNKNOWN"


class MetricsInterceptor(_Interceptor):
    """Counts RPCs by method and status code, times them, counts ingested samples."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def _record(self, method: str, started: float, code: str) -> None:
        name = short_method(method)
        self._metrics.requests.labels(name, code).inc()
        # The server never ends a call CANCELLED itself: that is a client hanging up (a closed stream).
        if code not in ("OK", "CANCELLED"):
            self._metrics.errors.labels(name, code).inc()
        self._metrics.latency.labels(name).observe(time.perf_counter() - started)

    def _count(self, response: Any) -> None:
        if isinstance(response, telemetry_pb2.WriteMetricsResponse):
            self._metrics.samples_ingested.inc(response.written)

    def around_unary(self, method: str, behavior: Behavior) -> Behavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started, failure = time.perf_counter(), None
            try:
                response = await behavior(request, context)
                self._count(response)
                return response
            except BaseException as exc:
                failure = exc
                raise
            finally:
                self._record(method, started, _code_of(context, failure))

        return wrapped

    def around_stream(self, method: str, behavior: Behavior) -> Behavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started, failure = time.perf_counter(), None
            try:
                async for response in _responses(behavior(request, context)):
                    self._count(response)
                    yield response
            except BaseException as exc:
                failure = exc
                raise
            finally:
                self._record(method, started, _code_of(context, failure))

        return wrapped


# ---- authentication -------------------------------------------------------------------------------


class AuthInterceptor(_Interceptor):
    """Resolves the caller and checks the RPC's role; with no token store every caller may do anything.

    The principal is set in a context variable for the call (server.auth.current()).
    """

    skip = UNAUTHENTICATED_PREFIXES

    def __init__(
        self, tokens: TokenStore | None, refusals: RefusalLog | None = None, trust: ProxyTrust | None = None
    ) -> None:
        self._tokens = tokens
        self._refusals = refusals
        self._trust = trust or ProxyTrust()

    def authenticate(self, method: str, context: grpc.aio.ServicerContext) -> Principal:
        address = self._trust.client_address(context)
        if self._tokens is None:
            return Principal(name=address, roles=frozenset(Role))
        token = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                scheme, _, credentials = str(value).partition(" ")
                if scheme.lower() == "bearer" and credentials.strip():
                    token = credentials.strip()
        if token is None:
            self._deny(method, address, "UNAUTHENTICATED")
            raise Unauthenticated(
                "missing credentials: send the header 'authorization: Bearer <token>' "
                "(mint tokens with python -m server.auth mint)"
            )
        principal = self._tokens.resolve(token)
        if principal is None:
            self._deny(method, address, "UNAUTHENTICATED")
            raise Unauthenticated("invalid token: it is not in the server's tokens file")
        role = REQUIRED_ROLE.get(method)
        if role is None or not principal.has(role):
            self._deny(method, address, "PERMISSION_DENIED", principal.name)
            needed = role.value if role else "a role this server does not grant for it"
            raise PermissionDenied(
                f"token {principal.name!r} may not call {short_method(method)}: it needs the role {needed}",
                metadata={"required_role": role.value if role else ""},
            )
        return principal

    def _deny(self, method: str, address: str, outcome: str, who: str = "") -> None:
        # Counted every time; logged and audited at most once a minute per client (a flood of bad
        # tokens must not flood the logs).
        if self._refusals is not None:
            self._refusals.refused(short_method(method), address, outcome, who)

    def around_unary(self, method: str, behavior: Behavior) -> Behavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = auth.set_current(self.authenticate(method, context))
            try:
                return await behavior(request, context)
            finally:
                auth.reset_current(token)

        return wrapped

    def around_stream(self, method: str, behavior: Behavior) -> Behavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            # Each RPC runs in its own task (its own context), so the principal is not reset here:
            # resetting from a generator closed in another context would raise.
            auth.set_current(self.authenticate(method, context))
            async for response in _responses(behavior(request, context)):
                yield response

        return wrapped


# ---- audit ----------------------------------------------------------------------------------------


def _enum_name(message: Any, field: str) -> str:
    value = getattr(message, field)
    descriptor = message.DESCRIPTOR.fields_by_name[field].enum_type
    named = descriptor.values_by_number.get(value)
    return named.name if named else str(value)


# method -> (action, fields from the request, fields from the response)
_AUDITED: dict[str, tuple[str, Callable[[Any], dict[str, Any]], Callable[[Any], dict[str, Any]]]] = {
    f"/{PACKAGE}.{name}": spec
    for name, spec in {
        "TrainingService/Train": (
            "train",
            lambda q: {"model_kind": _enum_name(q, "model_kind"), "request_id": q.request_id},
            lambda r: {"job_id": r.job_id},
        ),
        "TrainingService/CancelTrainJob": (
            "cancel_job",
            lambda q: {"job_id": q.job_id},
            lambda r: {"state": _enum_name(r, "state")},
        ),
        "TrainingService/ActivateModel": (
            "activate_model",
            lambda q: {"model_kind": _enum_name(q, "model_kind"), "version": q.version},
            lambda r: {},
        ),
        "TelemetryService/WriteMetrics": (
            "write_metrics",
            lambda q: {"batch_id": q.batch_id},
            lambda r: {"written": r.written, "duplicates": r.duplicates, "registered": r.miners_registered},
        ),
        "TelemetryService/IngestMetrics": (
            "write_metrics",
            lambda q: {},
            lambda r: {
                "batch_id": r.batch_id,
                "written": r.written,
                "duplicates": r.duplicates,
                "registered": r.miners_registered,
            },
        ),
        "TelemetryService/RecordFailure": (
            "record_failure",
            lambda q: {"miner_id": q.miner_id, "mode": _enum_name(q, "mode")},
            lambda r: {"event_id": r.event_id},
        ),
        "TelemetryService/RecordRepair": (
            "record_repair",
            lambda q: {"event_id": q.event_id},
            lambda r: {"miner_id": r.miner_id},
        ),
        "TelemetryService/SetPlannedState": (
            "set_planned_state",
            lambda q: {"miner_id": q.miner_id, "kind": _enum_name(q, "kind")},
            lambda r: {"state_id": r.state_id},
        ),
        "TelemetryService/RecordFeedback": (
            "record_feedback",
            lambda q: {"miner_id": q.miner_id, "verdict": _enum_name(q, "verdict")},
            lambda r: {},
        ),
        "FleetService/Backup": (
            "backup",
            lambda q: {"name": q.name},
            lambda r: {"path": r.path, "samples": r.samples},
        ),
        "FleetService/UpsertMiner": (
            "upsert_miner",
            lambda q: {"miner_id": q.miner.miner_id},
            lambda r: {"changed_miner_id": r.miner_id},  # the path id may alias another miner
        ),
    }.items()
}


class AuditInterceptor(_Interceptor):
    """Writes an audit entry for every state-changing RPC, with the caller and the outcome."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method not in _AUDITED:
            return handler
        return rewrap(handler, handler_call_details.method, self.around_unary, self.around_stream)

    def _write(self, method: str, request: Any, response: Any, outcome: str) -> None:
        action, from_request, from_response = _AUDITED[method]
        fields: dict[str, Any] = {}
        try:
            if request is not None and not hasattr(request, "__aiter__"):
                fields.update(from_request(request))
            if response is not None:
                fields.update(from_response(response))
        except Exception:  # noqa: BLE001 - an audit detail must never fail the call
            log.exception("audit fields for %s", method)
        principal = auth.current()
        self._audit.record(action, who=principal.name, outcome=outcome, method=short_method(method), **fields)

    def around_unary(self, method: str, behavior: Behavior) -> Behavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                response = await behavior(request, context)
            except DomainError as exc:
                self._write(method, request, None, grpc_code(exc).name)
                raise
            self._write(method, request, response, "OK")
            return response

        return wrapped

    def around_stream(self, method: str, behavior: Behavior) -> Behavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for response in _responses(behavior(request, context)):
                    self._write(method, request, response, "OK")
                    yield response
            except DomainError as exc:
                self._write(method, request, None, grpc_code(exc).name)
                raise

        return wrapped


# ---- limits ---------------------------------------------------------------------------------------


class LimitsInterceptor(_Interceptor):
    """Refuses calls whose client already gave up, and rate limits expensive calls per client."""

    skip = UNAUTHENTICATED_PREFIXES

    def __init__(
        self,
        limiter: RateLimiter,
        metrics: Metrics | None = None,
        refusals: RefusalLog | None = None,
        trust: ProxyTrust | None = None,
    ) -> None:
        self._limiter = limiter
        self._metrics = metrics
        self._refusals = refusals
        self._trust = trust or ProxyTrust()

    async def _admit(self, method: str, context: grpc.aio.ServicerContext) -> None:
        remaining = context.time_remaining()
        if context.cancelled() or (remaining is not None and remaining <= 0):
            # The client is gone or out of time: starting the work would only waste CPU.
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline passed before it began"
            )
        if method in EXPENSIVE:
            try:
                self._limiter.acquire(auth.current().name, short_method(method))
            except RateLimited:
                if self._metrics is not None:
                    self._metrics.rate_limited.labels(short_method(method)).inc()
                if self._refusals is not None:
                    principal = auth.current()
                    self._refusals.refused(
                        short_method(method),
                        self._trust.client_address(context),
                        "RESOURCE_EXHAUSTED",
                        principal.name,
                    )
                raise

    def around_unary(self, method: str, behavior: Behavior) -> Behavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._admit(method, context)
            return await behavior(request, context)

        return wrapped

    def around_stream(self, method: str, behavior: Behavior) -> Behavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await self._admit(method, context)
            async for response in _responses(behavior(request, context)):
                yield response

        return wrapped
