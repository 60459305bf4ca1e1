"""`/metrics` of the real gateway process, scraped and parsed the way Prometheus does, while events
flow, the breaker opens during a partition and the store drains once the broker is back."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.catalog.default import DEFAULT_CATALOG
from tests.support.fault_proxy import FaultProxy

from .gateway_process import GatewayProcess

pytestmark = pytest.mark.integration

ORDER = DEFAULT_CATALOG["orders.created"].example
PAYMENT = DEFAULT_CATALOG["payments.captured"].example


class Scrape:
    """One scrape of /metrics: every sample by name and labels, and every family's type."""

    def __init__(self, gateway: GatewayProcess) -> None:
        response = httpx.get(f"{gateway.base_url}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        self.types: dict[str, str] = {}
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(response.text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples[sample.name, frozenset(sample.labels.items())] = sample.value

    def __call__(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for a labelled sample not exported yet (a counter not yet hit)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def label_values(self, name: str, label: str) -> set[str]:
        return {dict(labels)[label] for sample, labels in self.samples if sample == name}


def accepted(scrape: Scrape, channel: str, status: str) -> float:
    return scrape("breakwater_events_accepted_total", channel=channel, status=status)


def wait_for(gateway: GatewayProcess, check: Callable[[Scrape], bool], timeout: float) -> Scrape:
    deadline = time.monotonic() + timeout
    while True:
        scrape = Scrape(gateway)
        if check(scrape):
            return scrape
        assert time.monotonic() < deadline, f"metrics never got there; last: {scrape.samples}"
        time.sleep(0.1)


def test_each_request_is_counted_by_channel_and_outcome_and_each_publish_is_timed(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gateway = start_gateway()
    before = Scrape(gateway)
    assert before.types["breakwater_events_accepted"] == "counter"
    assert before.types["breakwater_events_rejected"] == "counter"
    assert before.types["breakwater_publish_seconds"] == "histogram"
    assert before("breakwater_breaker_state") == 0

    with httpx.Client(base_url=gateway.base_url) as client:
        for _ in range(3):
            assert client.post("/v1/events/orders.created", json=ORDER).status_code == 202
        for _ in range(2):
            assert client.post("/v1/events/payments.captured", json=PAYMENT).status_code == 202
        bad_total = {**ORDER, "total": "99.99"}
        assert client.post("/v1/events/orders.created", json=bad_total).status_code == 422
        assert client.post("/v1/events/orders.shipped", json=ORDER).status_code == 404
        assert client.post("/v1/events/no-such-thing", json=ORDER).status_code == 404
    after = Scrape(gateway)

    def grew(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    accepted_total = "breakwater_events_accepted_total"
    assert grew(accepted_total, channel="orders.created", status="published") == 3
    assert grew(accepted_total, channel="payments.captured", status="published") == 2
    assert grew(accepted_total, channel="orders.created", status="stored") == 0
    assert (
        grew("breakwater_events_rejected_total", channel="orders.created", reason="invalid_payload")
        == 1
    )
    # Label values never come from the client: both unknown channels are counted as "unknown".
    assert (
        grew("breakwater_events_rejected_total", channel="unknown", reason="unknown_channel") == 2
    )
    assert after.label_values("breakwater_events_rejected_total", "channel") == {
        "orders.created",
        "unknown",
    }
    assert grew("breakwater_publish_seconds_count", path="direct") == 5
    assert grew("breakwater_publish_seconds_bucket", path="direct", le="+Inf") == 5
    assert 0 < grew("breakwater_publish_seconds_sum", path="direct") < 5 * 2.0
    assert after("breakwater_breaker_state") == 0
    assert after("breakwater_store_depth") == 0
    assert after("breakwater_events_replayed_total", channel="orders.created") == 0


@pytest.mark.timeout(90)
def test_breaker_store_and_replay_metrics_follow_a_partition_and_its_recovery(
    start_gateway: Callable[..., GatewayProcess], fault_proxy: FaultProxy, vhost: str
) -> None:
    gateway = start_gateway(
        broker_url=f"amqp://guest:guest@127.0.0.1:{fault_proxy.port}/{vhost}",
        publish_timeout_s="0.5",
        breaker_fail_max="2",
        breaker_reset_timeout_s="1",
    )
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:

        def post(expected: str) -> None:
            response = client.post("/v1/events/orders.created", json=ORDER)
            assert response.status_code == 202, response.text
            assert response.json()["status"] == expected

        post("published")
        start = Scrape(gateway)
        assert start("breakwater_breaker_state") == 0

        fault_proxy.partition()
        for _ in range(6):
            post("stored")
        during = wait_for(gateway, lambda s: s("breakwater_breaker_state") == 2, timeout=15)
        assert accepted(during, "orders.created", "stored") == 6
        assert during("breakwater_store_depth") == 6
        assert during("breakwater_store_bytes") > 0
        assert during("breakwater_events_replayed_total", channel="orders.created") == 0

        fault_proxy.heal()
        drained = wait_for(
            gateway,
            lambda s: s("breakwater_store_depth") == 0 and s("breakwater_breaker_state") == 0,
            timeout=30,
        )
    assert drained("breakwater_store_bytes") == 0
    assert drained("breakwater_events_replayed_total", channel="orders.created") == 6
    assert drained("breakwater_publish_seconds_count", path="replay") == 6
    assert accepted(drained, "orders.created", "published") == 1
    assert accepted(drained, "orders.created", "stored") == 6
