"""Training jobs: start, follow, cancel; one job per model kind at a time, each in its own process.

Training runs in a separate process (spawned, one torch thread) so serving keeps its core and a crash
in training never takes the server down. The parent loads the training data from the store (only the
server process opens the DuckDB file), the child trains, evaluates, writes a versioned artifact to
the registry and decides promotion; the parent then reloads the active models. Job records are saved
in the store on every state change and epoch, so they survive restarts (a job cut off by a restart
reads as INTERRUPTED).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from server.config import Settings
from server.domain import validation
from server.domain.jobs import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    TRAINING_DEFAULTS,
    JobRecord,
    JobState,
    ModelKind,
    TrainParams,
)
from server.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, next_step
from server.store import FleetStore

log = logging.getLogger(__name__)

# The child's entry point: worker(kind, params, job_id, data, settings, events, cancel).
Worker = Callable[..., None]
# Called in the server after a job registered a model (to reload the active models).
ModelsChanged = Callable[[], None]


class _CancelledWhileQueued(Exception):
    """The job was cancelled before it got to train."""


class _Running:
    """Book-keeping for one live job."""

    def __init__(self, kind: ModelKind, cancel: Any) -> None:
        self.kind = kind
        self.cancel = cancel
        self.process: Any = None  # set once the worker process has started
        self.cancel_requested = False


class TrainingJobs:
    """Starts and supervises training jobs."""

    def __init__(
        self,
        store: FleetStore,
        settings: Settings,
        *,
        load_data: Callable[[], Any],
        worker: Worker,
        on_models_changed: ModelsChanged,
    ) -> None:
        self._store = store
        self._settings = settings
        self._load_data = load_data
        self._worker = worker
        self._on_models_changed = on_models_changed
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._changed = asyncio.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._training_core = threading.Semaphore(1)
        self._stopping = False  # set by shutdown: a job stopped now is INTERRUPTED, not CANCELLED

    # -- start-up / shutdown -------------------------------------------------------------------------

    async def recover(self) -> None:
        """Marks jobs that a previous run left QUEUED or RUNNING as INTERRUPTED."""
        self._loop = asyncio.get_running_loop()
        records = await asyncio.to_thread(self._store.list_jobs, None, 1000)
        for raw in records:
            job = JobRecord.from_dict(raw)
            if not job.state.final:
                job = job.interrupt(
                    "the server stopped while this job ran; start a new one",
                    "interrupted by a server restart",
                )
                await asyncio.to_thread(self._save, job)
                log.warning(
                    "job %s (%s) was cut off by a restart: marked INTERRUPTED", job.job_id, job.kind.name
                )

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Stops running jobs; they are recorded as INTERRUPTED."""
        self._stopping = True
        with self._lock:
            running = list(self._running.values())
        for job in running:
            job.cancel.set()
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))
        for job in running:
            if job.process.is_alive():
                job.process.kill()

    # -- RPCs ----------------------------------------------------------------------------------------

    async def start(
        self,
        kind: int,
        *,
        epochs: int | None,
        batch_size: int | None,
        validation_split: float | None,
        seed: int | None,
        request_id: str,
    ) -> JobRecord:
        if kind not in (ModelKind.LSTM, ModelKind.AUTOENCODER):
            raise InvalidArgument.for_field(
                "model_kind", "must be LSTM or AUTOENCODER (REST: /train/lstm or /train/autoencoder)"
            )
        model_kind = ModelKind(kind)
        defaults = TRAINING_DEFAULTS[model_kind]
        params = TrainParams(
            epochs=validation.int_in_range(epochs, "epochs", 1, MAX_EPOCHS, defaults.epochs),
            batch_size=validation.int_in_range(
                batch_size, "batch_size", 1, MAX_BATCH_SIZE, defaults.batch_size
            ),
            validation_split=validation.open_fraction(
                validation_split, "validation_split", defaults.validation_split
            ),
            seed=validation.int_in_range(seed, "seed", 0, 2**31 - 1, self._settings.train_seed),
        )
        if len(request_id) > 128:
            raise InvalidArgument.for_field("request_id", "must be at most 128 characters")
        if request_id:
            existing = await asyncio.to_thread(self._store.find_job_by_request_id, request_id)
            if existing is not None:
                return JobRecord.from_dict(existing)
        with self._lock:
            for job_id, running in self._running.items():
                if running.kind == model_kind:
                    raise AlreadyExists(
                        f"a {model_kind.name} training job is already running: {job_id}; follow it with "
                        f"{next_step('TrainingService.GetTrainJob', job_id=job_id)} or cancel it first",
                        reason="TRAINING_IN_PROGRESS",
                        metadata={"job_id": job_id},
                    )
            job = JobRecord.queue(
                f"{model_kind.name.lower()}-{uuid.uuid4().hex[:12]}", model_kind, params, request_id
            )
            self._save(job)
            self._launch(job)
        log.info("job %s started: %s %s", job.job_id, model_kind.name, params)
        return job

    async def get(self, job_id: str) -> JobRecord:
        job = await asyncio.to_thread(self._read, job_id)
        if job is None:
            raise NotFound(
                f"job_id: no training job {job_id!r}; list jobs with "
                f"{next_step('TrainingService.ListTrainJobs')}",
                reason="JOB_NOT_FOUND",
                metadata={"job_id": job_id},
            )
        return job

    async def list(self, kind: int, page_size: int) -> list[JobRecord]:
        if not 0 <= page_size <= 1000:
            raise InvalidArgument.for_field("page_size", "must be between 0 and 1000 (0 = 50)")
        records = await asyncio.to_thread(self._store.list_jobs, kind or None, page_size or 50)
        return [JobRecord.from_dict(r) for r in records]

    async def watch(self, job_id: str) -> AsyncIterator[JobRecord]:
        """The job now, then every change, until it reaches a final state."""
        job = await self.get(job_id)
        yield job
        last = job
        while not last.state.final:
            async with self._changed:
                # Wake on a change, or every 5 s to re-read the record (changes are never missed).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=5.0)
            current = await self.get(job_id)
            if current != last:
                yield current
                last = current

    async def cancel(self, job_id: str) -> JobRecord:
        job = await self.get(job_id)
        if job.state.final:
            raise FailedPrecondition(
                f"job {job_id} already finished ({job.state.name}); only queued or running jobs can be "
                "cancelled",
                reason="JOB_FINISHED",
                metadata={"job_id": job_id},
            )
        with self._lock:
            running = self._running.get(job_id)
            if running is not None:
                running.cancel_requested = True
                running.cancel.set()
        log.info("job %s: cancel requested", job_id)
        # Wait (bounded) for the worker to stop so the answer shows the final state.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job = await self.get(job_id)
            if job.state.final:
                return job
            await asyncio.sleep(0.1)
        return job

    # -- internals -----------------------------------------------------------------------------------

    def _read(self, job_id: str) -> JobRecord | None:
        raw = self._store.get_job(job_id)
        return JobRecord.from_dict(raw) if raw else None

    def _save(self, job: JobRecord) -> None:
        self._store.save_job(job.job_id, job.to_dict())

    def _notify(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        async def wake() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.run_coroutine_threadsafe(wake(), loop)

    def _launch(self, job: JobRecord) -> None:
        events = self._context.Queue()
        cancel = self._context.Event()
        thread = threading.Thread(
            target=self._supervise, args=(job, events, cancel), daemon=True, name=f"train-{job.job_id}"
        )
        self._running[job.job_id] = _Running(job.kind, cancel)
        self._threads.append(thread)
        thread.start()

    def _supervise(self, job: JobRecord, events: Any, cancel: Any) -> None:
        """Runs in a thread: loads the data, starts the worker process, records its progress."""
        started = time.monotonic()
        holds_core = waiting = False
        try:
            # One training process at a time, so serving always keeps a core of its own; a second
            # job (of the other kind) waits QUEUED until the first ends, and can be cancelled meanwhile.
            while not (holds_core := self._training_core.acquire(timeout=0.2)):
                if cancel.is_set():
                    break
                if not waiting:
                    job, waiting = job.wait(), True
                    self._save(job)
                    self._notify()
            if not holds_core:
                raise _CancelledWhileQueued
            started = time.monotonic()
            data = self._load_data()
            process = self._context.Process(
                target=self._worker,
                args=(
                    int(job.kind),
                    job.params,
                    job.job_id,
                    data,
                    self._settings,
                    events,
                    cancel,
                    os.getpid(),
                ),
                name=f"train-{job.job_id}",
                daemon=True,
            )
            process.start()
            with self._lock:
                self._running[job.job_id].process = process
            job = job.start()
            self._save(job)
            self._notify()
            job = self._follow(job, process, events, started)
        except _CancelledWhileQueued:
            pass  # recorded as CANCELLED below
        except Exception as exc:  # noqa: BLE001 - a job's failure is recorded, never raised into the server
            log.exception("job %s failed", job.job_id)
            if not job.state.final:
                job = job.fail(f"training failed: {type(exc).__name__}")
        finally:
            if holds_core:
                self._training_core.release()
            with self._lock:
                running = self._running.pop(job.job_id, None)
            if running is not None and running.process is not None and running.process.is_alive():
                running.process.kill()
        if not job.state.final:
            if running is not None and running.cancel_requested:
                job = job.cancel()
            else:
                job = job.interrupt(
                    "the server stopped while this job ran", "interrupted: the server is stopping"
                )
        if job.state == JobState.SUCCEEDED and job.promoted:
            try:
                self._on_models_changed()
            except Exception:  # noqa: BLE001
                log.exception("reloading models after job %s failed", job.job_id)
        job = replace(job, elapsed_seconds=time.monotonic() - started)
        self._save(job)
        self._notify()
        log.info("job %s finished: %s %s", job.job_id, job.state.name, job.message)

    def _follow(self, job: JobRecord, process: Any, events: Any, started: float) -> JobRecord:
        """Applies the worker's messages to the record until the worker ends."""
        while True:
            try:
                kind, payload = events.get(timeout=0.5)
            except queue.Empty:
                if not process.is_alive():
                    process.join()
                    if job.state.final:
                        return job
                    if process.exitcode not in (0, None) and not job.state.final:
                        return job.fail(f"the training process exited with code {process.exitcode}")
                    return job
                continue
            elapsed = time.monotonic() - started
            if kind == "epoch":
                job = job.progress(elapsed_seconds=elapsed, **payload)
            elif kind == "done":
                note = str(payload.pop("promotion_note", "") or "")
                training_note = str(payload.pop("training_note", "") or "")
                job = job.succeed(
                    elapsed_seconds=elapsed, promotion_note=note, training_note=training_note, **payload
                )
                # Saved by _supervise once the new model serves, so SUCCEEDED means "in service".
                process.join(30)
                return job
            elif kind == "cancelled" and self._stopping:
                job = job.interrupt(
                    "the server stopped while this job ran; start a new one",
                    f"interrupted by a server shutdown after epoch {job.epoch}",
                    elapsed_seconds=elapsed,
                )
            elif kind == "cancelled":
                job = job.cancel(f"cancelled after epoch {job.epoch}", elapsed_seconds=elapsed)
            elif kind == "failed":
                job = job.fail(str(payload), elapsed_seconds=elapsed)
            self._save(job)
            self._notify()
