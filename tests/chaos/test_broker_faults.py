"""Broker faults under HTTP load: kill -9 and stop_app of a private node, a broker that accepts TCP
but never answers, and failover between two private nodes. Each ends with an ACCOUNTING line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator

import pytest

from tests.integration.gateway_process import GatewayProcess
from tests.integration.outage_helpers import Recorder
from tests.support.fixtures import PRIVATE_ROOT
from tests.support.rabbit_node import RabbitNode, free_port, proc_start_ticks

from .accounting import Accounting
from .consumer_states import consumer_state, inversions
from .helpers import (
    FAST_BREAKER,
    Load,
    SilentBroker,
    consumer_count,
    counter_total,
    delete_queue,
    deliveries,
    preload,
    readyz,
    wait,
    wait_delivered,
)

pytestmark = pytest.mark.integration

GatewayFactory = Callable[..., GatewayProcess]
DEADLINE_S = float(FAST_BREAKER["publish_timeout_s"])
CHANNEL = "orders.created"


def node_url(node: RabbitNode) -> str:
    return f"amqp://guest:guest@127.0.0.1:{node.amqp_port}/"


def _stored_ids(load: Load) -> set[str]:
    return {a.message_id for a in load.answers() if a.accepted and a.status == "stored"}


def _broker_outage(
    node: RabbitNode,
    start_gateway: GatewayFactory,
    run_id: str,
    scenario: str,
    fault: Callable[[], None],
    repair: Callable[[], None],
) -> Accounting:
    """HTTP load on a gateway whose outbound and inbound broker is `node`; `fault` mid-stream,
    `repair`, then every accepted event must reach a durable consumer queue on the node."""
    url = node_url(node)
    queue = f"chaos-{scenario}-{run_id}"
    recorder = Recorder(url, run_id, queue_name=queue).start()
    try:
        gateway = start_gateway(broker_url=url, inbound_broker_url=url, **FAST_BREAKER)
        load = Load(gateway.base_url, run_id).start()
        try:
            load.wait_sent(300)
            fault()
            load.wait_sent(load.sent() + 300)  # accepted while the broker is away
            repair()
            fault_end = time.monotonic()
            load.wait_sent(load.sent() + 300)
        finally:
            load.stop()
        accepted = load.accepted_ids()
        wait_delivered(accepted, recorder, timeout=60)
        accounting = Accounting.of(
            scenario,
            accepted,
            deliveries(recorder),
            fault_end=fault_end,
            stored=len(_stored_ids(load)),
            answered_non_202=sum(1 for a in load.answers() if not a.accepted),
        )
        accounting.report()
    finally:
        recorder.stop()  # deletes the durable queue
    assert accounting.extra["stored"] > 0, "the fault never diverted an event to the store"
    return accounting


def test_node_kill9_mid_stream_and_restart(
    clean_private_rabbit: RabbitNode, start_gateway: GatewayFactory, run_id: str
) -> None:
    node = clean_private_rabbit
    accounting = _broker_outage(
        node, start_gateway, run_id, "broker_kill9_restart", node.kill9, node.start
    )
    accounting.assert_nothing_lost()


def test_node_stop_app_start_app_mid_stream(
    clean_private_rabbit: RabbitNode, start_gateway: GatewayFactory, run_id: str
) -> None:
    node = clean_private_rabbit
    accounting = _broker_outage(
        node, start_gateway, run_id, "broker_stop_app", node.stop_app, node.start_app
    )
    accounting.assert_nothing_lost()


def test_silent_broker_first_then_failover(
    start_gateway: GatewayFactory, broker_url: str, run_id: str
) -> None:
    """The first URL accepts TCP and never says a word: the gateway answers within the deadline
    (stores), gives up on it, connects to the second URL (the real broker) and delivers."""
    with SilentBroker() as silent, Recorder(broker_url, run_id) as recorder:
        gateway = start_gateway(
            wait_connected=False,
            broker_url=f"{silent.url},{broker_url}",
            inbound_broker_url=broker_url,
            **FAST_BREAKER,
        )
        load = Load(gateway.base_url, run_id).start()
        try:
            wait(lambda: silent.accepted > 0, 10, "a connection to the silent broker")
            load.wait_sent(30)
            wait(lambda: readyz(gateway)["broker_connected"], 30, "failover to the second URL")
            fault_end = time.monotonic()
            load.wait_sent(load.sent() + 300)
        finally:
            load.stop()
        accepted = load.accepted_ids()
        wait_delivered(accepted, recorder, timeout=30)
        answers = load.answers()
        slowest = max(a.elapsed for a in answers)
        accounting = Accounting.of(
            "silent_broker_failover",
            accepted,
            deliveries(recorder),
            fault_end=fault_end,
            stored=len(_stored_ids(load)),
            slowest_answer_s=round(slowest, 3),
            silent_connections=silent.accepted,
        )
        accounting.report()
    assert all(a.accepted for a in answers), {a.status_code for a in answers}
    assert slowest <= DEADLINE_S + 0.5, f"an answer took {slowest:.2f}s"
    assert accounting.extra["stored"] > 0, "nothing was stored while the first URL hung"
    accounting.assert_nothing_lost()


# -- two private nodes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def second_node() -> Iterator[RabbitNode]:
    """A second private node (its own name, ports and base dir), always stopped and removed."""
    name = f"bwchaos_b_{os.getpid()}"
    base = PRIVATE_ROOT / name
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    # The owner file keeps other sessions' stale-node reaper away from it while we run.
    owner = {"pid": os.getpid(), "start_ticks": proc_start_ticks(os.getpid())}
    (base / "owner.json").write_text(json.dumps(owner))
    node = RabbitNode(name, free_port(), free_port(), base)
    try:
        node.start()
        yield node
    finally:
        try:
            node.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def test_failover_between_two_nodes(
    clean_private_rabbit: RabbitNode,
    second_node: RabbitNode,
    start_gateway: GatewayFactory,
    broker_url: str,
    run_id: str,
) -> None:
    node_a, node_b = clean_private_rabbit, second_node
    url_a, url_b = node_url(node_a), node_url(node_b)
    queue = f"chaos-failover-{run_id}"
    recorder_a = Recorder(url_a, run_id, queue_name=queue).start()
    recorder_b = Recorder(url_b, run_id, queue_name=queue).start()
    restarted_a = False
    try:
        gateway = start_gateway(
            broker_url=f"{url_a},{url_b}", inbound_broker_url=broker_url, **FAST_BREAKER
        )
        load = Load(gateway.base_url, run_id).start()
        try:
            load.wait_sent(300)
            wait(lambda: len(recorder_a.seen_ids()) > 100, 10, "events delivered on node A")
            assert not recorder_b.seen_ids(), "node B got events while node A was up"
            node_a.kill9()
            wait(lambda: readyz(gateway)["broker_connected"], 30, "failover to node B")
            fault_end = time.monotonic()
            load.wait_sent(load.sent() + 300)
        finally:
            load.stop()
        accepted = load.accepted_ids()
        if not wait_delivered(accepted, recorder_a, recorder_b, timeout=30):
            # Confirmed by A but not yet consumed when it died: still in A's queue on its disk.
            node_a.start()
            restarted_a = True
            wait_delivered(accepted, recorder_a, recorder_b, timeout=30)
        stored = _stored_ids(load)
        replayed_on_b = recorder_b.seen_ids(path="replay")
        accounting = Accounting.of(
            "failover_two_nodes",
            accepted,
            deliveries(recorder_a, recorder_b),
            fault_end=fault_end,
            on_a=len(recorder_a.seen_ids()),
            on_b=len(recorder_b.seen_ids()),
            stored=len(stored),
            replayed_on_b=len(replayed_on_b),
            restarted_a_to_read_its_queue=restarted_a,
        )
        accounting.report()
    finally:
        recorder_b.stop()
        with contextlib.suppress(Exception):
            recorder_a.stop()
        if not node_a.is_running():
            node_a.start()
        with contextlib.suppress(Exception):
            delete_queue(url_a, queue)
    assert len(recorder_b.seen_ids()) >= 300, "the gateway did not deliver to node B"
    assert stored, "nothing was stored while node A died"
    # Stored while A was dead (not delivered on A before it died): replayed to B.
    not_replayed = stored - recorder_a.seen_ids() - replayed_on_b
    assert not not_replayed, f"{len(not_replayed)} stored events not replayed on B"
    accounting.assert_nothing_lost()


def test_inbound_failover_between_two_nodes(
    clean_private_rabbit: RabbitNode,
    second_node: RabbitNode,
    start_gateway: GatewayFactory,
    broker_url: str,
    run_id: str,
) -> None:
    """AMQP ingress fails over at any time, not only at start: the first inbound node dies while
    the gateway consumes it, and the gateway goes on consuming the second node's queues."""
    node_a, node_b = clean_private_rabbit, second_node
    url_a, url_b = node_url(node_a), node_url(node_b)
    channel = "orders.created"
    inbound = f"breakwater.in.{channel}"
    on_a = [f"{run_id}-{channel}-a{n:04d}" for n in range(100)]
    on_b = [f"{run_id}-{channel}-b{n:04d}" for n in range(100)]
    with Recorder(broker_url, run_id) as recorder:
        gateway = start_gateway(inbound_broker_url=f"{url_a},{url_b}", **FAST_BREAKER)
        wait(lambda: consumer_count(url_a, inbound) > 0, 30, "AMQP ingress consuming on node A")
        assert consumer_count(url_b, inbound) == 0, "the gateway consumes node B while A is up"
        preload(url_a, channel, on_a)
        assert wait_delivered(on_a, recorder, timeout=30), "node A's messages not forwarded"

        node_a.kill9()
        wait(lambda: consumer_count(url_b, inbound) > 0, 30, "AMQP ingress consuming on node B")
        preload(url_b, channel, on_b)
        assert wait_delivered(on_b, recorder, timeout=30), "node B's messages not forwarded"
        assert "connected to inbound broker" in gateway.logs()
    delete_queue(url_b, inbound)


