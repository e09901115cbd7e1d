"""The miner page in Chromium: readings, risk history and anomaly charts with their markers, the
current risk with its factors, and recording a failure and feedback."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.console.conftest import ConsoleErrors
from tests.harness import Stack


def chart_count(page: Page, chart_id: str, what: str) -> int:
    return int(page.locator(f"#{chart_id}").get_attribute(f"data-{what}") or 0)


def test_clicking_a_miner_opens_its_charts_with_points_and_failure_markers(
    page: Page, console_stack: Stack, console_errors: ConsoleErrors
) -> None:
    failures = console_stack.rest("GET", "/api/advanced/failures?page_size=100").json()["failures"]
    assert failures, "the demo fleet records at least one failure"
    miner_id = failures[0]["miner_id"]
    page.goto(console_stack.http_base + "/")
    page.locator(f'tr[data-miner-id="{miner_id}"] a').click()

    expect(page).to_have_url(re.compile(rf"#/miner/{re.escape(miner_id)}$"))
    expect(page.locator("h1")).to_have_text(f"Miner {miner_id}")
    for chart_id in ("chart-temperature-c", "chart-hashrate-ths", "chart-risk", "chart-anomaly"):
        expect(page.locator(f"#{chart_id} canvas").first).to_be_visible(timeout=60_000)
        assert chart_count(page, chart_id, "points") > 0, chart_id
    page.get_by_role("button", name="7 d").click()  # the demo fleet's failure lies days back
    expect(page.locator("#chart-temperature-c canvas").first).to_be_visible(timeout=60_000)
    assert chart_count(page, "chart-temperature-c", "markers") >= 1
    expect(page.locator("#chart-temperature-c .events")).to_contain_text("failure")
    expect(page.locator(".risk-now .level")).to_have_text(re.compile("Low|Medium|High|Critical"))
    assert page.locator("table.factors tbody tr").count() > 0


def test_recording_a_failure_marks_it_on_the_charts_and_feedback_is_kept(
    page: Page, console_stack: Stack, console_errors: ConsoleErrors
) -> None:
    miner_id = "192.168.1.102"
    page.goto(f"{console_stack.http_base}/#/miner/{miner_id}")
    expect(page.locator("#chart-temperature-c canvas").first).to_be_visible(timeout=60_000)
    before = chart_count(page, "chart-temperature-c", "markers")

    page.select_option("#failure-mode", label="psu")
    page.fill("#failure-note", "PSU swapped by the console test")
    page.get_by_role("button", name="Record failure now").click()
    expect(page.locator(".result")).to_have_text("Failure recorded.")
    expect(page.locator("ul.failures")).to_contain_text("PSU swapped by the console test")
    expect(page.locator("#chart-temperature-c")).to_have_attribute(
        "data-markers", str(before + 1), timeout=60_000
    )

    page.get_by_role("button", name="False alarm").click()
    expect(page.locator(".result")).to_have_text("Feedback recorded: false alarm.")
    recorded = console_stack.rest("GET", f"/api/advanced/failures?miner_id={miner_id}").json()["failures"]
    assert any(
        f["note"] == "PSU swapped by the console test" and f["mode"] == "FAILURE_MODE_PSU" for f in recorded
    )
