"""The console with authentication on: a token prompt, tokens kept in session storage and never in
a URL, 401/403 as sentences, and controls hidden from roles that may not use them."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.console.conftest import ConsoleErrors
from tests.harness import Stack


def sign_in(page: Page, stack: Stack, token: str) -> None:
    page.goto(stack.http_base + "/")
    expect(page.locator("#token")).to_be_visible(timeout=30_000)
    page.fill("#token", token)
    page.get_by_role("button", name="Sign in").click()


def test_no_token_shows_a_prompt_not_the_fleet(
    page: Page, auth_stack: Stack, console_errors: ConsoleErrors
) -> None:
    page.goto(auth_stack.http_base + "/")
    expect(page.locator("#token-problem")).to_have_text(
        "This server requires a token. Enter the bearer token you were given."
    )
    expect(page.locator("table.fleet")).to_have_count(0)


def test_bad_token_is_answered_with_a_sentence(
    page: Page, auth_stack: Stack, console_errors: ConsoleErrors
) -> None:
    sign_in(page, auth_stack, "not-a-real-token")
    expect(page.locator("#token-problem")).to_have_text(
        "That token was not accepted: it is not in the server's tokens file. Enter another token."
    )
    assert page.evaluate("() => sessionStorage.getItem('mfh.token')") is None


def test_reader_sees_the_fleet_but_no_train_form_or_write_buttons(
    page: Page, auth_stack: Stack, auth_tokens: dict[str, Any], console_errors: ConsoleErrors
) -> None:
    sign_in(page, auth_stack, auth_tokens["reader"])
    expect(page.locator("table.fleet tbody tr").first).to_be_visible(timeout=30_000)
    expect(page.locator("#who")).to_contain_text("Signed in: reader")
    assert page.evaluate("() => sessionStorage.getItem('mfh.token')") == auth_tokens["reader"]
    assert auth_tokens["reader"] not in page.url

    page.goto(auth_stack.http_base + "/#/models")
    expect(page.locator("#registry-title")).to_be_visible()
    expect(page.locator(".active-models")).to_be_visible()
    expect(page.locator("#train-kind")).to_have_count(0)
    expect(page.get_by_role("button", name="Activate")).to_have_count(0)

    page.goto(auth_stack.http_base + "/#/miner/192.168.1.100")
    expect(page.locator("h1")).to_have_text("Miner 192.168.1.100")
    expect(page.locator(".facts")).to_contain_text("Antminer")
    expect(page.get_by_role("button", name="Record failure now")).to_have_count(0)
    expect(page.get_by_role("button", name="Confirmed")).to_have_count(0)


def test_operator_gets_the_train_form_and_write_buttons(
    page: Page, auth_stack: Stack, auth_tokens: dict[str, Any], console_errors: ConsoleErrors
) -> None:
    sign_in(page, auth_stack, auth_tokens["admin"])
    expect(page.locator("#who")).to_contain_text("Signed in: reader, writer, trainer")
    page.goto(auth_stack.http_base + "/#/models")
    expect(page.locator("#train-kind")).to_be_visible()
    page.goto(auth_stack.http_base + "/#/miner/192.168.1.100")
    expect(page.get_by_role("button", name="Record failure now")).to_be_visible()


def test_token_without_the_reader_role_gets_a_403_sentence(
    page: Page, auth_stack: Stack, auth_tokens: dict[str, Any], console_errors: ConsoleErrors
) -> None:
    sign_in(page, auth_stack, auth_tokens["writer"])
    problem = page.locator("main .problem")
    expect(problem).to_have_text(
        re.compile(r"^Your token may not do this \(.*collector.*needs the role reader\)\.")
    )
    expect(problem).to_contain_text("Ask an administrator for a token with that role.")
    page.get_by_role("button", name="Use another token").click()
    expect(page.locator("#token")).to_be_visible()
