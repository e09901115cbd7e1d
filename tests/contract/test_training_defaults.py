"""The training defaults have one source (TRAINING_DEFAULTS); the proto comment, the README's route
table, the CLI help and a Train request without parameters all say the same."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from server.models import ModelKind
from server.models.train_config import TRAINING_DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
LSTM, AUTOENCODER = TRAINING_DEFAULTS[ModelKind.LSTM], TRAINING_DEFAULTS[ModelKind.AUTOENCODER]


def test_the_documented_defaults_are_the_ones_the_brief_promises() -> None:
    assert (LSTM.epochs, LSTM.batch_size, LSTM.validation_split) == (50, 32, 0.2)
    assert (AUTOENCODER.epochs, AUTOENCODER.batch_size, AUTOENCODER.validation_split) == (100, 32, 0.1)


def test_the_proto_comment_quotes_the_defaults() -> None:
    proto = (ROOT / "protos/mining/analytics/v1alpha1/training.proto").read_text()
    comment = " ".join(line.strip("/ ") for line in proto.splitlines() if line.startswith("//"))
    match = re.search(
        r"LSTM epochs (\d+), batch_size (\d+), validation_split (\d+(?:\.\d+)?); "
        r"AUTOENCODER epochs (\d+), batch_size (\d+), validation_split (\d+(?:\.\d+)?)",
        comment,
    )
    assert match is not None, "the TrainRequest comment no longer quotes the defaults"
    assert [float(g) for g in match.groups()] == [
        LSTM.epochs,
        LSTM.batch_size,
        LSTM.validation_split,
        AUTOENCODER.epochs,
        AUTOENCODER.batch_size,
        AUTOENCODER.validation_split,
    ]
    assert "TRAINING_DEFAULTS in server/models/train_config.py" in comment


def test_the_readme_and_the_cli_help_quote_the_defaults() -> None:
    readme = (ROOT / "README.md").read_text()
    assert (
        f"defaults {LSTM.epochs}/{LSTM.batch_size}/{LSTM.validation_split:g} and "
        f"{AUTOENCODER.epochs}/{AUTOENCODER.batch_size}/{AUTOENCODER.validation_split:g}"
    ) in readme
    cli = Path(sys.executable).parent / "mining-health"
    help_text = " ".join(
        subprocess.run(
            [str(cli), "train", "--help"], capture_output=True, text=True, timeout=60
        ).stdout.split()
    )
    assert f"server default: lstm {LSTM.epochs}, autoencoder {AUTOENCODER.epochs}" in help_text
    assert f"server default {LSTM.batch_size}" in help_text
