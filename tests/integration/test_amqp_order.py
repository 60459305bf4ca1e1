"""Per-channel order through AMQP ingress: the messages of one inbound queue reach
`breakwater.events` in their queue order, when the broker is healthy and across an outage.

The acceptance order of AMQP ingress can only be the order of the inbound queue: that is the
order the producer published in and the order the broker delivers in.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.support.fault_proxy import FaultProxy

from .gateway_process import GatewayProcess
from .outage_helpers import (
    Recorder,
    assert_in_acceptance_order,
    publish_inbound,
    purge_inbound_queues,
    readyz,
    wait_until,
)

pytestmark = pytest.mark.integration

GatewayFactory = Callable[..., GatewayProcess]
FAST_BREAKER = {
    "publish_timeout_s": "1",
    "breaker_fail_max": "2",
    "breaker_reset_timeout_s": "1",
}


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(autouse=True)
def inbound_queues(broker_url: str) -> Iterator[None]:
    """The inbound queues start empty (and a failed test's leftovers are gone afterwards)."""
    purge_inbound_queues(broker_url)
    yield
    purge_inbound_queues(broker_url)


@pytest.fixture
def recorder(broker_url: str, run_id: str) -> Iterator[Recorder]:
    with Recorder(broker_url, run_id) as consumer:
        yield consumer


@pytest.mark.timeout(60)
def test_one_inbound_queue_is_forwarded_in_queue_order_when_the_broker_is_healthy(
    start_gateway: GatewayFactory, broker_url: str, run_id: str, recorder: Recorder
) -> None:
    start_gateway()
    ids = [f"{run_id}-{i:04d}" for i in range(200)]

    publish_inbound(broker_url, "orders.cancelled", ids)

    recorder.wait_for(ids, timeout=30)
    assert_in_acceptance_order(recorder.deliveries(), {"orders.cancelled": ids})


@pytest.mark.timeout(90)
def test_one_inbound_queue_is_forwarded_in_queue_order_across_a_partition(
    start_gateway: GatewayFactory,
    fault_proxy: FaultProxy,
    broker_url: str,
    vhost: str,
    run_id: str,
    recorder: Recorder,
) -> None:
    proxy_url = f"amqp://guest:guest@127.0.0.1:{fault_proxy.port}/{vhost}"
    gateway = start_gateway(broker_url=proxy_url, inbound_broker_url=broker_url, **FAST_BREAKER)
    ids = [f"{run_id}-{i:04d}" for i in range(200)]
    fault_proxy.partition()
    try:
        publish_inbound(broker_url, "orders.cancelled", ids)
        wait_until(
            lambda: readyz(gateway.base_url)["store_depth"] == len(ids),
            timeout=30,
            what="all stored",
        )
    finally:
        fault_proxy.heal()

    recorder.wait_for(ids, timeout=30, path="replay")
    assert_in_acceptance_order(recorder.deliveries(), {"orders.cancelled": ids})
