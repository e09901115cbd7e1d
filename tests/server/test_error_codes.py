"""Domain error kinds know no gRPC and name no REST path; the transport gives each its status code
(one table) and renders its next steps for the caller's surface."""

from __future__ import annotations

from pathlib import Path

import grpc

from server import errors
from server.store.db import StoreClosed, StoreLocked
from server.transport import next_steps
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


def test_next_steps_render_as_the_rest_route_or_the_grpc_method() -> None:
    register = errors.next_step("FleetService.UpsertMiner", **{"miner.miner_id": "10.0.0.9"})
    text = (
        f"register it first ({register}); or {errors.next_step('TrainingService.Train', model_kind='lstm')}"
    )
    assert next_steps.render(text, rest=True) == (
        "register it first (PUT /api/advanced/miners/10.0.0.9); or POST /api/advanced/train/lstm"
    )
    assert next_steps.render(text, rest=False) == (
        "register it first (FleetService.UpsertMiner); or TrainingService.Train"
    )
    assert next_steps.is_rest([("x-envoy-original-path", "/api/advanced/status")])
    assert not next_steps.is_rest([("user-agent", "grpc-python")])


def test_no_rest_path_is_written_below_the_transport() -> None:
    root = Path(__file__).resolve().parents[2] / "server"
    below = [
        *root.glob("domain/*.py"),
        *root.glob("models/*.py"),
        *root.glob("store/*.py"),
        root / "errors.py",
    ]
    named = [str(path) for path in below if "/api/advanced/" in path.read_text()]
    assert named == []
