"""The console in a real headless Chromium, against a gateway on loopback.

The gateway runs in a werkzeug server thread with its dispatcher on; it
receives the signed example deliveries over HTTP. The browser signs in,
filters, opens an event, replays a dead letter and sees the new outcome.
Screenshots of each page go to ``var/screenshots/`` (ignored by git).

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium``
package; skipped without them, except under CI=true, where ``.ci/run``
installs them and their absence fails the test.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway import DoNotRetry
from gateway.messages import record_status
from tests.conftest import ALL_SOURCES_TOML, ROOT, example

TOKEN = "browser-token-0123456789"
SCREENSHOTS = ROOT / "var" / "screenshots"
WAIT_SECONDS = 20
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)
EXAMPLES = [
    ("integration", "hmac-sha256", "message.sent.json", {}),
    ("integration", "hmac-sha256", "message.delivered.json", {}),
    ("integration", "hmac-sha256", "message.read.json", {}),
    ("integration", "hmac-sha256", "message.failed.json", {}),
    (
        "github",
        "github",
        "github.issues.opened.json",
        {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "gh-browser-1"},
    ),
    (
        "github",
        "github",
        "github.ping.json",
        {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "gh-browser-2"},
    ),
    ("stripe", "stripe", "stripe.invoice.paid.json", {}),
    ("standard", "standard", "standard.appointment.booked.json", {}),
    ("slack", "slack", "slack.event_callback.json", {}),
    (
        "shopify",
        "shopify",
        "shopify.orders.create.json",
        {"X-Shopify-Topic": "orders/create", "X-Shopify-Webhook-Id": "sh-browser-1"},
    ),
]


def _browser_tools() -> tuple[str, str]:
    """Return the chromium and chromedriver paths, or skip (fail under CI)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
    )
    missing = [
        name
        for name, found in (("chromium", chromium), ("chromedriver", driver))
        if not found
    ]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        message = (
            f"{' and '.join(missing)} not installed (apt-get install chromium"
            " chromium-driver; pip install selenium)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}, and CI=true requires the browser tests")
        pytest.skip(message)
    assert chromium and driver
    return chromium, driver


