"""The page in real headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright), on real servers.

Playwright's sync API must not run inside an event loop, so the simulator and the servers run in
a blocking portal's thread, and the tests are plain functions. One browser for the module, a fresh
context per test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, expect, sync_playwright

from pipeline.apps.serve import RegistryStatistics
from tests.serve.harness import Served, serving

CHROMIUM = "/usr/bin/chromium"
CLOSED_NETWORK = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost"
"""Keeps Chromium from resolving Google hosts on a closed network."""

END = 30_000
"""Milliseconds a whole report may take to arrive in the page."""


@dataclass(frozen=True, slots=True)
class LiveServer:
    """A server running in the portal's thread, and ways to look inside it from the test's."""

    served: Served
    portal: BlockingPortal

    @property
    def url(self) -> str:
        return self.served.url

    def statistics(self) -> RegistryStatistics:
        return self.portal.call(self.served.server.registry.statistics)

    def last_upstream_request(self) -> dict[str, Any]:
        sim = self.served.sim
        return self.portal.call(lambda: sim.truth(sim.requests[-1]))

    def state(self, stream_id: str) -> dict[str, Any]:
        response = httpx2.get(f"{self.url}/api/streams/{stream_id}")
        assert response.status_code == 200
        state: dict[str, Any] = response.json()
        return state


Servers = Callable[..., LiveServer]


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    """Servers by settings, started on first use and kept for the module."""
    with start_blocking_portal(backend="asyncio") as portal, ExitStack() as stack:
        started: dict[tuple[tuple[str, Any], ...], LiveServer] = {}

        def get(**settings: Any) -> LiveServer:
            key = tuple(sorted(settings.items()))
            if key not in started:
                served = stack.enter_context(portal.wrap_async_context_manager(serving(**settings)))
                started[key] = LiveServer(served, portal)
            return started[key]

        yield get


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=[CLOSED_NETWORK])
        yield launched
        launched.close()


@dataclass(slots=True)
class Watched:
    """A page, and what it said that it should not have: console errors (CSP violations), dialogs."""

    page: Page
    problems: list[str]


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"console {message.type}: {message.text}")

    def on_dialog(dialog: Dialog) -> None:
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("console", on_console)
    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    yield Watched(page, problems)
    context.close()


def start_report(page: Page, url: str) -> str:
    """Opens the page at ``url``, presses Start, and returns the stream id the page put in its URL."""
    page.goto(url)
    page.get_by_test_id("start").click()
    expect(page).to_have_url(re.compile(r"\?stream=\w+$"))
    stream_id: str = page.evaluate("new URLSearchParams(location.search).get('stream')")
    return stream_id


def wait_for_text(page: Page, chars: int) -> None:
    """Until the output holds ``chars`` characters (a locator wait: the CSP forbids Playwright's eval)."""
    expect(page.get_by_test_id("output")).to_have_text(re.compile(rf"[\s\S]{{{chars}}}"), timeout=END)


def output_text(page: Page) -> str:
    text: str = page.get_by_test_id("output").evaluate("element => element.textContent")
    return text


def test_page_streams_a_whole_report(servers: Servers, watched: Watched) -> None:
    """Start: the text arrives live and ends equal to the accumulated text; the status line fills in."""
    server = servers(retry_ms=200)
    page = watched.page
    stream_id = start_report(page, f"{server.url}/?max_tokens=1500")
    expect(page.get_by_test_id("outcome")).to_have_text("completed", timeout=END)
    state = server.state(stream_id)
    assert output_text(page) == state["text"]
    assert len(state["text"]) > 3000
    status = page.get_by_test_id("status").inner_text()
    for part in ("TTFT", "1,500 output tokens", "tokens/s", "$", "completed"):
        assert part in status, status
    expect(page.get_by_test_id("report").locator("h2").first).to_be_visible()
    expect(page.get_by_test_id("stop")).to_be_disabled()
    assert watched.problems == []


def test_cut_connections_resume_with_last_event_id(servers: Servers, watched: Watched) -> None:
    """Each connection is ended after 0.3 s; EventSource resumes with ``Last-Event-ID``, losing nothing."""
    server = servers(retry_ms=100, max_connection_s=0.3)
    page = watched.page
    resumed_before = server.statistics().resumed_total
    stream_id = start_report(page, f"{server.url}/?max_tokens=2500&tokens_per_s=1500")
    expect(page.get_by_test_id("outcome")).to_have_text("completed", timeout=END)
    assert server.statistics().resumed_total - resumed_before >= 2
    assert output_text(page) == server.state(stream_id)["text"]
    assert watched.problems == []


def test_markup_in_the_output_stays_text(servers: Servers, watched: Watched) -> None:
    """Tags, handlers and script from the model show as text; no element or script is created from them."""
    server = servers(retry_ms=200)
    page = watched.page
    stream_id = start_report(page, f"{server.url}/?scenario=markup&max_tokens=1500")
    expect(page.get_by_test_id("outcome")).to_have_text("completed", timeout=END)
    text = output_text(page)
    assert text == server.state(stream_id)["text"]
    assert '<script>alert("rillet")</script>' in text
    assert "\r\n" in text
    assert "\u2028" in text
    found = page.evaluate(
        """() => ({
            outputChildren: document.querySelector('[data-testid="output"]').children.length,
            scripts: [...document.scripts].map((script) => script.src),
            images: document.images.length,
            handlers: [...document.querySelectorAll("*")]
                .flatMap((element) => [...element.attributes].map((a) => a.name))
                .filter((name) => name.startsWith("on")),
            links: [...document.querySelectorAll("a")]
                .map((a) => a.href)
                .filter((href) => !href.startsWith("http")),
        })"""
    )
    assert found == {
        "outputChildren": 0,
        "scripts": [f"{server.url}/app.js"],
        "images": 0,
        "handlers": [],
        "links": [],
    }
    assert page.get_by_test_id("report").locator("p").count() > 3
    assert watched.problems == []


def test_stop_cancels_upstream_and_keeps_the_text(servers: Servers, watched: Watched) -> None:
    """Stop closes the upstream request (the simulator sees the disconnect); the partial text stays."""
    server = servers(retry_ms=200)
    page = watched.page
    stream_id = start_report(page, f"{server.url}/?max_tokens=6000&tokens_per_s=400")
    wait_for_text(page, 200)
    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("outcome")).to_have_text("cancelled", timeout=END)
    state = server.state(stream_id)
    assert output_text(page) == state["text"]
    assert 200 < len(state["text"]) < 6000 * 3
    assert state["usage"]["output_tokens"] < 6000
    upstream = server.last_upstream_request()
    assert upstream["disconnected"]
    assert not upstream["completed"]
    assert watched.problems == []


def test_reload_mid_stream_reattaches(servers: Servers, watched: Watched) -> None:
    """A reload keeps the stream id in the URL, replays everything so far and follows the rest."""
    server = servers(retry_ms=200)
    page = watched.page
    stream_id = start_report(page, f"{server.url}/?max_tokens=2500&tokens_per_s=1500")
    wait_for_text(page, 300)
    page.reload()
    assert page.url.endswith(f"/?stream={stream_id}")
    expect(page.get_by_test_id("outcome")).to_have_text("completed", timeout=END)
    assert output_text(page) == server.state(stream_id)["text"]
    assert server.state(stream_id)["state"] == "ended"
    assert watched.problems == []
