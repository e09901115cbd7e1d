"""Builds and runs the server: store, models, domain services, gRPC servicers, reflection, health."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from mining.analytics.v1alpha1 import (
    fleet_pb2,
    fleet_pb2_grpc,
    history_pb2,
    history_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

from server import auth
from server.config import Settings
from server.domain import train_worker
from server.domain.access import MinerAccess
from server.domain.active_models import ActiveModels
from server.domain.feature_cache import FeatureCache
from server.domain.feedback import FeedbackLog
from server.domain.fleet import Fleet
from server.domain.history import History
from server.domain.housekeeping import Housekeeping
from server.domain.ingest import Ingest
from server.domain.models_admin import ModelsAdmin
from server.domain.rescoring import Rescorer
from server.domain.scores import LatestScores
from server.domain.scoring import Scoring
from server.domain.subscriptions import ScoreHub
from server.domain.training import TrainingJobs
from server.models.features import history_rows
from server.models.registry import ModelRegistry
from server.ops.backup import Backups
from server.ops.metrics import RescoreCollector
from server.ops.runtime import Operations
from server.store import FleetStore
from server.store import open_store as open_store_url
from server.store.open import is_postgres_url
from server.transport import reflection
from server.transport.errors import ErrorMappingInterceptor
from server.transport.fleet import FleetServicer
from server.transport.history import HistoryServicer
from server.transport.interceptors import (
    AuditInterceptor,
    AuthInterceptor,
    LimitsInterceptor,
    MetricsInterceptor,
    ProxyTrust,
)
from server.transport.policy import require_policies
from server.transport.scoring import ScoringServicer
from server.transport.telemetry import TelemetryServicer
from server.transport.training import TrainingServicer

log = logging.getLogger(__name__)

MAX_METADATA_BYTES = 64 * 1024

SERVICE_NAMES = (
    fleet_pb2.DESCRIPTOR.services_by_name["FleetService"].full_name,
    scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name,
    telemetry_pb2.DESCRIPTOR.services_by_name["TelemetryService"].full_name,
    training_pb2.DESCRIPTOR.services_by_name["TrainingService"].full_name,
    history_pb2.DESCRIPTOR.services_by_name["HistoryService"].full_name,
)
SCORING_SERVICE = SERVICE_NAMES[1]


@dataclass
class App:
    """A running server and everything it owns."""

    settings: Settings
    server: grpc.aio.Server
    port: int
    store: FleetStore
    health: health.aio.HealthServicer
    jobs: TrainingJobs
    models: ActiveModels
    hub: ScoreHub
    rescorer: Rescorer
    scoring: Scoring
    ops: Operations
    """Security and operations: metrics, audit, limits (ops.subscriptions caps subscriptions)."""
    housekeeping: Housekeeping | None = None
    """Periodic outage scan and retention roll-up."""
    unix_socket: Path | None = None
    """With --with-envoy: the private Unix socket Envoy connects to (its x-forwarded-for is trusted)."""
    model_health: asyncio.Task[None] | None = None
    """Keeps ScoringService's health in step with its model."""

    async def stop(self, grace: float | None = None) -> None:
        """Drains: health NOT_SERVING, in-flight calls get `grace` seconds, then the store closes."""
        grace = self.settings.grace_seconds if grace is None else grace
        log.info("draining: health NOT_SERVING, %.1f s grace for in-flight calls", grace)
        if self.model_health is not None:
            self.model_health.cancel()
        await self.health.enter_graceful_shutdown()
        # End subscription streams ourselves, with an in-band message, before the server cancels them.
        self.hub.close_all("the server is draining; reconnect with after_sequence to resume")
        await self.rescorer.stop()
        if self.housekeeping is not None:
            await self.housekeeping.stop()
        await self.jobs.shutdown()
        await self.server.stop(grace)
        await self.scoring.close()
        await asyncio.to_thread(self.store.close)
        self.ops.close()
        log.info("stopped")


def envoy_socket(settings: Settings) -> Path | None:
    """The Unix socket for Envoy inside the private data directory; None when its path is too long for
    a socket address (Envoy then connects over TCP and its x-forwarded-for is not trusted)."""
    path = settings.data_dir.resolve() / "grpc.sock"
    if len(str(path)) > 100:
        log.warning("data directory path too long for a Unix socket: Envoy connects over TCP")
        return None
    return path


