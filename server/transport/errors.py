"""Maps exceptions to gRPC statuses in one place: an interceptor around every RPC.

Domain errors carry their reason (server/errors.py) and take their code from one table
(server/transport/codes.py); they go out with their message,
a `google.rpc.ErrorInfo` (machine-readable reason) and, for bad fields, `google.rpc.BadRequest`.
Anything else is logged with its traceback and answered INTERNAL with a generic message.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from server.errors import DomainError, PermissionDenied, RateLimited, Unauthenticated
from server.transport import next_steps
from server.transport.codes import grpc_code
from server.transport.interceptors import rewrap

log = logging.getLogger(__name__)

ERROR_DOMAIN = "mining.analytics"

# Error size bounds: a status (message plus details) stays under 4 KiB however bad the request, so
# it fits every proxy's and client's header limits (Envoy, grpcio's 8/16 KiB trailer limits).
MAX_VIOLATIONS = 20
"""Field violations listed in BadRequest; ErrorInfo metadata `violations` gives the total."""
MAX_MESSAGE = 480
MAX_FIELD_TEXT = 120
MAX_STATUS_BYTES = 2800
"""The packed google.rpc.Status (before base64 in the trailer) stays under this."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_rpc_status(error: DomainError, *, rest: bool = False) -> grpc.Status:
    """The rich gRPC status for a domain error, bounded: at most MAX_VIOLATIONS field violations
    (the total in ErrorInfo metadata), clipped texts, under MAX_STATUS_BYTES in all. Its next steps
    name REST routes when `rest`, RPCs otherwise."""
    metadata = {_clip(k, 64): _clip(v, MAX_FIELD_TEXT) for k, v in error.metadata.items()}
    if step := next_steps.first(error.message):
        metadata.setdefault("next_step", _clip(step, MAX_FIELD_TEXT))
    violations = [
        error_details_pb2.BadRequest.FieldViolation(
            field=_clip(v.field, MAX_FIELD_TEXT),
            description=_clip(next_steps.render(v.description, rest=rest), MAX_FIELD_TEXT * 2),
        )
        for v in error.violations[:MAX_VIOLATIONS]
    ]
    if len(error.violations) > MAX_VIOLATIONS:
        metadata["violations"] = str(len(error.violations))
        metadata["violations_listed"] = str(len(violations))
    message = _clip(next_steps.render(error.message, rest=rest), MAX_MESSAGE)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata)
    base = status_pb2.Status(
        code=grpc_code(error).value[0], message=message, details=[_pack(info)]
    ).ByteSize()
    while violations:
        size = base + _pack(error_details_pb2.BadRequest(field_violations=violations)).ByteSize() + 8
        if size <= MAX_STATUS_BYTES:
            break
        violations = violations[: len(violations) // 2]  # long descriptions: list fewer
        metadata["violations"] = str(len(error.violations))
        metadata["violations_listed"] = str(len(violations))
        info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata)
    details = [_pack(info)]
    if violations:
        details.append(_pack(error_details_pb2.BadRequest(field_violations=violations)))
    retry_after_s = getattr(error, "retry_after_s", None)
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(retry_after_s * 1000))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = status_pb2.Status(code=grpc_code(error).value[0], message=message, details=details)
    rich = rpc_status.to_status(status)
    if retry_after_s is not None:
        # Also as a plain header-style hint (HTTP clients behind Envoy read it as Retry-After).
        hint = ("retry-after", str(max(1, math.ceil(retry_after_s))))
        rich = rich._replace(trailing_metadata=(*rich.trailing_metadata, hint))  # type: ignore[attr-defined]
    return rich


def internal_status(incident: str) -> grpc.Status:
    message = f"internal error (incident {incident}); the server log has the details"
    info = error_details_pb2.ErrorInfo(
        reason="INTERNAL", domain=ERROR_DOMAIN, metadata={"incident": incident}
    )
    status = status_pb2.Status(code=code_pb2.INTERNAL, message=message, details=[_pack(info)])
    return rpc_status.to_status(status)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


async def _abort_for(exc: Exception, context: grpc.aio.ServicerContext, method: str) -> None:
    if isinstance(exc, NotImplementedError):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    if isinstance(exc, DomainError):
        if not isinstance(exc, _REFUSALS):  # refusals are logged, rate-limited, by ops.audit.RefusalLog
            log.info(
                "%s -> %s %s: %s", method, grpc_code(exc).name, exc.reason, _clip(exc.message, MAX_MESSAGE)
            )
        rest = next_steps.is_rest(context.invocation_metadata())
        await context.abort_with_status(to_rpc_status(exc, rest=rest))
    incident = uuid.uuid4().hex[:12]
    log.error("%s failed (incident %s)", method, incident, exc_info=exc)
    await context.abort_with_status(internal_status(incident))


_PASS_THROUGH = (grpc.aio.AbortError, grpc.RpcError)
_REFUSALS = (Unauthenticated, PermissionDenied, RateLimited)


def _wrap_unary(method: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behavior(request, context)
        except _PASS_THROUGH:
            raise
        except Exception as exc:  # noqa: BLE001 - the one place unknown errors are caught
            await _abort_for(exc, context, method)

    return wrapped


def _wrap_stream(
    method: str, behavior: Callable[..., AsyncIterator[Any]]
) -> Callable[..., AsyncIterator[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in behavior(request, context):
                yield item
        except _PASS_THROUGH:
            raise
        except Exception as exc:  # noqa: BLE001
            await _abort_for(exc, context, method)

    return wrapped


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler so exceptions become proper statuses."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        return rewrap(handler, method, _wrap_unary, _wrap_stream)
