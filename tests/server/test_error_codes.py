"""Domain error kinds know no gRPC; the transport's one table gives each its status code."""

from __future__ import annotations

import grpc

from server import errors
from server.store.db import StoreClosed, StoreLocked
from server.transport.codes import grpc_code


def test_each_domain_error_kind_maps_to_its_grpc_code() -> None:
    assert (
        grpc_code(errors.InvalidArgument.for_field("epochs", "must be >= 1"))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        grpc_code(errors.MinerNotFound("10.0.0.1")) == grpc.StatusCode.NOT_FOUND
    )  # a subclass takes its base's
    assert grpc_code(errors.ModelNotTrained("train one")) == grpc.StatusCode.FAILED_PRECONDITION
    assert grpc_code(errors.InsufficientHistory("10.0.0.1", 3, 60)) == grpc.StatusCode.FAILED_PRECONDITION
    assert grpc_code(errors.AlreadyExists("a job runs")) == grpc.StatusCode.ALREADY_EXISTS
    assert grpc_code(errors.RateLimited("slow down", retry_after_s=2.0)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert grpc_code(errors.Unauthenticated("who?")) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_code(errors.PermissionDenied("no")) == grpc.StatusCode.PERMISSION_DENIED
    assert grpc_code(StoreLocked("busy")) == grpc.StatusCode.UNAVAILABLE
    assert grpc_code(StoreClosed("closed")) == grpc.StatusCode.FAILED_PRECONDITION
    assert grpc_code(errors.DomainError("no kind")) == grpc.StatusCode.INTERNAL


def test_domain_errors_carry_no_grpc_code() -> None:
    assert not any(hasattr(kind, "code") for kind in errors.DomainError.__subclasses__())
    assert "grpc" not in vars(errors)
