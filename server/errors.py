"""Domain errors: one small hierarchy of kinds, each with a machine-readable reason.

No gRPC here: the transport maps each kind to a gRPC status code in one table
(server/transport/codes.py) and sends the status from one interceptor (server/transport/errors.py).
"""

from __future__ import annotations

from dataclasses import dataclass


def next_step(rpc: str, **params: str) -> str:
    """A surface-neutral pointer to the call that fixes an error, for a message or a violation.

    `rpc` is "Service.Method" (e.g. "FleetService.ListMiners"); params fill the REST route's
    variables (e.g. miner_id="10.0.0.1"). The transport renders it for the caller's surface: a REST
    caller reads the method's route (its google.api.http rule), a gRPC caller the method
    ("FleetService.ListMiners"); nothing below the transport names a REST path.
    """
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return f"<<{rpc}{'?' + query if query else ''}>>"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad request field: its path (e.g. "epochs", "samples[3].temperature_c") and what is wrong."""

    field: str
    description: str


class DomainError(Exception):
    """Base class. `message` is safe to show a client; it names the field and the fix."""

    reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: tuple[FieldViolation, ...] = (),
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.violations = violations
        self.metadata = dict(metadata or {})


class InvalidArgument(DomainError):
    """A request field is malformed or out of range."""

    reason = "INVALID_ARGUMENT"

    @classmethod
    def for_field(cls, field: str, description: str, *, reason: str | None = None) -> InvalidArgument:
        return cls(f"{field}: {description}", reason=reason, violations=(FieldViolation(field, description),))

    @classmethod
    def for_fields(cls, violations: list[FieldViolation], *, reason: str | None = None) -> InvalidArgument:
        shown = "; ".join(f"{v.field}: {v.description}" for v in violations[:10])
        more = f" (and {len(violations) - 10} more)" if len(violations) > 10 else ""
        return cls(
            f"{len(violations)} invalid field(s): {shown}{more}", reason=reason, violations=tuple(violations)
        )


class NotFound(DomainError):
    """The named thing does not exist."""

    reason = "NOT_FOUND"


class MinerNotFound(NotFound):
    reason = "MINER_NOT_FOUND"

    def __init__(self, miner_id: str) -> None:
        super().__init__(
            f"miner_id: no miner {miner_id!r} in the store; "
            f"list miners with {next_step('FleetService.ListMiners')}",
            metadata={"miner_id": miner_id},
        )


class EventNotFound(NotFound):
    reason = "EVENT_NOT_FOUND"

    def __init__(self, event_id: str) -> None:
        super().__init__(
            f"event_id: no failure event {event_id[:64]!r}; list them with "
            f"{next_step('TelemetryService.ListFailures')}",
            metadata={"event_id": event_id[:64]},
        )


class FailedPrecondition(DomainError):
    """The system is not in a state that allows the call."""

    reason = "FAILED_PRECONDITION"


class ModelNotTrained(FailedPrecondition):
    reason = "MODEL_NOT_TRAINED"


class InsufficientHistory(FailedPrecondition):
    reason = "INSUFFICIENT_HISTORY"

    def __init__(self, miner_id: str, have: int, need: int) -> None:
        super().__init__(
            f"miner {miner_id!r} has {have} sample(s) in the window, {need} are needed; "
            f"wait for more telemetry or write more with {next_step('TelemetryService.WriteMetrics')}",
            metadata={"miner_id": miner_id, "have": str(have), "need": str(need)},
        )


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"


class Unavailable(DomainError):
    reason = "UNAVAILABLE"


class ResourceExhausted(DomainError):
    reason = "RESOURCE_EXHAUSTED"


class RateLimited(ResourceExhausted):
    """Too many expensive calls from one client; `retry_after_s` says when the next one is allowed."""

    reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, metadata={"retry_after_s": f"{retry_after_s:.1f}"})
        self.retry_after_s = retry_after_s


class Unauthenticated(DomainError):
    """No credentials, or credentials the server does not know."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    """Valid credentials that lack the role the call needs."""

    reason = "PERMISSION_DENIED"