def secure_data_dir(settings: Settings) -> None:
    """Creates the data directory and the models folder private to this user (0700)."""
    for folder in (settings.data_dir, settings.models_dir):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)


def open_store(settings: Settings) -> FleetStore:
    """Opens the store (the DuckDB file, or PostgreSQL with --store) and seeds the demo fleet into an
    empty one."""
    store = open_store_url(
        settings.store, default_path=settings.db_path, sample_interval_s=settings.sample_interval_s
    )
    if not is_postgres_url(settings.store):
        os.chmod(Path(store.description), 0o600)
    if settings.seed_demo_fleet and store.counts().miners == 0:
        from server.sim import seed_store, simulate_fleet

        log.info(
            "empty store: seeding the demo fleet (%d miners, %.0f days, seed %d)",
            settings.demo_miners,
            settings.demo_days,
            settings.demo_seed,
        )
        # The demo is simulated to end at the last midnight UTC and then moved to end now (floored
        # to the sample interval): the simulator's daily ambient cycle is tied to the hour of its
        # own clock, so simulating up to "now" gave every run a different fleet (and model, and
        # verdict on the demo miner). Simulated at a day boundary, two runs are the same fleet;
        # moved to now, the demo is live (not stale) and new telemetry extends it. The price: the
        # demo's daily ambient peak sits at a different UTC hour on each run.
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        fleet = simulate_fleet(
            settings.demo_miners,
            settings.demo_days,
            settings.demo_seed,
            interval_s=settings.sample_interval_s,
            end=midnight,
        )
        interval = settings.sample_interval_s
        shift_s = int((datetime.now(UTC) - midnight).total_seconds()) // interval * interval
        seed_store(store, fleet, shift=timedelta(seconds=shift_s))
    counts = store.counts()
    log.info(
        "store %s: %d miners, %d samples, %d failure events",
        store.description,
        counts.miners,
        counts.samples,
        counts.failure_events,
    )
    return store


def interceptors(ops: Operations) -> list[grpc.aio.ServerInterceptor]:
    """The interceptor chain, outermost first: metrics see every call, errors are mapped around auth,
    audit and limits (which call the plain services of ops)."""
    trust = ProxyTrust(ops.settings.trusted_proxy_networks)  # whose x-forwarded-for names the client
    return [
        MetricsInterceptor(ops.metrics),
        ErrorMappingInterceptor(),
        AuthInterceptor(ops.tokens, ops.refusals, trust),
        AuditInterceptor(ops.audit),
        LimitsInterceptor(ops.limiter, ops.metrics, ops.refusals, trust),
    ]


def training_data(store: FleetStore) -> train_worker.TrainingData:
    """Everything training needs, read in the server process (the only one that opens the store)."""
    return train_worker.TrainingData(
        series=store.load_series(),
        miners={m.miner_id: m for m in store.list_miners()},
        failures=store.list_failures(limit=10_000_000),
        planned=store.list_planned_states(),
    )


