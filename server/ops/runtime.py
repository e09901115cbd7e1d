"""Security and operations wired for one server: tokens, TLS, metrics, audit, limits.

`Operations.create(settings, store, scores, models)` loads what the settings name (fails fast on a bad
tokens file or certificate), starts the /metrics endpoint, and hands app.start the plain services that
the transport's interceptors call (app.py assembles the chain) and the port binding; `close()` undoes
it. Ops is a layer below the transport: it never imports it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

from server.auth import TokenStore
from server.config import Settings
from server.domain.active_models import ActiveModels
from server.domain.feature_cache import FeatureCache
from server.domain.scores import LatestScores
from server.ops.audit import AuditLog, RefusalLog
from server.ops.limits import RateLimiter, SubscriptionSlots
from server.ops.metrics import FleetCollector, Metrics
from server.store import FleetStore

log = logging.getLogger("server.security")


class SecuritySettingsError(ValueError):
    """The security settings are inconsistent or name unreadable files."""


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SecuritySettingsError(f"{what} {path}: {exc.strerror or exc}") from exc


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials for the gRPC port, or None for plaintext."""
    cert, key, client_ca = settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    if cert is None or key is None:  # Settings checks that they come in pairs
        return None
    return grpc.ssl_server_credentials(
        [(_read(key, "tls_key_file"), _read(cert, "tls_cert_file"))],
        root_certificates=_read(client_ca, "tls_client_ca_file") if client_ca else None,
        require_client_auth=client_ca is not None,
    )


@dataclass
class Operations:
    """What security and operations add to a running server."""

    settings: Settings
    tokens: TokenStore | None
    metrics: Metrics
    audit: AuditLog
    limiter: RateLimiter
    subscriptions: SubscriptionSlots
    """The cap on concurrent subscriptions: SubscribeScores holds a slot with `subscriptions.hold()`."""
    credentials: grpc.ServerCredentials | None
    metrics_port: int | None = None
    refusals: RefusalLog | None = None
    """Refused calls: counted, logged and audited at most once a minute per client."""

    @classmethod
    def create(
        cls,
        settings: Settings,
        store: FleetStore,
        scores: LatestScores,
        models: ActiveModels,
        cache: FeatureCache | None = None,
    ) -> Operations:
        tokens = TokenStore.load(settings.auth_tokens_file) if settings.auth_tokens_file else None
        if tokens is None:
            log.warning(
                "AUTHENTICATION IS OFF: every caller may read, write and train. Set auth_tokens_file "
                "(--auth-tokens-file / MFH_AUTH_TOKENS_FILE) to require bearer tokens."
            )
        else:
            log.info("authentication on: %d token(s) from %s", len(tokens), settings.auth_tokens_file)
        credentials = server_credentials(settings)
        metrics = Metrics()
        metrics.add(FleetCollector(store, scores, models, settings, cache))
        operations = cls(
            settings=settings,
            tokens=tokens,
            metrics=metrics,
            audit=AuditLog(settings.audit_path),
            limiter=RateLimiter(settings.expensive_calls_per_minute, settings.expensive_calls_burst),
            subscriptions=SubscriptionSlots(
                settings.max_subscriptions,
                metrics.subscribers.set,
                per_owner=settings.max_subscriptions_per_token,
            ),
            credentials=credentials,
        )
        operations.refusals = RefusalLog(
            operations.audit, on_refused=lambda method, outcome: metrics.refused.labels(outcome).inc()
        )
        if settings.metrics_port >= 0:
            operations.metrics_port = metrics.serve(settings.metrics_host, settings.metrics_port)
            log.info(
                "Prometheus metrics on http://%s:%d/metrics", settings.metrics_host, operations.metrics_port
            )
        return operations

    def add_port(self, server: grpc.aio.Server, address: str) -> int:
        """Binds the gRPC port, with TLS when configured; returns the port."""
        if self.credentials is None:
            return server.add_insecure_port(address)
        mutual = self.settings.tls_client_ca_file is not None
        log.info("gRPC serves TLS%s", " and requires client certificates" if mutual else "")
        return server.add_secure_port(address, self.credentials)

    def close(self) -> None:
        self.metrics.stop()
        self.audit.close()
