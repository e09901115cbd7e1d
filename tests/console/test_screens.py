"""Every page at desktop and phone width: axe-core finds no serious or critical violation, nothing
is logged as an error, and a screenshot is written under tests/console/screenshots (git-ignored)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import VIEWPORTS, ConsoleErrors, axe_violations, screenshot
from tests.harness import Stack

PAGES = {
    "fleet": ("/#/fleet", "table.fleet tbody tr"),
    "fleet-map": ("/#/fleet", "section.site canvas"),
    "miner": ("/#/miner/192.168.1.100", "#chart-anomaly canvas"),
    "models": ("/#/models", "table.jobs"),
}


@pytest.fixture
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    """axe-core is injected as an inline script, which the console's CSP (rightly) refuses."""
    return {**browser_context_args, "bypass_csp": True}


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("name", list(PAGES))
def test_page_is_accessible_and_screenshotted(
    page: Page, console_stack: Stack, console_errors: ConsoleErrors, name: str, viewport: str
) -> None:
    page.set_viewport_size(VIEWPORTS[viewport])
    path, ready = PAGES[name]
    page.goto(console_stack.http_base + path)
    if name == "fleet-map":
        page.get_by_role("button", name="Map by site").click()
    expect(page.locator(ready).first).to_be_visible(timeout=60_000)
    expect(page.locator("#live")).to_have_text("● Live", timeout=30_000)
    page.wait_for_timeout(300)  # charts draw on the next animation frame
    shot = screenshot(page, f"{name}-{viewport}")
    screenshot(page, f"{name}-{viewport}-full", full_page=True)
    assert shot.stat().st_size > 10_000
    if viewport == "phone":  # nothing wider than the screen but the tables' own scroll areas
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px"
    violations = axe_violations(page)
    assert not violations, [(v["id"], v["help"], [n["target"] for n in v["nodes"][:3]]) for v in violations]