async def start(settings: Settings) -> App:
    """Opens the store, loads the models, starts serving; returns once the port is bound."""
    import torch

    require_policies(SERVICE_NAMES)  # fail closed: no RPC is served without its role, limits and audit
    torch.set_num_threads(settings.serve_threads)
    await asyncio.to_thread(secure_data_dir, settings)
    store = await asyncio.to_thread(open_store, settings)
    models = ActiveModels()
    scores = LatestScores()
    registry = ModelRegistry(settings.models_dir)
    admin = ModelsAdmin(registry, models)
    await asyncio.to_thread(admin.reload)
    jobs = TrainingJobs(
        store,
        settings,
        load_data=lambda: training_data(store),
        worker=train_worker.run,
        on_models_changed=admin.reload,
    )
    await jobs.recover()
    # The window plus the history its input channels read (24 h baselines and 6 h context).
    cache = FeatureCache(
        store, history_rows=settings.sequence_length + history_rows(), interval_s=settings.sample_interval_s
    )
    await asyncio.to_thread(cache.rebuild)
    hub = ScoreHub(queue_size=settings.subscriber_queue)
    access = MinerAccess(store)  # the one miner-access rule, shared by every service below
    scoring = Scoring(store, models, scores, settings, cache, access=access)
    ingest = Ingest(store, settings, access=access)
    history = History(store, models, settings, access=access)
    rescorer = Rescorer(
        cache,
        scoring,
        models,
        hub,
        settings.rescore_interval_ms / 1000.0,
        history=history,
        chunk=settings.rescore_chunk_miners,
        import_settle_s=settings.import_settle_ms / 1000.0,
    )
    ingest.add_listener(rescorer.on_ingest, on_import=rescorer.on_import)
    admin.add_listener(rescorer.on_models_changed)  # promotion, ActivateModel, rollback: rescore
    housekeeping = Housekeeping(store, settings)
    with auth.acting_as(auth.SYSTEM):  # background tasks copy this context: they act as the server
        rescorer.start()
        housekeeping.start()

    ops = await asyncio.to_thread(Operations.create, settings, store, scores, models, cache)
    scoring.on_batch = ops.metrics.batch_size.observe
    scoring.site_events.on_change = ops.metrics.set_site_event
    ops.metrics.add(RescoreCollector(lambda: rescorer.progress))
    server = grpc.aio.server(
        interceptors=interceptors(ops),
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            # Above Envoy's 60 KiB request-header cap: an overlong id in a REST path (Envoy passes the
            # path on as x-envoy-original-path) reaches validation and answers 400, not a 429 from
            # grpc core's 8/16 KiB default metadata limits.
            ("grpc.max_metadata_size", MAX_METADATA_BYTES),
            ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
        ],
    )
    fleet_pb2_grpc.add_FleetServiceServicer_to_server(
        FleetServicer(
            Fleet(store, models, scores, settings, on_miner_changed=cache.refresh, access=access),
            Backups(store, settings.models_dir, settings.backup_path, settings.db_file),
        ),
        server,
    )
    scoring_pb2_grpc.add_ScoringServiceServicer_to_server(
        ScoringServicer(scoring, hub, ops.subscriptions), server
    )
    telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(
        TelemetryServicer(
            ingest,
            FeedbackLog(
                store, models, access=access, known_versions=lambda: [v.version for v in registry.list()]
            ),
        ),
        server,
    )
    training_pb2_grpc.add_TrainingServiceServicer_to_server(TrainingServicer(jobs, admin), server)
    history_pb2_grpc.add_HistoryServiceServicer_to_server(HistoryServicer(history), server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable((*SERVICE_NAMES, health.SERVICE_NAME), server)

    port = ops.add_port(server, f"{settings.host}:{settings.grpc_port}")
    unix_socket = envoy_socket(settings) if settings.with_envoy else None
    if unix_socket is not None:
        unix_socket.unlink(missing_ok=True)  # left by a killed run
        ops.add_port(server, f"unix:{unix_socket}")
    await server.start()
    # "" is the process: SERVING while it runs, so a health-checking proxy never hides Train (which
    # loads the model). ScoringService is SERVING once the LSTM it needs is loaded.
    for name in ("", *SERVICE_NAMES):
        if name != SCORING_SERVICE:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    model_health = asyncio.create_task(_follow_models(health_servicer, models), name="model-health")
    log.info("gRPC server listening on %s:%d (reflection and grpc.health.v1 enabled)", settings.host, port)
    return App(
        settings=settings,
        server=server,
        port=port,
        store=store,
        health=health_servicer,
        jobs=jobs,
        models=models,
        hub=hub,
        rescorer=rescorer,
        scoring=scoring,
        ops=ops,
        housekeeping=housekeeping,
        unix_socket=unix_socket,
        model_health=model_health,
    )


async def _follow_models(
    health_servicer: health.aio.HealthServicer, models: ActiveModels, interval_s: float = 0.5
) -> None:
    """Keeps ScoringService's health in step with whether its model is loaded (training, activation
    and reload all change it; polling sees every path)."""
    serving: bool | None = None
    while True:
        loaded = models.lstm is not None
        if loaded != serving:
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if loaded
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            await health_servicer.set(SCORING_SERVICE, status)
            serving = loaded
        await asyncio.sleep(interval_s)
