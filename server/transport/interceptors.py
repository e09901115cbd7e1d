"""Interceptors for security and operations: metrics, authentication, audit, limits.

The server installs them in this order, outermost first:

    MetricsInterceptor      counts every RPC and its final status code, times it
    ErrorMappingInterceptor (server/transport/errors.py) turns exceptions into statuses
    AuthInterceptor         bearer token -> Principal (a context variable for the call); role check
    AuditInterceptor        writes who did what for state-changing RPCs
    LimitsInterceptor       refuses calls already cancelled or past their deadline; rate limits

What each interceptor does for an RPC comes from its one policy (server/transport/policy.py: role,
rate class, audit); an RPC without a policy is refused to every caller. Auth and limits raise domain
errors (Unauthenticated, PermissionDenied, RateLimited), so the one error-mapping interceptor turns
them into statuses like any other error. Health and reflection are never authenticated (load
balancers and grpcurl need them).

The wrapping is written here rather than taken from grpc-interceptor (PyPI): its one `intercept`
serves unary and streaming calls alike, so each interceptor would have to tell them apart from the
handler's result to time or audit a stream's end; and it wraps every method, where these wrap only
the calls a policy names (audit) and leave health and reflection alone.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from mining.analytics.v1alpha1 import telemetry_pb2

from server import auth
from server.auth import Principal, Role, TokenStore
from server.errors import DomainError, PermissionDenied, RateLimited, Unauthenticated
from server.ops.audit import AuditLog, RefusalLog
from server.ops.limits import RateLimiter
from server.ops.metrics import Metrics
from server.transport.codes import grpc_code
from server.transport.policy import PACKAGE, Audit, RateClass, policy_for

log = logging.getLogger(__name__)

UNAUTHENTICATED_PREFIXES = ("/grpc.health.", "/grpc.reflection.")

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
        """The caller, allowed by the RPC's policy; an RPC without a policy is refused to everyone."""
        address = self._trust.client_address(context)
        principal = self._resolve(method, address, context)
        policy = policy_for(method)
        if policy is None:
            self._deny(method, address, "PERMISSION_DENIED", principal.name)
            raise PermissionDenied(
                f"{short_method(method)} has no policy on this server, so it is refused to every caller",
                metadata={"required_role": ""},
            )
        if not principal.has(policy.role):
            self._deny(method, address, "PERMISSION_DENIED", principal.name)
            raise PermissionDenied(
                f"token {principal.name!r} may not call {short_method(method)}: it needs the role "
                f"{policy.role.value}",
                metadata={"required_role": policy.role.value},
            )
        return principal

    def _resolve(self, method: str, address: str, context: grpc.aio.ServicerContext) -> Principal:
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


class AuditInterceptor(grpc.aio.ServerInterceptor):
    """Writes an audit entry for every RPC whose policy names an audit, with the caller and the outcome."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        policy = policy_for(handler_call_details.method)
        if handler is None or policy is None or policy.audit is None:
            return handler  # no policy: AuthInterceptor refuses the call before it runs
        audit = policy.audit
        return rewrap(
            handler,
            handler_call_details.method,
            lambda method, behavior: self._around_unary(method, behavior, audit),
            lambda method, behavior: self._around_stream(method, behavior, audit),
        )

    def _write(self, method: str, audit: Audit, request: Any, response: Any, outcome: str) -> None:
        fields: dict[str, Any] = {}
        try:
            if request is not None and not hasattr(request, "__aiter__"):
                fields.update(audit.request(request))
            if response is not None:
                fields.update(audit.response(response))
        except Exception:  # noqa: BLE001 - an audit detail must never fail the call
            log.exception("audit fields for %s", method)
        principal = auth.current()
        self._audit.record(
            audit.action, who=principal.name, outcome=outcome, method=short_method(method), **fields
        )

    def _around_unary(self, method: str, behavior: Behavior, audit: Audit) -> Behavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                response = await behavior(request, context)
            except DomainError as exc:
                self._write(method, audit, request, None, grpc_code(exc).name)
                raise
            self._write(method, audit, request, response, "OK")
            return response

        return wrapped

    def _around_stream(self, method: str, behavior: Behavior, audit: Audit) -> Behavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for response in _responses(behavior(request, context)):
                    self._write(method, audit, request, response, "OK")
                    yield response
            except DomainError as exc:
                self._write(method, audit, request, None, grpc_code(exc).name)
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
        policy = policy_for(method)
        if policy is not None and policy.rate_class is RateClass.EXPENSIVE:
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
