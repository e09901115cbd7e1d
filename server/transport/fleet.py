"""FleetService servicer: Status, ListMiners, GetMiner, UpsertMiner, Backup."""

from __future__ import annotations

import asyncio
from datetime import datetime

import grpc
from mining.analytics.v1alpha1 import common_pb2, fleet_pb2, fleet_pb2_grpc

from server.domain.active_models import ModelSummary
from server.domain.fleet import Fleet, MinerView
from server.ops.backup import Backups
from server.transport.convert import miner_from_proto, risk_level, to_timestamp


class FleetServicer(fleet_pb2_grpc.FleetServiceServicer):
    def __init__(self, fleet: Fleet, backups: Backups | None = None) -> None:
        self._fleet = fleet
        self._backups = backups

    async def Backup(
        self, request: fleet_pb2.BackupRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.BackupResponse:
        if self._backups is None:
            raise NotImplementedError
        info = await asyncio.to_thread(self._backups.create, request.name)
        return fleet_pb2.BackupResponse(
            path=info.path,
            samples=min(info.samples, 2**31 - 1),
            miners=info.miners,
            lstm_version=info.lstm_version,
            autoencoder_version=info.autoencoder_version,
            created_at=to_timestamp(datetime.fromisoformat(info.created_at)),
        )

    async def Status(
        self, request: fleet_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.StatusResponse:
        status = await self._fleet.status()
        return fleet_pb2.StatusResponse(
            lstm_model=status.lstm is not None,
            autoencoder=status.autoencoder is not None,
            anomaly_threshold=status.autoencoder.threshold if status.autoencoder else 0.0,
            feature_columns=status.feature_columns,
            sequence_length=status.sequence_length,
            lstm_model_info=_model_info(status.lstm, status.not_activated.get(1)),
            autoencoder_info=_model_info(status.autoencoder, status.not_activated.get(2)),
            miners=status.counts.miners,
            samples=status.counts.samples,
            failure_events=status.counts.failure_events,
            data_start=to_timestamp(status.counts.data_start),
            data_end=to_timestamp(status.counts.data_end),
            horizon_hours=status.horizon_hours,
            server_version=status.server_version,
        )

    async def ListMiners(
        self, request: fleet_pb2.ListMinersRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.ListMinersResponse:
        page = await self._fleet.list_miners(
            page_size=request.page_size,
            page_token=request.page_token,
            min_risk_level=risk_level(request.min_risk_level),
            hardware_model=request.hardware_model,
            site=request.site,
        )
        return fleet_pb2.ListMinersResponse(
            miners=[miner_to_proto(view) for view in page.miners],
            next_page_token=page.next_page_token,
            total=page.total,
        )

    async def GetMiner(
        self, request: fleet_pb2.GetMinerRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Miner:
        return miner_to_proto(await self._fleet.get_miner(request.miner_id))

    async def UpsertMiner(
        self, request: fleet_pb2.UpsertMinerRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Miner:
        return miner_to_proto(await self._fleet.upsert_miner(miner_from_proto(request.miner)))


def miner_to_proto(view: MinerView) -> common_pb2.Miner:
    miner, score = view.miner, view.score
    return common_pb2.Miner(
        miner_id=miner.miner_id,
        hardware_model=miner.hardware_model,
        make=miner.make,
        nominal_hashrate_ths=miner.nominal_hashrate_ths,
        nominal_power_w=miner.nominal_power_w,
        serial=miner.serial,
        mac=miner.mac,
        site=miner.site,
        last_seen=to_timestamp(view.last_seen),
        sample_count=view.sample_count,
        risk_score=score.risk_score if score else 0.0,
        risk_level=int(score.risk_level) if score else 0,
        is_anomaly=score.is_anomaly if score else False,
        state=int(view.status.state),
        state_reason=view.status.reason,
        state_since=to_timestamp(view.status.since),
        warnings=list(view.warnings),
    )


def _model_info(summary: ModelSummary | None, not_activated: tuple[str, str] | None) -> fleet_pb2.ModelInfo:
    version, reason = not_activated or ("", "")
    if summary is None:
        return fleet_pb2.ModelInfo(loaded=False, not_activated_version=version, not_activated_reason=reason)
    return fleet_pb2.ModelInfo(
        loaded=True,
        version=summary.version,
        trained_at=to_timestamp(summary.trained_at),
        not_activated_version=version,
        not_activated_reason=reason,
    )
