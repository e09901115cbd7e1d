"""Fixtures for the console tests: the real server and Envoy with a small demo fleet and tiny
models, Debian's Chromium driven by Playwright, and a page that fails the test on console errors."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Page

from server.auth import mint
from server.envoy import CONSOLE_DIST
from server.models import ModelKind
from server.models.registry import ModelRegistry
from tests.conftest import wait_for_job
from tests.console.fixture_model import temperature_model
from tests.harness import Stack, start_stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).parent / "screenshots"  # git-ignored
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
SECOND_SITE = ("192.168.1.104", "192.168.1.105", "192.168.1.106", "192.168.1.107")
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's chromium package (make setup installs it); Playwright never downloads a browser."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM}


@pytest.fixture(scope="session")
def base_url() -> str | None:
    """Replaces pytest-base-url's fixture (an instance method pytest 9 warns about); pages use full URLs."""
    return None


@pytest.fixture(scope="session")
def built_console() -> Path:
    index = CONSOLE_DIST / "index.html"
    assert index.is_file(), f"{index} is missing: build the console with `make setup` (npm run build)"
    return CONSOLE_DIST


@pytest.fixture(scope="session")
def console_stack(built_console: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A demo fleet with both models trained for one epoch, then the known-answer LSTM activated."""
    running = start_stack(Path(tmp_path_factory.mktemp("console")))
    try:
        for kind in ("lstm", "autoencoder"):
            reply = running.rest("POST", f"/api/advanced/train/{kind}", {"epochs": 1, "seed": 5})
            assert reply.status == 200, reply.body
            wait_for_job(running, reply.json()["job_id"])
        registry = ModelRegistry(running.server.settings.models_dir)
        version = registry.save(temperature_model(registry.load(ModelKind.LSTM).checkpoint))
        reply = running.rest("POST", f"/api/advanced/models/lstm/{version}/activate", {})
        assert reply.status == 200, reply.body
        reply = running.rest("GET", "/api/advanced/fleet/scores")  # latest scores from the fixture
        assert reply.status == 200, reply.body
        for miner_id in SECOND_SITE:  # two sites, so the site filter and the map have groups
            miner = running.rest("GET", f"/api/advanced/miners/{miner_id}").json()
            reply = running.rest("PUT", f"/api/advanced/miners/{miner_id}", {**miner, "site": "demo-row-2"})
            assert reply.status == 200, reply.body
        yield running
    finally:
        running.close()


@pytest.fixture(scope="session")
def auth_tokens(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tokens for a reader, a collector (writer only) and an operator with every role, and the file
    that lists them."""
    folder = tmp_path_factory.mktemp("tokens")
    reader, reader_entry = mint("reader", ["reader"], [])
    writer, writer_entry = mint("collector", ["writer"], [])
    admin, admin_entry = mint("operator", ["admin"], [])
    path = folder / "tokens.json"
    path.write_text(json.dumps({"tokens": [reader_entry, writer_entry, admin_entry]}))
    return {"reader": reader, "writer": writer, "admin": admin, "file": path}


@pytest.fixture(scope="session")
def auth_stack(
    built_console: Path, auth_tokens: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    running = start_stack(Path(tmp_path_factory.mktemp("console-auth")), auth_tokens_file=auth_tokens["file"])
    yield running
    running.close()


class ConsoleErrors(list[str]):
    """Console errors and uncaught exceptions of a page, as text."""

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.append(f"console.error: {message.text} ({message.location})")


@pytest.fixture
def console_errors(page: Page) -> Iterator[ConsoleErrors]:
    """Collects the page's console errors; the test fails if any remain that it did not expect."""
    errors = ConsoleErrors()
    page.on("console", errors.on_console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    yield errors
    assert not errors, f"console errors on the page: {errors}"


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the current page."""
    page.add_script_tag(path=str(AXE))
    violations: list[dict[str, Any]] = page.evaluate("async () => (await axe.run()).violations")
    return [v for v in violations if v.get("impact") in ("serious", "critical")]


def hot_reading(stack: Stack, miner_id: str, temperature_c: float = 115.0) -> None:
    """Ingests one reading at the current time through REST: hot enough for the fixture model's
    CRITICAL answer (above HOT_C), otherwise like the miner's nominal state."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    sample = {
        "miner_id": miner_id,
        "timestamp": now,
        "hashrate_ths": 100.0,
        "temperature_c": temperature_c,
        "fan_speed_rpm": 5000.0,
        "power_w": 3250.0,
    }
    reply = stack.rest("POST", "/api/advanced/metrics", {"samples": [sample]})
    assert reply.status == 200, reply.body
    assert reply.json()["written"] == 1, reply.body


def screenshot(page: Page, name: str, full_page: bool = False) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
