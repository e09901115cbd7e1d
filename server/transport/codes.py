"""The one table from domain error kinds to gRPC status codes (server/errors.py knows no gRPC)."""

from __future__ import annotations

import grpc

from server.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

GRPC_CODES: dict[type[DomainError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}
"""Each kind's code; a subclass (MinerNotFound, RateLimited, StoreLocked...) takes its base's."""


def grpc_code(error: DomainError) -> grpc.StatusCode:
    """The status code of a domain error: its nearest kind in GRPC_CODES, else INTERNAL."""
    for kind in type(error).__mro__:
        code = GRPC_CODES.get(kind)  # type: ignore[call-overload]
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL
