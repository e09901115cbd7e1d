"""`mining-health status`: loaded models, anomaly threshold and the store's size."""

from __future__ import annotations

import argparse

from clients.cli.args import Commands
from clients.cli.output import Output, when
from clients.client import FleetHealthClient


def register(commands: Commands) -> None:
    commands.add(
        "status",
        run,
        "Show loaded models, anomaly threshold and the store's size",
        "mining-health status --json",
    )


def run(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    status = client.status()
    if out.as_json:
        out.message(status)
        return 0
    rows = []
    for label, info in (
        ("lstm model", status.lstm_model_info),
        ("autoencoder model", status.autoencoder_info),
    ):
        rows.append(
            (label, f"{info.version} (trained {when(info, 'trained_at')})" if info.loaded else "not trained")
        )
    rows += [
        ("anomaly threshold", f"{status.anomaly_threshold:g}"),
        ("miners", str(status.miners)),
        ("samples", str(status.samples)),
        ("failure events", str(status.failure_events)),
        ("data", f"{when(status, 'data_start')} .. {when(status, 'data_end')}"),
        ("features", ", ".join(status.feature_columns)),
        ("window", f"{status.sequence_length} samples, horizon {status.horizon_hours} h"),
        ("server version", status.server_version),
    ]
    out.pairs(rows)
    return 0
