"""The status page's rendering (`app.operations.status_page.render`), a pure function of a snapshot."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from app.operations.status_page import (
    BrokerLink,
    ChannelStatus,
    RateMeter,
    ReplayStatus,
    StatusSnapshot,
    StoreStatus,
    format_bytes,
    format_duration,
    format_rate,
    render,
)
from app.outbound.breaker import BreakerState

HEALTHY = StatusSnapshot(
    version="0.1.0",
    taken_at=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC),
    breaker=BreakerState.closed,
    breaker_retry_after_s=0.0,
    outbound=BrokerLink("amqp://guest:***@rabbit:5672/", connected=True),
    inbound=BrokerLink("amqp://guest:***@rabbit:5672/", connected=True),
    store=StoreStatus("/data/fallback.db", 0, 0, 10**9, writable=True, oldest_age_s=None),
    replay=ReplayStatus(1000.0, 0.0, 10.0, replayed_total=0),
    channels=(ChannelStatus("orders.created", published=12),),
)
OUTAGE = replace(
    HEALTHY,
    breaker=BreakerState.open,
    breaker_retry_after_s=7.4,
    outbound=BrokerLink(
        HEALTHY.outbound.url, False, "the connection to the outbound broker is down"
    ),
    store=StoreStatus("/data/fallback.db", 1234, 812_345, 10**9, True, 192.4),
    channels=(
        ChannelStatus("orders.created", 1234, 192.4, 12, 1234, 0, {"invalid_payload": 2}),
        ChannelStatus("unknown", rejected={"unknown_channel": 3}),
    ),
)


def element(page: str, ident: str) -> str:
    """The text of the element with this id (tags stripped, whitespace collapsed)."""
    match = re.search(rf'id="{ident}"[^>]*>(.*?)</(b|span)>', page, re.S)
    assert match, f"no element #{ident}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def test_a_healthy_gateway_reads_healthy_in_green() -> None:
    page = render(HEALTHY)

    assert '<div class="verdict good"' in page
    assert element(page, "breaker-state") == "Closed"
    assert 'class="badge good" id="breaker-state"' in page
    assert element(page, "outbound-state") == "Connected"
    assert element(page, "inbound-state") == "Connected"
    assert element(page, "store-depth") == "0"
    assert element(page, "replay-state") == "Idle"
    assert element(page, "replay-rate") == "1,000 events/s"


def test_an_outage_reads_degraded_with_the_numbers_and_units_that_matter() -> None:
    page = render(OUTAGE)

    assert "<title>Degraded: storing events · Breakwater</title>" in page
    assert 'class="badge bad" id="breaker-state"' in page
    assert element(page, "breaker-state") == "Open"
    assert "7 s" in page  # until the next trial publish
    assert element(page, "outbound-state") == "Disconnected"
    assert "the connection to the outbound broker is down" in page
    assert element(page, "store-depth") == "1,234"
    assert element(page, "store-oldest") == "3 min 12 s"
    assert element(page, "store-bytes") == "812 kB of 1.00 GB (0.1 %)"
    assert element(page, "replay-state") == "Paused"
    assert "invalid payload 2" in page
    assert "requests for unknown channels" in page
    assert "unknown channel 3" in page


@pytest.mark.parametrize(
    ("snapshot", "tone", "headline"),
    [
        (HEALTHY, "good", "Healthy"),
        (OUTAGE, "warn", "Degraded: storing events"),
        (
            replace(OUTAGE, store=replace(OUTAGE.store, writable=False)),
            "bad",
            "Refusing events",
        ),
        (
            replace(OUTAGE, breaker=BreakerState.closed, outbound=HEALTHY.outbound),
            "warn",
            "Recovering",
        ),
        (replace(HEALTHY, breaker=BreakerState.half_open), "warn", "Degraded"),
    ],
)
def test_the_verdict_says_whether_events_are_published_stored_or_refused(
    snapshot: StatusSnapshot, tone: str, headline: str
) -> None:
    page = render(snapshot)

    verdict = re.search(r'<div class="verdict (\w+)" id="verdict"><span[^>]*><i></i>([^<]*)', page)
    assert verdict is not None
    assert verdict.group(1) == tone
    assert verdict.group(2).startswith(headline)


def test_every_dynamic_value_is_escaped() -> None:
    evil = "<script>alert(1)</script>\"'&"
    snapshot = replace(
        OUTAGE,
        version=evil,
        outbound=BrokerLink(evil, False, evil),
        inbound=BrokerLink(evil, True),
        store=replace(OUTAGE.store, path=evil),
        channels=(ChannelStatus(evil, 1, 1.0, rejected={evil: 1}),),
    )

    page = render(snapshot)

    assert "<script" not in page
    assert evil not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;&amp;" in page


def test_the_page_refreshes_itself_links_docs_and_metrics_and_loads_nothing_else() -> None:
    page = render(HEALTHY)

    assert '<meta http-equiv="refresh" content="5">' in page
    assert '<a href="/docs/asyncapi">' in page
    assert '<a href="/metrics">' in page
    assert not re.search(r"<(script|link|img|iframe)\b|url\(|@import|https?://", page)


def test_formatting_uses_units_people_read() -> None:
    assert [format_duration(s) for s in (0.2, 42, 192.4, 7380, 2 * 86400 + 3700)] == [
        "under 1 s",
        "42 s",
        "3 min 12 s",
        "2 h 3 min",
        "2 d 1 h",
    ]
    assert [format_bytes(b) for b in (999, 1234, 812_345, 10**9, 1024**3)] == [
        "999 B",
        "1.23 kB",
        "812 kB",
        "1.00 GB",
        "1.07 GB",
    ]
    assert [format_rate(r) for r in (1000.0, 12.5, 3.0)] == [
        "1,000 events/s",
        "12.5 events/s",
        "3 events/s",
    ]


def test_rate_meter_measures_over_about_its_window() -> None:
    now = [0.0]
    meter = RateMeter(window_s=10.0, clock=lambda: now[0])
    assert meter.observe(0) is None
    for second in range(1, 31):
        now[0] = float(second)
        rate = meter.observe(100 * second if second <= 20 else 2000)
    # Replay stopped at second 20: the last ten seconds saw nothing.
    assert rate == (0.0, 10.0)
    now[0] = 35.0
    assert meter.observe(2500) == (500 / 10.0, 10.0)


def test_each_inbound_queue_says_whether_this_process_consumes_it() -> None:
    snapshot = replace(
        HEALTHY,
        consumers=(
            ("breakwater.in.orders.cancelled", "standby"),
            ("breakwater.in.orders.created", "active"),
            ("breakwater.in.payments.captured", "shared"),
        ),
    )
    page = render(snapshot)
    consumers = re.search(r'<ul class="consumers" id="consumers">(.*?)</ul>', page, re.S)
    assert consumers, "no consumer list"
    rows = [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in consumers[1].split("</li>")]
    assert rows[:3] == [
        "breakwater.in.orders.cancelled Standing by another replica consumes it, or it has been empty",
        "breakwater.in.orders.created Active this process consumes it; other replicas stand by",
        "breakwater.in.payments.captured Shared every replica consumes it: no order across replicas",
    ]
    assert 'id="consumers"' not in render(HEALTHY)  # not consuming: nothing to say


def test_the_store_card_says_how_far_back_repeats_are_recognised() -> None:
    def keys(count: int | None, reach_s: float = 0.0) -> str:
        store = replace(HEALTHY.store, idempotency_keys=count, idempotency_reach_s=reach_s)
        return element(render(replace(HEALTHY, store=store)), "store-keys")

    assert keys(None) == "off"
    assert keys(0) == "0"
    assert keys(12_345, 3 * 3600 + 120) == "12,345 (repeats recognised back 3 h 2 min)"
