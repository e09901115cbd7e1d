"""`mining-health models` and `activate`: the model registry, and switching (or rolling back) the
active version of a kind."""

from __future__ import annotations

import argparse

from mining.analytics.v1alpha1 import common_pb2
from rich.text import Text

from clients.cli.args import MODEL_KINDS, Commands, UsageError
from clients.cli.output import Output, kind_name, to_dict, when
from clients.client import FleetHealthClient

# The metrics worth a column, when a version has them.
SHOWN_METRICS = ("val_roc_auc", "val_brier", "threshold", "val_loss")


def register(commands: Commands) -> None:
    listing = commands.add(
        "models",
        run_models,
        "List registered model versions, newest first; * marks the active one",
        "mining-health models lstm",
    )
    listing.add_argument("kind", nargs="?", choices=MODEL_KINDS, help="only this kind")

    activate = commands.add(
        "activate",
        run_activate,
        "Make a registered model version the active one (to roll back, activate an older one)",
        "mining-health activate lstm lstm-20261125T150102Z-3f2a\n  mining-health activate lstm --previous",
    )
    activate.add_argument("kind", choices=MODEL_KINDS, help="which model")
    activate.add_argument("version", nargs="?", help="the version to activate (see `mining-health models`)")
    activate.add_argument(
        "--previous",
        action="store_true",
        help="roll back: activate the version trained before the active one",
    )


def run_models(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    models = client.list_models(args.kind).models
    if out.as_json:
        out.json([to_dict(model) for model in models])
        return 0
    shown = [name for name in SHOWN_METRICS if any(name in m.metrics for m in models)]
    out.table(
        ("", "kind", "version", "trained", "job", *shown),
        (
            (
                Text("*", style="green") if m.active else Text(""),
                kind_name(m.model_kind),
                Text(m.version, style="green") if m.active else Text(m.version),
                when(m, "trained_at"),
                m.job_id or "-",
                *(f"{m.metrics[name]:.4g}" if name in m.metrics else "-" for name in shown),
            )
            for m in models
        ),
        right=shown,
    )
    return 0


def run_activate(client: FleetHealthClient, args: argparse.Namespace, out: Output) -> int:
    if (args.version is None) == (not args.previous):
        raise UsageError("activate: give a VERSION or --previous, not both")
    version = args.version or previous_version(client, args.kind)
    activated = client.activate_model(args.kind, version)
    if out.as_json:
        out.message(activated)
    else:
        out.line(f"{kind_name(activated.model_kind)} model {activated.version} is now active")
    return 0


def previous_version(client: FleetHealthClient, kind: str) -> str:
    """The version registered just before the active one (the registry lists newest first)."""
    models = [
        m for m in client.list_models(kind).models if m.model_kind == common_pb2.ModelKind.Value(kind.upper())
    ]
    active = next((i for i, m in enumerate(models) if m.active), None)
    if active is None:
        raise UsageError(f"activate --previous: no {kind} model is active; give a VERSION")
    if active + 1 >= len(models):
        raise UsageError(f"activate --previous: {models[active].version} is the oldest {kind} version")
    return models[active + 1].version
