"""The status page at `/`, as a real browser (headless Chromium) shows it during an outage.

The screenshot goes to tmp_path. To refresh the one in the README, run:

    BREAKWATER_STATUS_SCREENSHOT=docs/status.png .venv/bin/pytest tests/integration/test_status_page.py

Chromium is required, not optional: `apt-get install -y chromium` (Debian).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import time
import zlib
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from app.catalog.default import DEFAULT_CATALOG
from tests.support.fault_proxy import FaultProxy

from .gateway_process import ROOT, GatewayProcess

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT_ENV = "BREAKWATER_STATUS_SCREENSHOT"
WIDTH, HEIGHT = 1280, 900
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_chromium(profile: Path, *args: str, timeout: float = 60.0) -> str:
    """Run headless Chromium once; return its standard output (the DOM for --dump-dom)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed; install it with `apt-get install -y chromium`")
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        *args,
    ]
    # A session of its own, so that its helper processes go with it whatever happens.
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}:\n{err.decode()[-2000:]}"
    return out.decode()


class PageText(HTMLParser):
    """The text inside every element with an `id`, and inside each `<tr data-channel=...>`."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.rows: dict[str, list[str]] = {}
        self.title = ""
        self.refresh: str | None = None
        self._open: list[tuple[str, str | None, str | None]] = []  # tag, id, channel
        self._cells: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "meta" and attributes.get("http-equiv") == "refresh":
            self.refresh = attributes.get("content")
        if tag in ("meta", "br", "link", "img", "input"):
            return  # void elements have no end tag to match
        self._open.append((tag, attributes.get("id"), attributes.get("data-channel")))
        if tag == "tr" and attributes.get("data-channel"):
            self.rows[str(attributes["data-channel"])] = self._cells = []
        elif tag in ("td", "th") and self._cells is not None:
            self._cells.append("")

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            open_tag, _, channel = self._open.pop()
            if channel is not None:
                self._cells = None
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for tag, ident, _ in self._open:
            if ident is not None:
                self.by_id[ident] = _words(self.by_id.get(ident, "") + " " + data)
            if tag == "title":
                self.title = _words(self.title + " " + data)
        if self._cells:
            self._cells[-1] = _words(self._cells[-1] + " " + data)


def _words(text: str) -> str:
    return " ".join(text.split())


def assert_is_a_full_page_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), "not a PNG"
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (width, height) == (WIDTH, HEIGHT)
    channels = {2: 3, 6: 4}[colour]
    # A blank or unstyled page compresses to a few kB; the status page is well over 20 kB.
    assert len(data) > 20_000, f"suspiciously small screenshot: {len(data)} bytes"
    idat, offset = b"", 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        if kind == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    pixels = zlib.decompress(idat)
    assert len(pixels) == height * (1 + width * channels * depth // 8), "truncated image data"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


@pytest.mark.timeout(90)
def test_status_page_shows_an_outage_in_a_real_browser(
    start_gateway: Callable[..., GatewayProcess],
    fault_proxy: FaultProxy,
    broker_url: str,
    vhost: str,
    tmp_path: Path,
) -> None:
    gateway = start_gateway(
        broker_url=f"amqp://guest:guest@127.0.0.1:{fault_proxy.port}/{vhost}",
        inbound_broker_url=broker_url,  # inbound stays up: the page shows both colours
        publish_timeout_s="0.5",
        breaker_fail_max="2",
        breaker_reset_timeout_s="120",  # stays open while the browser looks
        replay_rate="250",
    )
    with httpx.Client(base_url=gateway.base_url) as client:

        def post(channel: str, count: int, expect: str) -> None:
            for _ in range(count):
                response = client.post(
                    f"/v1/events/{channel}", json=DEFAULT_CATALOG[channel].example
                )
                assert response.status_code == 202, response.text
                assert response.json()["status"] == expect

        post("orders.created", 12, "published")
        post("orders.cancelled", 3, "published")
        post("payments.captured", 9, "published")
        assert client.post("/v1/events/orders.created", json={"order_id": 1}).status_code == 422
        assert client.post("/v1/events/orders.shipped", json={}).status_code == 404

        fault_proxy.reject_new(True)
        fault_proxy.reset()
        wait_until(
            lambda: not client.get("/readyz").json()["broker_connected"], 10, "the link to drop"
        )
        post("orders.created", 7, "stored")
        post("orders.cancelled", 2, "stored")
        wait_until(lambda: client.get("/readyz").json()["breaker"] == "open", 10, "breaker open")

        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")

    url = f"{gateway.base_url}/"
    dom = PageText()
    dom.feed(run_chromium(tmp_path / "profile-dom", "--dump-dom", url))

    assert dom.refresh == "5"
    assert dom.by_id["breaker-state"] == "Open"
    assert dom.by_id["outbound-state"] == "Disconnected"
    assert dom.by_id["inbound-state"] == "Connected"
    assert dom.by_id["store-depth"] == "9"
    assert dom.by_id["replay-state"] == "Paused"
    assert dom.by_id["replay-rate"] == "250 events/s"
    assert dom.title.startswith("Degraded")
    # Cells: channel, waiting in store, oldest, published, stored, replayed, rejected (reasons).
    created = dom.rows["orders.created"]
    assert created[1] == "7"
    assert created[3:] == ["12", "7", "0", "1 invalid payload 1"]
    assert dom.rows["orders.cancelled"][1:2] + dom.rows["orders.cancelled"][3:6] == [
        "2",
        "3",
        "2",
        "0",
    ]
    assert dom.rows["payments.captured"][1] == "0"
    assert dom.rows["unknown"][-1] == "1 unknown channel 1"

    screenshot = tmp_path / "status.png"
    run_chromium(tmp_path / "profile-shot", f"--screenshot={screenshot}", url)
    assert_is_a_full_page_png(screenshot)
    if target := os.environ.get(SCREENSHOT_ENV):
        (ROOT / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, ROOT / target)