# -- two replicas on one single-active-consumer queue ------------------------------------------


def test_node_kill9_under_two_replicas_keeps_inbound_order(
    clean_private_rabbit: RabbitNode, start_gateway: GatewayFactory, run_id: str
) -> None:
    """Two gateways on one inbound queue of a private node, which is killed -9 mid-stream and
    restarted. Both reconnect; the broker makes one of them the queue's single active consumer
    again and redelivers what was unacked. Every event arrives; direct forwarding keeps its order.
    What the active gateway was storing when the node died (its acks died with the connection, so
    the broker redelivers those messages) it withdraws from its store instead of replaying it: a
    replayed copy would be a duplicate that could arrive ahead of the earlier events another
    replica forwards. Only a copy whose ack went into the socket before the node's death was
    noticed stays (the broker may have taken that ack: it may be the only copy); such copies are
    replayed, and only they can arrive early: counted, not hidden."""
    node = clean_private_rabbit
    url = node_url(node)
    # Enough that the kill, once 500 are through, still comes mid-stream when this test's own
    # process is starved for seconds on a busy machine (with 3,000 it once came after the last).
    ids = [f"{run_id}-node-{i:05d}" for i in range(8000)]
    recorder = Recorder(url, run_id, queue_name=f"chaos-sac-{run_id}").start()
    try:
        preload(url, CHANNEL, ids)
        replicas = [
            start_gateway(broker_url=url, inbound_broker_url=url, **FAST_BREAKER) for _ in "ab"
        ]
        wait(lambda: len(recorder.seen_ids()) >= 500, 30, "500 events forwarded")
        node.kill9()
        forwarded_at_kill = len(recorder.seen_ids())
        node.start()
        fault_end = time.monotonic()
        wait_delivered(ids, recorder, timeout=90)
        states = sorted(str(consumer_state(replica)) for replica in replicas)
        direct = [(d.message_id, d.received) for d in recorder.deliveries() if d.path == "direct"]
        accounting = Accounting.of(
            "broker_kill9_two_replicas",
            ids,
            deliveries(recorder),
            fault_end=fault_end,
            forwarded_at_kill=forwarded_at_kill,
            order_inversions=inversions(ids, deliveries(recorder)),
            order_inversions_direct=inversions(ids, direct),
            replayed=len(recorder.seen_ids("replay")),
            withdrawn=sum(
                counter_total(replica, "breakwater_inbound_withdrawn_total") for replica in replicas
            ),
            consumer_states=states,
        )
        accounting.report()
    finally:
        recorder.stop()
    assert forwarded_at_kill < len(ids), "the kill came after everything was forwarded"
    accounting.assert_nothing_lost()
    assert accounting.extra["order_inversions_direct"] == 0
    # Only replayed copies can arrive early: never more inversions than replayed events.
    assert accounting.extra["order_inversions"] <= accounting.extra["replayed"]
    assert states.count("active") <= 1, f"two replicas active on one queue: {states}"