@pytest.fixture
def live_gateway(make_app: Any, connect: Any) -> Iterator[dict[str, Any]]:
    """A console-enabled gateway served on 127.0.0.1 with its dispatcher on."""
    from werkzeug.serving import make_server

    state = {"fixed": False}

    def flaky_billing(source: str, event: Any) -> None:
        if event.type == "message.failed" and not state["fixed"]:
            raise DoNotRetry("billing service refused the message")

    def archive(source: str, event: Any) -> None:
        return None

    def track_messages(source: str, event: Any) -> None:
        status = event.type.removeprefix("message.")
        record_status(event.data["id"], status, event_id=event.id)

    connect("message.*", flaky_billing)
    connect("message.*", track_messages)
    connect("*", archive)
    app = make_app(
        ALL_SOURCES_TOML,
        GATEWAY_CONSOLE="1",
        GATEWAY_CONSOLE_TOKEN=TOKEN,
        GATEWAY_DISPATCHER="1",
        GATEWAY_POLL_SECONDS="0.2",
        GATEWAY_MAX_RETRIES="0",
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    gateway = app.extensions["gateway"]
    try:
        yield {
            "url": f"http://127.0.0.1:{server.server_port}",
            "gateway": gateway,
            "state": state,
        }
    finally:
        server.shutdown()
        thread.join(10)
        gateway.dispatcher.stop(timeout_seconds=5)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A headless Chromium driven by selenium, with a fresh profile."""
    chromium, driver_path = _browser_tools()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Selenium must use the system driver and never fetch one.
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(
        service=Service(executable_path=driver_path), options=options
    )
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


def post_examples(url: str, sign: Callable[..., dict[str, str]]) -> None:
    for source, scheme, file, extra in EXAMPLES:
        body = example(file)
        headers = {
            "Content-Type": "application/json",
            **sign(scheme, body, message_id=f"msg_{file}"),
            **extra,
        }
        answer = requests.post(
            f"{url}/api/webhooks/{source}", data=body, headers=headers, timeout=10
        )
        assert answer.status_code == 202, (file, answer.text)


def wait_until(condition: Callable[[], Any], what: str) -> Any:
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )

    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            result = condition()
        except (NoSuchElementException, StaleElementReferenceException):
            result = None  # the page is being replaced; look again
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def shoot(driver: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def test_operator_filters_opens_an_event_and_replays_a_dead_letter(
    live_gateway, browser, sign
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, gateway = live_gateway["url"], live_gateway["gateway"]
    post_examples(url, sign)
    wait_until(lambda: gateway.store.dead_letter_pks(), "the dead letter")
    wait_until(
        lambda: gateway.store.counts_by_status().get("pending", 0) == 0,
        "every delivery to be dispatched",
    )

    def text() -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    def click(by: str, value: str) -> None:
        # The previous page may still be showing: wait for the element.
        wait_until(lambda: browser.find_elements(by, value), value).pop(0).click()

    def dead_rows() -> list[str]:
        rows = browser.find_elements(By.CSS_SELECTOR, "#deliveries tbody tr")
        return [row.text.split()[3] for row in rows if row.text]

    browser.get(f"{url}/console/")
    assert "Sign in" in browser.title
    shoot(browser, "01-sign-in")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    click(By.CSS_SELECTOR, "form.login button")
    wait_until(lambda: browser.title.startswith("Overview"), "the overview")
    assert "Stored deliveries per minute" in text()
    shoot(browser, "02-overview")

    click(By.LINK_TEXT, "Deliveries")
    wait_until(lambda: "invoice.paid" in text(), "the deliveries list")
    shoot(browser, "03-deliveries")
    Select(browser.find_element(By.ID, "f-status")).select_by_value("dead")
    click(By.CSS_SELECTOR, "form.filters button")
    wait_until(lambda: dead_rows() == ["message.failed"], "the filtered list")
    assert "status=dead" in browser.current_url
    shoot(browser, "04-deliveries-dead")

    click(By.LINK_TEXT, "Clear filters")
    body = b'{"id":"evt_live_1","type":"ping"}'
    requests.post(
        f"{url}/api/webhooks/integration",
        data=body,
        headers={"Content-Type": "application/json", **sign("hmac-sha256", body)},
        timeout=10,
    )
    wait_until(lambda: "evt_live_1" in text(), "the live update of the list")

    click(By.LINK_TEXT, "Dead letters")
    wait_until(lambda: "billing service refused" in text(), "the dead letters")
    shoot(browser, "05-dead-letters")
    click(By.LINK_TEXT, "Handlers")
    wait_until(lambda: "flaky_billing" in text(), "the handlers page")
    shoot(browser, "06-handlers")

    click(By.LINK_TEXT, "Dead letters")
    click(By.LINK_TEXT, "evt_01HQ7MSG0004")
    wait_until(lambda: "Payload" in text(), "the event page")
    assert "masked" in text()
    assert "DoNotRetry: billing service refused the message" in text()
    shoot(browser, "07-event-dead")

    live_gateway["state"]["fixed"] = True
    click(By.CSS_SELECTOR, 'tr[data-handler$="flaky_billing"] button')
    wait_until(lambda: "Replay this event?" in text(), "the confirmation")
    shoot(browser, "08-confirm")
    click(By.CSS_SELECTOR, "form.confirm button")

    def replayed_ok() -> bool:
        handler = browser.find_element(
            By.CSS_SELECTOR, 'tr[data-handler$="flaky_billing"] .badge'
        )
        event = browser.find_element(By.ID, "event-status")
        # The page reloads itself until the event leaves "pending".
        return handler.text == "ok" and event.text == "done"

    wait_until(replayed_ok, "the replayed handler's new outcome")
    shoot(browser, "09-event-replayed")
    assert gateway.store.dead_letter_pks() == []


def test_operator_lists_refused_and_duplicate_deliveries(live_gateway, browser, sign):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, gateway = live_gateway["url"], live_gateway["gateway"]
    post_examples(url, sign)
    forged = b'{"id":"evt_forged_1","type":"message.read"}'
    answer = requests.post(
        f"{url}/api/webhooks/integration",
        data=forged,
        headers={
            "Content-Type": "application/json",
            "X-Integration-Signature": "f" * 64,
            "X-Request-Id": "req-forged-browser",
        },
        timeout=10,
    )
    assert answer.status_code == 401
    repeat = example("message.read.json")
    answer = requests.post(
        f"{url}/api/webhooks/integration",
        data=repeat,
        headers={
            "Content-Type": "application/json",
            **sign("hmac-sha256", repeat, message_id="msg_message.read.json"),
        },
        timeout=10,
    )
    assert answer.status_code == 200 and answer.json()["duplicate"] is True
    assert gateway.refusals.flush(WAIT_SECONDS)

    def text() -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    def click(by: str, value: str) -> None:
        wait_until(lambda: browser.find_elements(by, value), value).pop(0).click()

    def filter_by(status: str) -> None:
        click(By.LINK_TEXT, "Deliveries")
        wait_until(lambda: browser.find_elements(By.ID, "f-status"), "the filters")
        Select(browser.find_element(By.ID, "f-status")).select_by_value(status)
        click(By.CSS_SELECTOR, "form.filters button")
        wait_until(lambda: f"status={status}" in browser.current_url, status)

    browser.get(f"{url}/console/login")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    click(By.CSS_SELECTOR, "form.login button")
    wait_until(lambda: browser.title.startswith("Overview"), "the overview")

    filter_by("duplicate")
    wait_until(lambda: "+1 duplicate" in text(), "the repeated event")
    assert "message.read" in text() and "invoice.paid" not in text()
    shoot(browser, "10-deliveries-duplicate")

    filter_by("refused")
    wait_until(lambda: "req-forged-browser" in text(), "the refused delivery")
    assert "invalid_signature" in text()
    assert "no configured secret matched" in text()
    assert "evt_forged_1" not in text()
    shoot(browser, "11-deliveries-refused")

    click(By.CSS_SELECTOR, "#refusals tbody tr a")
    wait_until(lambda: "What was kept of the request" in text(), "the refusal")
    assert "x-integration-signature" in text() and "f" * 64 not in text()
    shoot(browser, "12-refusal")
