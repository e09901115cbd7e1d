"""Backup and restore of a data directory: the DuckDB store and the model registry.

A backup is taken while the server runs (FleetService/Backup, `POST /api/advanced/backup`): under
the store's write lock the store checkpoints (its write-ahead log merged into the file) and the file
is copied, so the copy holds exactly the batches acknowledged before it and no half of any batch.
The registry's `active.json` pointers are copied before the model files, and a version is active only
after its files are written, so every active version in the copy has its files.

Restore is offline, into a fresh data directory:

    python -m server.ops.backup restore var/backups/2026-11-29T17-00-00Z --data-dir /srv/mfh-restored

then start the server on that directory. Backups are private (0700/0600) like the data directory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from server.errors import AlreadyExists, InvalidArgument
from server.models import ModelKind
from server.models.registry import ModelRegistry
from server.store import FleetStore

MANIFEST = "backup.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class BackupInfo:
    path: str
    samples: int
    miners: int
    lstm_version: str
    autoencoder_version: str
    created_at: str  # ISO 8601, UTC


class Backups:
    """Writes backups of a running server's store and registry under `root`."""

    def __init__(self, store: FleetStore, models_dir: Path, root: Path, db_file: str) -> None:
        self._store = store
        self._models_dir = models_dir
        self._root = root
        self._db_file = db_file

    def create(self, name: str = "") -> BackupInfo:
        """Blocking (copies files): call from a worker thread."""
        created = datetime.now(UTC)
        name = name or created.strftime("%Y-%m-%dT%H-%M-%S.%fZ")
        if not _NAME.match(name):
            raise InvalidArgument.for_field(
                "name", "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        self._root.mkdir(parents=True, exist_ok=True)
        os.chmod(self._root, 0o700)
        target = self._root / name
        try:
            target.mkdir(mode=0o700)
        except FileExistsError as exc:
            raise AlreadyExists(f"name: a backup named {name!r} exists already; pick another name") from exc
        self._store.copy_to(target / self._db_file)
        _copy_registry(self._models_dir, target / "models")
        counts = self._store.counts()
        registry = ModelRegistry(target / "models")
        info = BackupInfo(
            path=str(target.resolve()),
            samples=counts.samples,
            miners=counts.miners,
            lstm_version=registry.active_version(ModelKind.LSTM) or "",
            autoencoder_version=registry.active_version(ModelKind.AUTOENCODER) or "",
            created_at=created.isoformat(),
        )
        (target / MANIFEST).write_text(json.dumps({**asdict(info), "db_file": self._db_file}, indent=2))
        return info


def _copy_registry(source: Path, target: Path) -> None:
    """The registry's files, pointers first (see the module docstring); temp files are skipped."""
    if not source.exists():
        target.mkdir(mode=0o700)
        return
    pointers = sorted(source.glob("*/active.json"))
    staged = {p: p.read_bytes() for p in pointers}
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".*.tmp", "*.tmp", "active.json"))
    for pointer, content in staged.items():
        destination = target / pointer.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(content)


def restore(backup: Path, data_dir: Path) -> dict[str, object]:
    """Copies a backup into `data_dir`, which must not hold a store or models yet. Returns the manifest."""
    manifest_path = backup / MANIFEST
    if not manifest_path.is_file():
        raise SystemExit(f"{backup}: not a backup (no {MANIFEST})")
    manifest = json.loads(manifest_path.read_text())
    db_file = str(manifest.get("db_file", "fleet.duckdb"))
    if (data_dir / db_file).exists() or (data_dir / "models").exists():
        raise SystemExit(f"{data_dir}: already holds a store or models; restore into a fresh data directory")
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    shutil.copyfile(backup / db_file, data_dir / db_file)
    os.chmod(data_dir / db_file, 0o600)
    shutil.copytree(backup / "models", data_dir / "models")
    os.chmod(data_dir / "models", 0o700)
    return dict(manifest)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m server.ops.backup",
        description="Restore a backup (taken with POST /api/advanced/backup) into a fresh data directory.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    restore_cmd = commands.add_parser("restore", help="copy a backup into a fresh data directory")
    restore_cmd.add_argument("backup", type=Path, help="the backup's folder (the path Backup answered)")
    restore_cmd.add_argument("--data-dir", type=Path, required=True, help="the new data directory")
    args = parser.parse_args(argv)
    os.umask(0o077)
    manifest = restore(args.backup, args.data_dir)
    print(
        f"restored {args.backup} into {args.data_dir}: {manifest['samples']} samples, "
        f"{manifest['miners']} miners, LSTM {manifest['lstm_version'] or '-'}, "
        f"autoencoder {manifest['autoencoder_version'] or '-'}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
