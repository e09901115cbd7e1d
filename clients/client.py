"""A typed, synchronous Python client for the mining-fleet health gRPC API.

Every unary call carries a deadline. Unary calls that answer UNAVAILABLE (the server never saw the
request, or asked us to come back) are retried by the channel itself, with exponential back-off,
through a gRPC service-config `retryPolicy` (`service_config()`: the form every gRPC language
reads). Every other code surfaces at once as a `ClientError` carrying the status code, the
`google.rpc.ErrorInfo` reason and any `google.rpc.BadRequest` field violations.

Retries are safe for the calls that change state: `train` sends a `request_id` (generated when the
caller gives none) so a replayed Train returns the first job, and a replayed WriteMetrics batch
counts as duplicates. `record_failure`, `record_feedback` and `set_planned_state` have no
idempotency key in the contract; a retry after a lost reply may record the event twice.

Streams are resumed by one helper, `_resumable`: `subscribe_scores` re-opens after the last
sequence seen when the stream breaks with UNAVAILABLE; `watch_train_job` re-attaches (the server
sends the current snapshot first); `ingest_metrics` cannot be replayed and is not retried.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar

import grpc
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from mining.analytics.v1alpha1 import (
    common_pb2,
    fleet_pb2,
    fleet_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

log = logging.getLogger(__name__)

Response = TypeVar("Response")
ModelKindName = Literal["lstm", "autoencoder"]
RiskLevelName = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]

# Back-off between retries: base * 2**attempt seconds, capped (the channel adds its own jitter to
# unary retries; stream resumes add up to 20 %).
RETRY_BASE_S: Final = 0.2
RETRY_CAP_S: Final = 5.0
# gRPC caps a retry policy's maxAttempts at 5: one call and at most four retries.
MAX_RETRIES: Final = 4

PACKAGE: Final = "mining.analytics.v1alpha1"
SERVICES: Final = ("FleetService", "ScoringService", "TelemetryService", "TrainingService")
# Streams are resumed by the client (`_resumable`) or not at all (IngestMetrics): no channel retries.
STREAMING_METHODS: Final = (
    ("ScoringService", "SubscribeScores"),
    ("TrainingService", "WatchTrainJob"),
    ("TelemetryService", "IngestMetrics"),
)

FINAL_JOB_STATES: Final = frozenset(
    {
        training_pb2.JOB_STATE_SUCCEEDED,
        training_pb2.JOB_STATE_FAILED,
        training_pb2.JOB_STATE_CANCELLED,
        training_pb2.JOB_STATE_INTERRUPTED,
    }
)


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad request field, from `google.rpc.BadRequest`: its path and what is wrong."""

    field: str
    description: str


@dataclass
class ClientError(Exception):
    """A call failed. `reason` is the server's machine-readable ErrorInfo reason, when it sent one."""

    code: grpc.StatusCode
    message: str
    reason: str | None = None
    domain: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: tuple[FieldViolation, ...] = ()

    def __post_init__(self) -> None:
        Exception.__init__(self, str(self))

    def __str__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> ClientError:
        """Reads code, message and rich details (ErrorInfo, BadRequest) of a failed call."""
        code: grpc.StatusCode = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
        message: str = (error.details() if isinstance(error, grpc.Call) else None) or ""
        rich = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
        if rich is None:
            return cls(code=code, message=message)
        return cls.from_status(rich, code=code)

    @classmethod
    def from_status(cls, status: status_pb2.Status, *, code: grpc.StatusCode | None = None) -> ClientError:
        """Builds the error from a `google.rpc.Status` (a failed call's details or a stream's error event)."""
        resolved = code or _CODES_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
        error = cls(code=resolved, message=status.message)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(info):
                error.reason, error.domain, error.metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Unpack(bad_request):
                error.field_violations = tuple(
                    FieldViolation(v.field, v.description) for v in bad_request.field_violations
                )
        return error

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the CLI's --json error output)."""
        return {
            "code": self.code.name,
            "reason": self.reason,
            "message": self.message,
            "metadata": self.metadata,
            "field_violations": [
                {"field": v.field, "description": v.description} for v in self.field_violations
            ],
        }


_CODES_BY_NUMBER: Final = {code.value[0]: code for code in grpc.StatusCode}


