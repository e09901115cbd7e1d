"""Keyboard only: skip link first, then through the filters to a miner, which Enter opens."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.console.conftest import ConsoleErrors
from tests.harness import Stack


def test_keyboard_reaches_and_opens_a_miner(
    page: Page, console_stack: Stack, console_errors: ConsoleErrors
) -> None:
    page.goto(console_stack.http_base + "/")
    expect(page.locator("table.fleet tbody tr").first).to_be_visible(timeout=30_000)
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")  # to main: the next Tab stops inside the page, not the header
    assert page.evaluate("() => document.activeElement.id") == "main"
    assert page.url.endswith("/"), "the skip link must not change the route"
    first = page.locator("table.fleet tbody tr").first.get_attribute("data-miner-id")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.getAttribute('href')") == f"#/miner/{first}":
            break
    else:
        raise AssertionError("Tab never reached the first miner's link")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"#/miner/{re.escape(first or '')}$"))
    expect(page.locator("h1")).to_have_text(f"Miner {first}")
