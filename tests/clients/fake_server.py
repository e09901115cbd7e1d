"""A scripted in-process gRPC server on the generated servicer bases, bound to port 0.

It lets the client tests pin behaviour the real server does not make easy to provoke (UNAVAILABLE
on demand, a stream that breaks mid-way, rich error details) and record what the client sent
(metadata, request ids, batches). End-to-end behaviour is tested against the real server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
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


def rich_status(
    code: int, message: str, reason: str, violations: dict[str, str] | None = None
) -> grpc.Status:
    details = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="mining.analytics", metadata={"k": "v"}))
    details.append(info)
    if violations:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in violations.items()
                ]
            )
        )
        details.append(bad)
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=details))


@dataclass
class Script:
    """What the fake answers, and what it saw."""

    unavailable_first: int = 0
    watch_hangs: bool = False  # WatchTrainJob sends one snapshot, then nothing until cancelled
    calls: list[str] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    train_requests: list[training_pb2.TrainRequest] = field(default_factory=list)
    batches: list[telemetry_pb2.WriteMetricsRequest] = field(default_factory=list)
    failures: list[telemetry_pb2.RecordFailureRequest] = field(default_factory=list)
    subscriptions: list[scoring_pb2.SubscribeScoresRequest] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)  # the other RPCs' requests, in order
    active_model: str = "lstm-3"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, name: str, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.calls.append(name)
            self.metadata.append({key: value for key, value in context.invocation_metadata()})
            failing = self.unavailable_first > 0
            self.unavailable_first -= failing
        if failing:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")


class Fleet(fleet_pb2_grpc.FleetServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    def Status(self, request: Any, context: grpc.ServicerContext) -> fleet_pb2.StatusResponse:
        self.script.enter("Status", context)
        return fleet_pb2.StatusResponse(miners=3, server_version="fake")

    def ListMiners(self, request: Any, context: grpc.ServicerContext) -> fleet_pb2.ListMinersResponse:
        self.script.enter("ListMiners", context)
        return fleet_pb2.ListMinersResponse(
            miners=[
                common_pb2.Miner(
                    miner_id=f"10.0.0.{n}",
                    hardware_model="Antminer S19 Pro",
                    risk_score=risk,
                    risk_level=level,
                )
                for n, risk, level in (
                    (1, 0.91, common_pb2.CRITICAL),
                    (2, 0.40, common_pb2.MEDIUM),
                    (3, 0.05, common_pb2.LOW),
                )
            ]
        )

    def GetMiner(self, request: Any, context: grpc.ServicerContext) -> common_pb2.Miner:
        self.script.enter("GetMiner", context)
        context.abort_with_status(
            rich_status(
                code_pb2.INVALID_ARGUMENT,
                "miner_id: must not be empty",
                "INVALID_ARGUMENT",
                {"miner_id": "must not be empty"},
            )
        )
        raise AssertionError


class Scoring(scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    def PredictFailureRisk(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.script.enter("PredictFailureRisk", context)
        context.abort_with_status(
            rich_status(code_pb2.FAILED_PRECONDITION, "no LSTM model is trained", "MODEL_NOT_TRAINED")
        )

    def ScoreFleet(self, request: Any, context: grpc.ServicerContext) -> scoring_pb2.ScoreFleetResponse:
        self.script.enter("ScoreFleet", context)
        self.script.requests.append(request)
        scores = [
            scoring_pb2.MinerScore(
                miner_id=f"10.0.0.{n}",
                risk_score=risk,
                risk_level=level,
                is_anomaly=n == 1,
                anomaly_score=0.5,
            )
            for n, risk, level in ((1, 0.91, common_pb2.CRITICAL), (2, 0.6, common_pb2.HIGH), (3, 0.3, 1))
        ]
        return scoring_pb2.ScoreFleetResponse(
            scores=scores[: request.top_k], miners_scored=3, miners_skipped=1, elapsed_ms=4.0
        )

    def SubscribeScores(
        self, request: Any, context: grpc.ServicerContext
    ) -> Iterator[scoring_pb2.ScoreEvent]:
        self.script.enter("SubscribeScores", context)
        self.script.subscriptions.append(request)
        first = request.after_sequence + 1
        for sequence in range(first, first + 2):
            yield scoring_pb2.ScoreEvent(
                sequence=sequence,
                update=scoring_pb2.MinerScore(
                    miner_id=f"m{sequence}", risk_score=0.5, risk_level=common_pb2.HIGH
                ),
            )
        if len(self.script.subscriptions) == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "server draining")
        # The second subscription ends with an error event that is not retryable.
        yield scoring_pb2.ScoreEvent(
            sequence=first + 2,
            error=status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message="token revoked"),
        )


class Training(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    def Train(
        self, request: training_pb2.TrainRequest, context: grpc.ServicerContext
    ) -> training_pb2.TrainJob:
        self.script.train_requests.append(request)  # recorded before a scripted UNAVAILABLE, too
        self.script.enter("Train", context)
        return self._job(training_pb2.JOB_STATE_QUEUED, 0)

    def GetTrainJob(self, request: Any, context: grpc.ServicerContext) -> training_pb2.TrainJob:
        return self._job(training_pb2.JOB_STATE_RUNNING, 1)

    def WatchTrainJob(self, request: Any, context: grpc.ServicerContext) -> Iterator[training_pb2.TrainJob]:
        self.script.enter("WatchTrainJob", context)
        yield self._job(training_pb2.JOB_STATE_RUNNING, 0)
        if self.script.watch_hangs:
            while context.is_active():
                time.sleep(0.05)
            return
        for epoch in (1, 2, 3):
            yield self._job(training_pb2.JOB_STATE_RUNNING, epoch)
        done = self._job(training_pb2.JOB_STATE_SUCCEEDED, 3)
        done.model_version, done.promoted = "lstm-fake-1", True
        done.metrics["val_roc_auc"] = 0.91
        yield done

    def CancelTrainJob(self, request: Any, context: grpc.ServicerContext) -> training_pb2.TrainJob:
        self.script.enter("CancelTrainJob", context)
        self.script.requests.append(request)
        return self._job(training_pb2.JOB_STATE_CANCELLED, 1)

    def ListModels(self, request: Any, context: grpc.ServicerContext) -> training_pb2.ListModelsResponse:
        self.script.enter("ListModels", context)
        return training_pb2.ListModelsResponse(
            models=[
                training_pb2.ModelVersion(
                    model_kind=common_pb2.LSTM,
                    version=version,
                    active=version == self.script.active_model,
                    job_id=f"job-{version[-1]}",
                    metrics={"val_roc_auc": auc},
                )
                for version, auc in (("lstm-3", 0.81), ("lstm-2", 0.79), ("lstm-1", 0.75))
            ]
        )

    def ActivateModel(self, request: Any, context: grpc.ServicerContext) -> training_pb2.ModelVersion:
        self.script.enter("ActivateModel", context)
        self.script.requests.append(request)
        self.script.active_model = request.version
        return training_pb2.ModelVersion(model_kind=request.model_kind, version=request.version, active=True)

    @staticmethod
    def _job(state: int, epoch: int) -> training_pb2.TrainJob:
        return training_pb2.TrainJob(
            job_id="job-1",
            model_kind=common_pb2.LSTM,
            state=state,  # type: ignore[arg-type]
            params=training_pb2.TrainParams(epochs=3, batch_size=32),
            epoch=epoch,
            train_loss=0.1 / (epoch + 1),
            val_loss=0.2 / (epoch + 1),
        )


class Telemetry(telemetry_pb2_grpc.TelemetryServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    def WriteMetrics(self, request: Any, context: grpc.ServicerContext) -> telemetry_pb2.WriteMetricsResponse:
        self.script.enter("WriteMetrics", context)
        self.script.batches.append(request)
        return telemetry_pb2.WriteMetricsResponse(written=len(request.samples), batch_id=request.batch_id)

    def IngestMetrics(
        self, requests: Any, context: grpc.ServicerContext
    ) -> Iterator[telemetry_pb2.WriteMetricsResponse]:
        self.script.enter("IngestMetrics", context)
        for request in requests:
            self.script.batches.append(request)
            rows = len(request.samples) + len(request.columns.miner_id)
            yield telemetry_pb2.WriteMetricsResponse(written=rows, batch_id=request.batch_id)

    def RecordFailure(self, request: Any, context: grpc.ServicerContext) -> telemetry_pb2.FailureEvent:
        self.script.enter("RecordFailure", context)
        self.script.failures.append(request)
        return telemetry_pb2.FailureEvent(event_id="f-1", miner_id=request.miner_id, mode=request.mode)

    def ListFailures(self, request: Any, context: grpc.ServicerContext) -> telemetry_pb2.ListFailuresResponse:
        self.script.enter("ListFailures", context)
        self.script.requests.append(request)
        return telemetry_pb2.ListFailuresResponse(
            failures=[
                telemetry_pb2.FailureEvent(
                    event_id=f"f-{n}",
                    miner_id="10.0.0.1",
                    mode=common_pb2.FAILURE_MODE_FAN,
                    source=common_pb2.EVENT_SOURCE_MANUAL,
                    note=f"ticket {n}",
                )
                for n in (2, 1)
            ]
        )

    def RecordFeedback(self, request: Any, context: grpc.ServicerContext) -> telemetry_pb2.Feedback:
        self.script.enter("RecordFeedback", context)
        self.script.requests.append(request)
        return telemetry_pb2.Feedback(
            feedback_id="fb-1",
            miner_id=request.miner_id,
            verdict=request.verdict,
            model_version=request.model_version or "lstm-3",
            note=request.note,
        )


@dataclass
class FakeServer:
    server: grpc.Server
    port: int
    script: Script

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(0).wait()


def start_fake_server(script: Script | None = None) -> FakeServer:
    script = script or Script()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    fleet_pb2_grpc.add_FleetServiceServicer_to_server(Fleet(script), server)
    scoring_pb2_grpc.add_ScoringServiceServicer_to_server(Scoring(script), server)
    training_pb2_grpc.add_TrainingServiceServicer_to_server(Training(script), server)
    telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(Telemetry(script), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return FakeServer(server, port, script)
