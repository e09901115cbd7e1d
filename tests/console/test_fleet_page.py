"""The fleet page in Chromium: riskiest first, counts, filters, search, the map, live updates."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.console.conftest import SECOND_SITE, ConsoleErrors, hot_reading
from tests.harness import Stack

LEVEL_TEXT = {
    "LOW": "Low",
    "MEDIUM": "Medium",
    "HIGH": "High",
    "CRITICAL": "Critical",
    "RISK_LEVEL_UNSPECIFIED": "Unscored",
}


def rest_miners(stack: Stack) -> list[dict[str, Any]]:
    reply = stack.rest("GET", "/api/advanced/miners?page_size=1000")
    assert reply.status == 200, reply.body
    return list(reply.json()["miners"])


def open_fleet(page: Page, stack: Stack) -> None:
    page.goto(stack.http_base + "/")
    expect(page.locator("table.fleet tbody tr").first).to_be_visible(timeout=30_000)


def shown_rows(page: Page) -> list[tuple[str, str]]:
    """(miner id, level text) of each row, top to bottom."""
    rows = page.locator("table.fleet tbody tr")
    return [
        (
            rows.nth(i).get_attribute("data-miner-id") or "",
            rows.nth(i).locator("td.risk").inner_text().strip(),
        )
        for i in range(rows.count())
    ]


def test_fleet_lists_riskiest_first_with_levels_and_counts(
    page: Page, console_stack: Stack, console_errors: ConsoleErrors
) -> None:
    open_fleet(page, console_stack)
    miners = rest_miners(console_stack)
    expected = sorted(miners, key=lambda m: (-float(m["risk_score"]), m["miner_id"]))
    assert shown_rows(page) == [(m["miner_id"], LEVEL_TEXT[m["risk_level"]]) for m in expected]
    demo = page.locator('tr[data-miner-id="192.168.1.100"]')
    by_id = {m["miner_id"]: m for m in miners}
    expect(demo.locator("td.risk")).to_have_text(LEVEL_TEXT[by_id["192.168.1.100"]["risk_level"]])
    for level, name in (("LOW", "low"), ("CRITICAL", "critical")):
        count = sum(1 for m in miners if m["risk_level"] == level)
        expect(page.locator(f'button.count[data-level="{name}"] .count-value')).to_have_text(str(count))


def test_filters_by_site_level_hardware_and_search(
    page: Page, console_stack: Stack, console_errors: ConsoleErrors
) -> None:
    open_fleet(page, console_stack)
    miners = {m["miner_id"]: m for m in rest_miners(console_stack)}
    page.select_option("#f-site", "demo-row-2")
    expect(page.locator("table.fleet tbody tr")).to_have_count(len(SECOND_SITE))
    assert sorted(mid for mid, _ in shown_rows(page)) == sorted(SECOND_SITE)
    page.select_option("#f-site", "")

    model = miners["192.168.1.102"]["hardware_model"]
    page.select_option("#f-hardware", model)
    expect(page.locator("table.fleet tbody tr")).to_have_count(
        sum(1 for m in miners.values() if m["hardware_model"] == model)
    )
    page.select_option("#f-hardware", "")

    page.select_option("#f-level", "1")  # Low
    low = sum(1 for m in miners.values() if m["risk_level"] == "LOW")
    expect(page.locator("table.fleet tbody tr")).to_have_count(low)
    assert {level for _, level in shown_rows(page)} == ({"Low"} if low else set())
    page.select_option("#f-level", "")

    for needle in (miners["192.168.1.105"]["mac"].upper(), miners["192.168.1.105"]["serial"], "1.105"):
        page.fill("#f-search", needle)
        expect(page.locator("table.fleet tbody tr")).to_have_count(1)
        expect(page.locator('tr[data-miner-id="192.168.1.105"]')).to_be_visible()
    page.fill("#f-search", "no-such-miner")
    expect(page.locator("table.fleet tbody tr")).to_have_count(0)
    expect(page.locator(".summary")).to_contain_text("Showing 0 of 0")


def test_map_view_groups_miners_by_site_and_opens_one(
    page: Page, console_stack: Stack, console_errors: ConsoleErrors
) -> None:
    open_fleet(page, console_stack)
    page.get_by_role("button", name="Map by site").click()
    sites = page.locator("section.site")
    expect(sites).to_have_count(2)
    expect(sites.nth(0).locator("h2")).to_contain_text("demo-row-1")
    expect(sites.nth(1).locator("h2")).to_contain_text(f"{len(SECOND_SITE)} miners")
    sites.nth(1).locator("canvas").click(position={"x": 6, "y": 6})  # the riskiest of demo-row-2
    expect(page).to_have_url(re.compile(r"#/miner/192\.168\.1\.10[4-7]$"))
    expect(page.locator("h1")).to_contain_text("Miner 192.168.1.10")


def test_live_score_changes_a_level_on_an_open_page_without_reload(
    page: Page, console_stack: Stack, console_errors: ConsoleErrors
) -> None:
    open_fleet(page, console_stack)
    expect(page.locator("#live")).to_have_text("● Live", timeout=30_000)
    page.evaluate("() => { window.__sameDocument = true; }")
    target = "192.168.1.103"
    expect(page.locator(f'tr[data-miner-id="{target}"] td.risk')).to_have_text("Low")

    hot_reading(console_stack, target)

    row = page.locator(f'tr[data-miner-id="{target}"]')
    expect(row.locator("td.risk")).to_have_text("Critical", timeout=60_000)
    expect(page.locator("table.fleet tbody tr").first).to_have_attribute("data-miner-id", target)
    assert page.evaluate("() => window.__sameDocument === true"), "the page reloaded"
    reply = console_stack.rest("GET", f"/api/advanced/predict/failure-risk/{target}")
    assert reply.json()["risk_level"] == "CRITICAL"  # the fixture model's known answer


def test_live_stream_resumes_from_its_sequence_after_a_dropped_connection(
    page: Page, console_stack: Stack, console_errors: ConsoleErrors
) -> None:
    # after_sequence 0 means "no resume" to the server: make sure the page has seen a sequence.
    hot_reading(console_stack, "192.168.1.101", temperature_c=70.0)
    open_fleet(page, console_stack)
    expect(page.locator("#live")).to_have_text("● Live", timeout=30_000)
    page.evaluate("() => { window.__sameDocument = true; }")
    target = "192.168.1.106"
    expect(page.locator(f'tr[data-miner-id="{target}"] td.risk')).to_have_text("Low")

    # The server ends the stream (as when it drains) and reconnects fail until the route is back.
    page.route("**/mining.analytics.v1alpha1.ScoringService/SubscribeScores", lambda route: route.abort())
    console_stack.server.loop.call_soon_threadsafe(console_stack.server.app.hub.close_all, "test: drop")
    expect(page.locator("#live")).to_have_text("◌ Reconnecting…", timeout=30_000)
    hot_reading(console_stack, target)  # published while the page has no stream
    page.wait_for_timeout(1500)  # the rescorer publishes the update with nobody listening
    expect(page.locator(f'tr[data-miner-id="{target}"] td.risk')).to_have_text("Low")
    page.unroute("**/mining.analytics.v1alpha1.ScoringService/SubscribeScores")
    console_errors[:] = [e for e in console_errors if "ERR_FAILED" not in e]  # the refused reconnects

    # Only a resume after the last sequence seen replays the missed update: nothing new is published.
    expect(page.locator("#live")).to_have_text("● Live", timeout=60_000)
    expect(page.locator(f'tr[data-miner-id="{target}"] td.risk')).to_have_text("Critical", timeout=30_000)
    assert page.evaluate("() => window.__sameDocument === true"), "the page reloaded"
