"""TrainingService servicer: Train, GetTrainJob, ListTrainJobs, WatchTrainJob, CancelTrainJob,
ListModels, ActivateModel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from mining.analytics.v1alpha1 import common_pb2, training_pb2, training_pb2_grpc

from server.domain.jobs import JobRecord
from server.domain.models_admin import ModelsAdmin
from server.domain.training import TrainingJobs
from server.errors import InvalidArgument
from server.models.registry import ModelVersionInfo
from server.transport.convert import optional, to_timestamp


class TrainingServicer(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, jobs: TrainingJobs, admin: ModelsAdmin) -> None:
        self._jobs = jobs
        self._admin = admin

    async def Train(
        self, request: training_pb2.TrainRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.TrainJob:
        _check_path_agrees(request, context)
        job = await self._jobs.start(
            request.model_kind,
            epochs=optional(request, "epochs"),
            batch_size=optional(request, "batch_size"),
            validation_split=optional(request, "validation_split"),
            seed=optional(request, "seed"),
            request_id=request.request_id,
        )
        return job_to_proto(job)

    async def GetTrainJob(
        self, request: training_pb2.GetTrainJobRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.TrainJob:
        return job_to_proto(await self._jobs.get(request.job_id))

    async def ListTrainJobs(
        self, request: training_pb2.ListTrainJobsRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.ListTrainJobsResponse:
        jobs = await self._jobs.list(request.model_kind, request.page_size)
        return training_pb2.ListTrainJobsResponse(jobs=[job_to_proto(job) for job in jobs])

    async def WatchTrainJob(
        self, request: training_pb2.WatchTrainJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[training_pb2.TrainJob]:
        async for job in self._jobs.watch(request.job_id):
            yield job_to_proto(job)

    async def CancelTrainJob(
        self, request: training_pb2.CancelTrainJobRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.TrainJob:
        return job_to_proto(await self._jobs.cancel(request.job_id))

    async def ListModels(
        self, request: training_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.ListModelsResponse:
        versions = await self._admin.list(request.model_kind)
        return training_pb2.ListModelsResponse(models=[version_to_proto(v) for v in versions])

    async def ActivateModel(
        self, request: training_pb2.ActivateModelRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.ModelVersion:
        return version_to_proto(await self._admin.activate(request.model_kind, request.version))


def job_to_proto(job: JobRecord) -> training_pb2.TrainJob:
    return training_pb2.TrainJob(
        job_id=job.job_id,
        model_kind=int(job.kind),
        state=int(job.state),
        params=training_pb2.TrainParams(
            epochs=job.params.epochs,
            batch_size=job.params.batch_size,
            validation_split=job.params.validation_split,
            seed=job.params.seed,
        ),
        epoch=job.epoch,
        train_loss=job.train_loss,
        val_loss=job.val_loss,
        elapsed_seconds=job.elapsed_seconds,
        samples_per_second=job.samples_per_second,
        created_at=to_timestamp(job.created_at),
        started_at=to_timestamp(job.started_at),
        finished_at=to_timestamp(job.finished_at),
        error=job.error,
        metrics=job.metrics,
        model_version=job.model_version,
        promoted=job.promoted,
        request_id=job.request_id,
        message=job.message,
    )


def version_to_proto(info: ModelVersionInfo) -> training_pb2.ModelVersion:
    return training_pb2.ModelVersion(
        model_kind=int(info.kind),
        version=info.version,
        trained_at=to_timestamp(info.created_at),
        active=info.active,
        job_id=info.job_id,
        metrics=info.metrics,
        feature_columns=info.feature_columns,
        sequence_length=info.sequence_length,
    )


_TRAIN_PATH = "/api/advanced/train/"


def _check_path_agrees(request: training_pb2.TrainRequest, context: grpc.aio.ServicerContext) -> None:
    """POST /api/advanced/train/{model_kind} with a body naming another kind: INVALID_ARGUMENT.

    The transcoder lets the body's model_kind override the path's; Envoy passes the REST path on
    as x-envoy-original-path, so the two are compared here.
    """
    path = next((str(v) for k, v in context.invocation_metadata() or () if k == "x-envoy-original-path"), "")
    if not path.startswith(_TRAIN_PATH):
        return
    segment = path[len(_TRAIN_PATH) :].split("?", 1)[0].split("/", 1)[0].upper()
    named = {name: number for name, number in common_pb2.ModelKind.items()}
    in_path = named.get(segment, named.get(f"MODEL_KIND_{segment}"))
    if in_path is not None and in_path != request.model_kind:
        raise InvalidArgument.for_field(
            "model_kind",
            f"the body says {common_pb2.ModelKind.Name(request.model_kind)} but the path says {segment}; "
            "leave model_kind out of the body (the path names the model)",
        )
