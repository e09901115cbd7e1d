"""Settings from flags and MFH_* variables, with clear errors for bad values."""

from __future__ import annotations

import pytest

from server.main import build_parser, load_settings


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFH_GRPC_PORT", "6000")
    monkeypatch.setenv("MFH_RISK_CUTOFFS", "[0.2, 0.5, 0.8]")
    settings = load_settings(["--grpc-port", "7000"])
    assert settings.grpc_port == 7000
    assert settings.risk_cutoffs == (0.2, 0.5, 0.8)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--risk-cutoffs", "0.5", "0.4", "0.9"], "risk_cutoffs must increase"),
        (["--grpc-port", "70000"], "grpc_port"),
        (["--tls-cert-file", "cert.pem"], "tls_cert_file and tls_key_file go together"),
    ],
)
def test_bad_settings_stop_with_a_message(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        load_settings(argv)
    assert message in str(stopped.value)


def test_help_names_every_setting_with_its_variable() -> None:
    text = build_parser().format_help()
    for flag, env in (("--data-dir", "MFH_DATA_DIR"), ("--horizon-hours", "MFH_HORIZON_HOURS")):
        assert flag in text and env in text