def service_config(retries: int) -> dict[str, Any]:
    """The channel's service config: unary calls retry UNAVAILABLE `retries` times with back-off."""
    unary: dict[str, Any] = {"name": [{"service": f"{PACKAGE}.{service}"} for service in SERVICES]}
    if retries > 0:
        unary["retryPolicy"] = {
            "maxAttempts": retries + 1,
            "initialBackoff": f"{RETRY_BASE_S}s",
            "maxBackoff": f"{RETRY_CAP_S}s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
    # A method's own entry wins over its service's: the streams get none of the retry policy.
    streams = {"name": [{"service": f"{PACKAGE}.{s}", "method": m} for s, m in STREAMING_METHODS]}
    return {"methodConfig": [unary, streams]}


def to_timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def model_kind(kind: ModelKindName | str | int) -> common_pb2.ModelKind.ValueType:
    """'lstm' / 'autoencoder' (any case) or the enum number, as the ModelKind enum."""
    if isinstance(kind, int):
        return common_pb2.ModelKind.ValueType(kind)
    try:
        return common_pb2.ModelKind.Value(kind.upper())
    except ValueError as exc:
        raise ValueError(f"model kind {kind!r}: expected 'lstm' or 'autoencoder'") from exc


def risk_level(level: RiskLevelName | str | int | None) -> common_pb2.RiskLevel.ValueType:
    """'LOW'..'CRITICAL' (any case), the enum number, or None for no filter, as the RiskLevel enum."""
    if level is None:
        return common_pb2.RISK_LEVEL_UNSPECIFIED
    if isinstance(level, int):
        return common_pb2.RiskLevel.ValueType(level)
    try:
        return common_pb2.RiskLevel.Value(level.upper())
    except ValueError as exc:
        raise ValueError(f"risk level {level!r}: expected LOW, MEDIUM, HIGH or CRITICAL") from exc


class FleetHealthClient:
    """A client of the four services over one channel. Use it as a context manager, or call close().

    `target` is "host:port". `timeout` is the deadline in seconds of each unary call (streams take
    their own, default none: they are long-lived). `tls` switches to a secure channel; `token` is sent
    as `authorization: Bearer <token>`. `retries` (0..4) is how many times a call that answered
    UNAVAILABLE is tried again, and how many resumes in a row a broken stream gets. `options` are
    extra channel arguments, e.g. `("grpc.ssl_target_name_override", "miners.example")`.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 30,
        tls: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        retries: int = 3,
        options: Sequence[tuple[str, Any]] = (),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout: {timeout} s must be positive")
        if not 0 <= retries <= MAX_RETRIES:
            raise ValueError(f"retries: {retries} must be in 0..{MAX_RETRIES} (gRPC caps attempts at 5)")
        self.target = target
        self.timeout = timeout
        self.retries = retries
        self._sleep = sleep
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        channel_options = [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", json.dumps(service_config(retries))),
            # Ours, not one a DNS TXT record might supply.
            ("grpc.service_config_disable_resolution", 1),
            *options,
        ]
        self._channel = (
            grpc.secure_channel(target, tls, options=channel_options)
            if tls is not None
            else grpc.insecure_channel(target, options=channel_options)
        )
        self._fleet = fleet_pb2_grpc.FleetServiceStub(self._channel)
        self._scoring = scoring_pb2_grpc.ScoringServiceStub(self._channel)
        self._telemetry = telemetry_pb2_grpc.TelemetryServiceStub(self._channel)
        self._training = training_pb2_grpc.TrainingServiceStub(self._channel)

    def __enter__(self) -> FleetHealthClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        delay = min(RETRY_CAP_S, RETRY_BASE_S * 2**attempt)
        return delay * (1 + 0.2 * random.random())

    def _unary(self, method: Callable[..., Response], request: Any, timeout: float | None = None) -> Response:
        """Calls a unary method with deadline and metadata; the channel retries UNAVAILABLE."""
        try:
            return method(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise ClientError.from_rpc_error(exc) from None

    def _resumable(
        self,
        what: str,
        open_stream: Callable[[], Any],
        *,
        check: Callable[[Any], None] = lambda message: None,
        final: Callable[[Any], bool] = lambda message: False,
    ) -> Iterator[Any]:
        """Yields a server stream's messages; re-opens it (`open_stream()`) after UNAVAILABLE.

        `check` may raise ClientError for an in-band error message (an UNAVAILABLE one resumes too);
        the stream ends after a message for which `final` is true. At most `retries` resumes in a
        row: a message received resets the count.
        """
        failures = 0
        while True:
            stream = open_stream()
            try:
                for message in stream:
                    check(message)
                    failures = 0
                    yield message
                    if final(message):
                        return
                return
            except grpc.RpcError as exc:
                error = ClientError.from_rpc_error(exc)
            except ClientError as exc:
                error = exc
            finally:
                stream.cancel()
            if error.code != grpc.StatusCode.UNAVAILABLE or failures >= self.retries:
                raise error
            delay = self._backoff(failures)
            failures += 1
            log.warning("%s broke (%s); resuming in %.2f s", what, error, delay)
            self._sleep(delay)

    # -- FleetService ---------------------------------------------------------------------------

    def status(self) -> fleet_pb2.StatusResponse:
        """Loaded models, anomaly threshold, feature columns and the store's size."""
        return self._unary(self._fleet.Status, fleet_pb2.StatusRequest())

    def list_miners(
        self,
        *,
        page_size: int = 100,
        page_token: str = "",
        min_risk_level: RiskLevelName | str | int | None = None,
        hardware_model: str = "",
        site: str = "",
    ) -> fleet_pb2.ListMinersResponse:
        """One page of miners, highest risk first."""
        request = fleet_pb2.ListMinersRequest(
            page_size=page_size,
            page_token=page_token,
            min_risk_level=risk_level(min_risk_level),
            hardware_model=hardware_model,
            site=site,
        )
        return self._unary(self._fleet.ListMiners, request)

    def iter_miners(
        self,
        *,
        page_size: int = 500,
        min_risk_level: RiskLevelName | str | int | None = None,
        hardware_model: str = "",
        site: str = "",
    ) -> Iterator[common_pb2.Miner]:
        """Every miner matching the filter, page after page, highest risk first."""
        token = ""
        while True:
            page = self.list_miners(
                page_size=page_size,
                page_token=token,
                min_risk_level=min_risk_level,
                hardware_model=hardware_model,
                site=site,
            )
            yield from page.miners
            token = page.next_page_token
            if not token:
                return

    def get_miner(self, miner_id: str) -> common_pb2.Miner:
        """One miner, by id or alias (IP address, serial)."""
        return self._unary(self._fleet.GetMiner, fleet_pb2.GetMinerRequest(miner_id=miner_id))

    def upsert_miner(self, miner: common_pb2.Miner) -> common_pb2.Miner:
        """Registers a miner or updates its record."""
        return self._unary(self._fleet.UpsertMiner, fleet_pb2.UpsertMinerRequest(miner=miner))

    # -- ScoringService -------------------------------------------------------------------------

    def predict_failure_risk(
        self, miner_id: str, explain: bool = False
    ) -> scoring_pb2.PredictFailureRiskResponse:
        """The miner's failure probability within the horizon (and risk factors with explain)."""
        request = scoring_pb2.PredictFailureRiskRequest(miner_id=miner_id, explain=explain)
        return self._unary(self._scoring.PredictFailureRisk, request)

    def detect_anomalies(
        self, miner_id: str, start: datetime | None = None, end: datetime | None = None
    ) -> scoring_pb2.DetectAnomaliesResponse:
        """Anomaly scores of the miner's windows in [start, end] (default: the last 24 h of data)."""
        request = scoring_pb2.DetectAnomaliesRequest(miner_id=miner_id)
        if start is not None:
            request.start.CopyFrom(to_timestamp(start))
        if end is not None:
            request.end.CopyFrom(to_timestamp(end))
        return self._unary(self._scoring.DetectAnomalies, request)

    def score_fleet(
        self,
        *,
        miner_ids: Sequence[str] = (),
        min_risk_level: RiskLevelName | str | int | None = None,
        top_k: int = 0,
        hardware_model: str = "",
    ) -> scoring_pb2.ScoreFleetResponse:
        """Scores the fleet (or the given miners) and returns the top_k (0: server default) by risk."""
        request = scoring_pb2.ScoreFleetRequest(
            miner_ids=list(miner_ids),
            min_risk_level=risk_level(min_risk_level),
            top_k=top_k,
            hardware_model=hardware_model,
        )
        return self._unary(self._scoring.ScoreFleet, request)

    def subscribe_scores(
        self,
        *,
        miner_ids: Sequence[str] = (),
        min_risk_level: RiskLevelName | str | int | None = None,
        anomalies_only: bool = False,
        after_sequence: int = 0,
        heartbeat_seconds: int = 0,
        timeout: float | None = None,
    ) -> Generator[scoring_pb2.ScoreEvent, None, None]:
        """Score updates (and heartbeats, drop notices) as they happen; runs until closed.

        A stream broken by UNAVAILABLE (network, server draining) is re-opened after the last sequence
        seen, up to `retries` times in a row. `timeout` bounds the whole subscription (default none).
        """
        last_sequence = after_sequence

        def open_stream() -> Any:
            request = scoring_pb2.SubscribeScoresRequest(
                miner_ids=list(miner_ids),
                min_risk_level=risk_level(min_risk_level),
                anomalies_only=anomalies_only,
                after_sequence=last_sequence,
                heartbeat_seconds=heartbeat_seconds,
            )
            return self._scoring.SubscribeScores(request, timeout=timeout, metadata=self._metadata)

        def check(event: scoring_pb2.ScoreEvent) -> None:
            if event.WhichOneof("event") == "error":
                raise ClientError.from_status(event.error)

        for event in self._resumable("score stream", open_stream, check=check):
            last_sequence = max(last_sequence, event.sequence)
            yield event

    # -- TrainingService ------------------------------------------------------------------------

    def train(
        self,
        kind: ModelKindName | str,
        epochs: int | None = None,
        batch_size: int | None = None,
        validation_split: float | None = None,
        request_id: str | None = None,
        *,
        seed: int | None = None,
    ) -> training_pb2.TrainJob:
        """Starts a training job and returns it at once; absent parameters take the server defaults."""
        request = training_pb2.TrainRequest(
            model_kind=model_kind(kind),
            # A generated id makes our own retries idempotent: a replay returns the first job.
            request_id=request_id or uuid.uuid4().hex,
        )
        if epochs is not None:
            request.epochs = epochs
        if batch_size is not None:
            request.batch_size = batch_size
        if validation_split is not None:
            request.validation_split = validation_split
        if seed is not None:
            request.seed = seed
        return self._unary(self._training.Train, request)

    def get_train_job(self, job_id: str) -> training_pb2.TrainJob:
        return self._unary(self._training.GetTrainJob, training_pb2.GetTrainJobRequest(job_id=job_id))

    def list_train_jobs(
        self, kind: ModelKindName | str | None = None, page_size: int = 0
    ) -> training_pb2.ListTrainJobsResponse:
        request = training_pb2.ListTrainJobsRequest(
            model_kind=model_kind(kind) if kind else common_pb2.MODEL_KIND_UNSPECIFIED, page_size=page_size
        )
        return self._unary(self._training.ListTrainJobs, request)

    def watch_train_job(
        self, job_id: str, *, timeout: float | None = None
    ) -> Iterator[training_pb2.TrainJob]:
        """The job's snapshot, then one message per epoch and state change, until a final state.

        Re-attaches after UNAVAILABLE (the server replays the current snapshot first), up to
        `retries` times in a row. `timeout` bounds the whole watch (default none).
        """
        request = training_pb2.WatchTrainJobRequest(job_id=job_id)
        yield from self._resumable(
            f"watch of job {job_id}",
            lambda: self._training.WatchTrainJob(request, timeout=timeout, metadata=self._metadata),
            final=lambda job: job.state in FINAL_JOB_STATES,
        )

    def cancel_train_job(self, job_id: str) -> training_pb2.TrainJob:
        return self._unary(self._training.CancelTrainJob, training_pb2.CancelTrainJobRequest(job_id=job_id))

    def list_models(self, kind: ModelKindName | str | None = None) -> training_pb2.ListModelsResponse:
        """Registered model versions of a kind (or all), newest first."""
        request = training_pb2.ListModelsRequest(
            model_kind=model_kind(kind) if kind else common_pb2.MODEL_KIND_UNSPECIFIED
        )
        return self._unary(self._training.ListModels, request)

    def activate_model(self, kind: ModelKindName | str, version: str) -> training_pb2.ModelVersion:
        """Makes a registered version the active one (also how to roll back)."""
        request = training_pb2.ActivateModelRequest(model_kind=model_kind(kind), version=version)
        return self._unary(self._training.ActivateModel, request)

    # -- TelemetryService -----------------------------------------------------------------------

    def write_metrics(
        self,
        samples: Iterable[telemetry_pb2.MetricSample] = (),
        *,
        columns: telemetry_pb2.MetricColumns | None = None,
        batch_id: str = "",
    ) -> telemetry_pb2.WriteMetricsResponse:
        """Writes one batch atomically (all of it, or none on INVALID_ARGUMENT)."""
        request = telemetry_pb2.WriteMetricsRequest(samples=list(samples), columns=columns, batch_id=batch_id)
        return self._unary(self._telemetry.WriteMetrics, request)

    def ingest_metrics(
        self, batches: Iterable[telemetry_pb2.WriteMetricsRequest], *, timeout: float | None = None
    ) -> Iterator[telemetry_pb2.WriteMetricsResponse]:
        """Streams batches; yields one acknowledgement per stored batch, in order. Not retried."""
        stream = self._telemetry.IngestMetrics(iter(batches), timeout=timeout, metadata=self._metadata)
        try:
            yield from stream
        except grpc.RpcError as exc:
            raise ClientError.from_rpc_error(exc) from None
        finally:
            stream.cancel()

    def record_failure(
        self,
        miner_id: str,
        mode: common_pb2.FailureMode.ValueType | str,
        *,
        occurred_at: datetime | None = None,
        repaired_at: datetime | None = None,
        note: str = "",
    ) -> telemetry_pb2.FailureEvent:
        """Records a failure (mode e.g. "FAILURE_MODE_OUTAGE" or "outage"); occurred_at defaults to now."""
        if isinstance(mode, str):
            name = mode.upper()
            mode = common_pb2.FailureMode.Value(
                name if name.startswith("FAILURE_MODE_") else f"FAILURE_MODE_{name}"
            )
        request = telemetry_pb2.RecordFailureRequest(miner_id=miner_id, mode=mode, note=note)
        if occurred_at is not None:
            request.occurred_at.CopyFrom(to_timestamp(occurred_at))
        if repaired_at is not None:
            request.repaired_at.CopyFrom(to_timestamp(repaired_at))
        return self._unary(self._telemetry.RecordFailure, request)

    def list_failures(self, miner_id: str = "", page_size: int = 0) -> telemetry_pb2.ListFailuresResponse:
        request = telemetry_pb2.ListFailuresRequest(miner_id=miner_id, page_size=page_size)
        return self._unary(self._telemetry.ListFailures, request)

    def set_planned_state(
        self,
        miner_id: str,
        kind: telemetry_pb2.PlannedStateKind.ValueType | Literal["curtailment", "maintenance"],
        start: datetime,
        end: datetime,
        note: str = "",
    ) -> telemetry_pb2.PlannedState:
        """Records a planned curtailment or maintenance period, never turned into labels or alerts."""
        if isinstance(kind, str):
            kind = telemetry_pb2.PlannedStateKind.Value(f"PLANNED_STATE_KIND_{kind.upper()}")
        request = telemetry_pb2.SetPlannedStateRequest(
            miner_id=miner_id, kind=kind, start=to_timestamp(start), end=to_timestamp(end), note=note
        )
        return self._unary(self._telemetry.SetPlannedState, request)

    def record_feedback(
        self,
        miner_id: str,
        verdict: telemetry_pb2.FeedbackVerdict.ValueType | Literal["confirmed", "false_alarm"],
        *,
        model_version: str = "",
        note: str = "",
    ) -> telemetry_pb2.Feedback:
        """Records whether a risk alert on the miner was right ("confirmed") or not ("false_alarm")."""
        if isinstance(verdict, str):
            verdict = telemetry_pb2.FeedbackVerdict.Value(f"FEEDBACK_VERDICT_{verdict.upper()}")
        request = telemetry_pb2.RecordFeedbackRequest(
            miner_id=miner_id, verdict=verdict, model_version=model_version, note=note
        )
        return self._unary(self._telemetry.RecordFeedback, request)
