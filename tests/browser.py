"""Headless Chromium for the browser tests: the system's `chromium`, driven by Playwright.

Playwright never downloads a browser here: it drives Debian's `chromium` package through
`executable_path`. Without it the tests skip, saying how to install it.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root in a container: the sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the machine is offline: no update or safe-browsing calls
    "--disable-component-update",
    "--disable-sync",
]
MISSING = (
    "Chromium is not installed: the browser tests need the system browser "
    "(Debian/Ubuntu: `apt-get install -y chromium`; Playwright's Python package drives it, "
    "no browser download). `.ci/run` installs it."
)


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Launch headless Chromium, or skip the test when it is not installed."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip(MISSING)
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


# Records what an EventSource sees, with the page's clock (milliseconds since the epoch).
_RECORDER = """
([url, types]) => {
  window.seen = [];
  const source = new EventSource(url);
  window.source = source;
  source.onopen = () => seen.push({kind: "open", t: Date.now()});
  source.onerror = () => seen.push({kind: "error", t: Date.now(), state: source.readyState});
  const record = (e) => seen.push(
    {kind: "event", type: e.type, data: e.data, lastEventId: e.lastEventId, t: Date.now()});
  source.onmessage = record;
  for (const type of types) source.addEventListener(type, record);
}
"""


class EventSourcePage:
    """A page that opens an `EventSource` and records its events, opens and errors."""

    def __init__(self, page: Page, url: str, types: tuple[str, ...] = ()) -> None:
        self.page = page
        page.evaluate(_RECORDER, [url, ["reset", *types]])

    def seen(self) -> list[dict[str, Any]]:
        return list(self.page.evaluate("window.seen"))

    def events(self) -> list[dict[str, Any]]:
        return [entry for entry in self.seen() if entry["kind"] == "event"]

    def wait_for(self, condition: str, timeout: float = 10) -> None:
        """Wait until `condition`, a JS expression over `seen` (the records), is true."""
        try:
            self.page.wait_for_function(f"() => ({condition})", timeout=timeout * 1000)
        except Exception as exc:
            raise AssertionError(f"not {condition} within {timeout}s; seen: {self.seen()}") from exc

    def wait_events(self, n: int, timeout: float = 10) -> list[dict[str, Any]]:
        self.wait_for(f"seen.filter(e => e.kind === 'event').length >= {n}", timeout)
        return self.events()
