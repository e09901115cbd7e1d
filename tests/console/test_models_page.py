"""The models page in Chromium: active versions, the registry, and a training job started from the
page that shows its progress from the watch stream and ends in the registry."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import ConsoleErrors
from tests.harness import Stack


def test_models_page_shows_active_versions_and_documented_defaults(
    page: Page, console_stack: Stack, console_errors: ConsoleErrors
) -> None:
    models = console_stack.rest("GET", "/api/advanced/models").json()["models"]
    active = [m["version"] for m in models if m["active"]]
    page.goto(console_stack.http_base + "/#/models")
    for version in active:
        expect(page.locator(".active-models")).to_contain_text(version)
        expect(page.locator(f'tr[data-version="{version}"]')).to_contain_text("Active")
    expect(page.locator("#train-epochs")).to_have_value("50")
    expect(page.locator("#train-batch")).to_have_value("32")
    expect(page.locator("#train-split")).to_have_value("0.2")
    page.select_option("#train-kind", label="Anomaly (autoencoder)")
    expect(page.locator("#train-epochs")).to_have_value("100")
    expect(page.locator("#train-split")).to_have_value("0.1")


def test_training_job_from_the_page_shows_progress_and_ends_in_the_registry(
    page: Page, console_stack: Stack, console_errors: ConsoleErrors
) -> None:
    page.goto(console_stack.http_base + "/#/models")
    page.select_option("#train-kind", label="Anomaly (autoencoder)")
    page.fill("#train-epochs", "2")
    page.get_by_role("button", name="Start training").click()
    expect(page.locator(".result")).to_contain_text("Training job")
    job_id = (page.locator(".result").inner_text()).split()[2]
    row = page.locator(f'tr[data-job="{job_id}"]')
    expect(row).to_be_visible()
    # Progress arrives on the watch stream: the row passes through a running epoch to success.
    expect(row.locator("td.state")).to_have_text("Running", timeout=120_000)
    expect(row).to_contain_text("of 2")
    expect(row.locator("td.state")).to_have_text("Succeeded", timeout=300_000)
    expect(row.locator("progress")).to_have_attribute("value", "2")

    job = console_stack.rest("GET", f"/api/advanced/train/jobs/{job_id}").json()
    assert job["state"] == "JOB_STATE_SUCCEEDED"
    version = job["model_version"]
    expect(row).to_contain_text(version)
    expect(page.locator(f'table.registry tr[data-version="{version}"]')).to_be_visible(timeout=30_000)


def test_activate_from_the_registry_switches_the_served_version(
    page: Page, console_stack: Stack, console_errors: ConsoleErrors
) -> None:
    before = console_stack.rest("GET", "/api/advanced/models?model_kind=AUTOENCODER").json()["models"]
    assert len(before) >= 2, "needs two autoencoder versions (the training test makes the second)"
    target = next(m["version"] for m in before if not m["active"])
    page.goto(console_stack.http_base + "/#/models")
    page.locator(f'tr[data-version="{target}"] button').click()
    expect(page.locator(".result")).to_have_text(f"Activated {target}.")
    expect(page.locator(f'tr[data-version="{target}"]')).to_contain_text("Active")
    after = console_stack.rest("GET", "/api/advanced/models?model_kind=AUTOENCODER").json()["models"]
    assert [m["version"] for m in after if m["active"]] == [target]
