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

from server.errors import DomainError
from server.transport.codes import grpc_code
from server.transport.interceptors import rewrap

log = logging.getLogger(__name__)

ERROR_DOMAIN = "mining.analytics"


def to_rpc_status(error: DomainError) -> grpc.Status:
    """The rich gRPC status for a domain error."""
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    details = [_pack(info)]
    if error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        details.append(_pack(bad))
    retry_after_s = getattr(error, "retry_after_s", None)
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(retry_after_s * 1000))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = status_pb2.Status(code=grpc_code(error).value[0], message=error.message, details=details)
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
        log.info("%s -> %s %s: %s", method, grpc_code(exc).name, exc.reason, exc.message)
        await context.abort_with_status(to_rpc_status(exc))
    incident = uuid.uuid4().hex[:12]
    log.error("%s failed (incident %s)", method, incident, exc_info=exc)
    await context.abort_with_status(internal_status(incident))


_PASS_THROUGH = (grpc.aio.AbortError, grpc.RpcError)


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
