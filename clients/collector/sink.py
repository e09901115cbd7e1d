"""Sends the collector's readings to the server: WriteMetrics batches and RecordFailure outages."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

import grpc
from mining.analytics.v1alpha1 import common_pb2, telemetry_pb2

from clients.client import ClientError, FleetHealthClient, to_timestamp
from clients.collector.firmware import Reading

log = logging.getLogger(__name__)

# WriteMetrics is atomic per batch; smaller batches keep one bad sample from holding back the rest.
BATCH_SIZE = 500


def to_sample(reading: Reading) -> telemetry_pb2.MetricSample:
    """The wire form of a reading; None fields stay unset (missing), never 0."""
    sample = telemetry_pb2.MetricSample(
        miner_id=reading.miner_id,
        timestamp=to_timestamp(reading.timestamp),
        fan_speeds_rpm=reading.fan_speeds_rpm,
        hardware_model=reading.hardware_model,
    )
    for name in (
        "hashrate_ths",
        "temperature_c",
        "fan_speed_rpm",
        "power_w",
        "accepted_shares",
        "rejected_shares",
    ):
        value = getattr(reading, name)
        if value is not None:
            setattr(sample, name, value)
    for board in reading.boards:
        wire = sample.boards.add(index=board.index)
        for name in ("hashrate_ths", "temperature_c", "chip_temperature_c"):
            value = getattr(board, name)
            if value is not None:
                setattr(wire, name, value)
    return sample


class GrpcSink:
    """A collector sink over the (blocking) client, run in worker threads off the event loop."""

    def __init__(self, client: FleetHealthClient) -> None:
        self.client = client

    async def write(self, readings: Sequence[Reading]) -> None:
        samples = [to_sample(reading) for reading in readings]
        for start in range(0, len(samples), BATCH_SIZE):
            batch = samples[start : start + BATCH_SIZE]
            # The batch id makes a replayed batch recognisable in the server's log; replays are duplicates.
            await asyncio.to_thread(
                self.client.write_metrics, batch, batch_id=f"collector-{uuid.uuid4().hex[:12]}"
            )

    async def report_outage(self, miner_id: str, since: datetime, note: str) -> None:
        try:
            await asyncio.to_thread(
                self.client.record_failure,
                miner_id,
                common_pb2.FAILURE_MODE_OUTAGE,
                occurred_at=since,
                note=note,
            )
        except ClientError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise
            # The server never stored a sample of this miner: there is no history for the outage to
            # label, and retrying every round would only repeat the answer.
            log.warning(
                "%s: not recording the outage: the server does not know the miner (%s)", miner_id, exc
            )
