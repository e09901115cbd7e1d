"""A training job's record is a state machine: each transition gives the next record, and the allowed
moves are checked in one place (a finished job never moves again)."""

from __future__ import annotations

import pytest

from server.domain.jobs import MOVES, IllegalTransition, JobRecord, JobState, TrainParams
from server.models import ModelKind

PARAMS = TrainParams(epochs=3, batch_size=32, validation_split=0.2, seed=7)


def queued() -> JobRecord:
    return JobRecord.queue("lstm-1", ModelKind.LSTM, PARAMS, request_id="req-1")


def running() -> JobRecord:
    return queued().start()


def test_a_job_runs_queue_start_progress_succeed() -> None:
    job = queued()
    assert (job.state, job.message, job.request_id) == (JobState.QUEUED, "queued", "req-1")
    waiting = job.wait()
    assert (waiting.state, waiting.message) == (
        JobState.QUEUED,
        "queued: waits for the running training job to finish",
    )
    started = waiting.start()
    assert (started.state, started.message) == (JobState.RUNNING, "training")
    assert started.started_at is not None and job.started_at is None  # the old record is unchanged
    epoch = started.progress(
        elapsed_seconds=1.5, epoch=1, train_loss=0.25, val_loss=0.5, samples_per_second=900.0
    )
    assert (epoch.state, epoch.epoch, epoch.elapsed_seconds) == (JobState.RUNNING, 1, 1.5)
    assert epoch.message == "epoch 1/3 train_loss=0.25000 val_loss=0.50000"
    done = epoch.succeed(
        elapsed_seconds=2.0, model_version="lstm-v1", promoted=True, metrics={"roc_auc": 0.8}
    )
    assert (done.state, done.model_version, done.metrics) == (JobState.SUCCEEDED, "lstm-v1", {"roc_auc": 0.8})
    assert done.message == "registered lstm-v1 and made it active"
    assert done.finished_at is not None and done.state.final
    kept = epoch.succeed(elapsed_seconds=2.0, model_version="lstm-v2", promoted=False)
    assert kept.message == "registered lstm-v2; the active model is as good or better, kept it"


def test_a_queued_or_running_job_can_fail_be_cancelled_or_interrupted() -> None:
    for job in (queued(), running()):
        failed = job.fail("training failed: ValueError")
        assert (failed.state, failed.error, failed.message) == (
            JobState.FAILED,
            "training failed: ValueError",
            "failed",
        )
        assert job.cancel().state == JobState.CANCELLED
        stopped = job.interrupt(
            "the server stopped while this job ran", "interrupted: the server is stopping"
        )
        assert (stopped.state, stopped.message) == (
            JobState.INTERRUPTED,
            "interrupted: the server is stopping",
        )
        assert failed.finished_at is not None


def test_a_queued_job_cannot_succeed_or_report_progress() -> None:
    with pytest.raises(IllegalTransition, match="QUEUED cannot move to SUCCEEDED"):
        queued().succeed(elapsed_seconds=1.0, model_version="v", promoted=False)
    assert JobState.SUCCEEDED not in MOVES[JobState.QUEUED]


@pytest.mark.parametrize("finish", ["succeed", "fail", "cancel", "interrupt"])
def test_a_finished_job_never_moves_again(finish: str) -> None:
    job = running()
    finished = {
        "succeed": lambda: job.succeed(elapsed_seconds=1.0, model_version="v", promoted=False),
        "fail": lambda: job.fail("boom"),
        "cancel": lambda: job.cancel(),
        "interrupt": lambda: job.interrupt("stopped", "interrupted"),
    }[finish]()
    assert finished.state.final
    for move in (
        lambda: finished.start(),
        lambda: finished.wait(),
        lambda: finished.progress(elapsed_seconds=1, epoch=2, train_loss=0, val_loss=0, samples_per_second=0),
        lambda: finished.fail("again"),
        lambda: finished.cancel(),
        lambda: finished.interrupt("again", "again"),
    ):
        with pytest.raises(IllegalTransition, match=f"{finished.state.name} cannot move to"):
            move()


def test_a_record_survives_the_store_round_trip_with_its_state() -> None:
    job = running().progress(
        elapsed_seconds=1.0, epoch=1, train_loss=0.1, val_loss=0.2, samples_per_second=5.0
    )
    assert JobRecord.from_dict(job.to_dict()) == job
