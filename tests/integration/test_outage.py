"""Issue 3: the breaker and the fallback store on a real broker. No hang, no loss, per-channel
order, and a rate-limited replay, through partitions and resets of the fault proxy, kill -9 of
the gateway and a full store.

The outbound link runs through a `FaultProxy` in front of the shared broker, in the session's
private vhost; the consumer (a `Recorder`) reads `breakwater.events` directly from the broker.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.rabbit_node import RabbitNode

from .gateway_process import GatewayProcess, free_port
from .outage_helpers import (
    Answer,
    ReadyWatcher,
    Recorder,
    Sender,
    assert_in_acceptance_order,
    fresh_queue_total,
    max_in_window,
    post_event,
    publish_inbound,
    purge_inbound_queues,
    readyz,
    send_concurrently,
    send_sequentially,
    wait_breaker,
    wait_until,
)

pytestmark = pytest.mark.integration

DEADLINE_S = 1.0
# "Never a hang": the publish deadline plus the store's write time (and HTTP on a busy machine).
ANSWER_BOUND_S = DEADLINE_S + 0.5
FAST_BREAKER = {
    "publish_timeout_s": str(DEADLINE_S),
    "breaker_fail_max": "2",
    "breaker_reset_timeout_s": "1",
}
CHANNEL_NAMES = ("orders.created", "orders.cancelled", "payments.captured")

GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def proxy_url(fault_proxy: FaultProxy, vhost: str) -> str:
    """The gateway's outbound URL: the shared broker's private vhost, through the fault proxy."""
    return f"amqp://guest:guest@127.0.0.1:{fault_proxy.port}/{vhost}"


@pytest.fixture
def recorder(broker_url: str, run_id: str) -> Iterator[Recorder]:
    with Recorder(broker_url, run_id) as consumer:
        yield consumer


@pytest.fixture
def inbound_queues(broker_url: str) -> Iterator[None]:
    """The inbound queues start empty (and a failed test's leftovers are gone afterwards)."""
    purge_inbound_queues(broker_url)
    yield
    purge_inbound_queues(broker_url)


def assert_answered_in_time(answers: list[Answer]) -> None:
    slow = [(a.message_id, round(a.elapsed, 3)) for a in answers if a.elapsed >= ANSWER_BOUND_S]
    assert not slow, f"answers slower than {ANSWER_BOUND_S}s: {slow[:5]}"
    unanswered = [a.message_id for a in answers if a.status_code == 0]
    assert not unanswered, f"requests without an answer: {unanswered[:5]}"


def accepted_by_channel(answers: list[Answer]) -> dict[str, list[str]]:
    accepted: dict[str, list[str]] = {}
    for answer in answers:
        if answer.accepted:
            accepted.setdefault(answer.channel, []).append(answer.message_id)
    return accepted


def wait_delivered(recorder: Recorder, answers: list[Answer], timeout: float = 30) -> None:
    """Every accepted event arrived, and every one answered `stored` arrived by replay."""
    recorder.wait_for([a.message_id for a in answers if a.accepted], timeout)
    recorder.wait_for([a.message_id for a in answers if a.status == "stored"], timeout, "replay")


def assert_replayed_with_original_envelope(
    answers: list[Answer], recorder: Recorder, statuses: tuple[str, ...] = ("stored",)
) -> None:
    """Every event answered with one of `statuses` arrived at least once by replay, carrying
    the message_id, correlation_id and timestamp it was accepted with."""
    replayed = {d.message_id: d for d in recorder.deliveries() if d.path == "replay"}
    for answer in answers:
        if answer.status not in statuses:
            continue
        delivery = replayed.get(answer.message_id)
        assert delivery is not None, f"{answer.message_id} was {answer.status} but never replayed"
        assert delivery.correlation_id == answer.correlation_id
        assert delivery.timestamp is not None
        # AMQP timestamps have one-second resolution: the stamp taken while the request was
        # handled, not at replay time (which is seconds later).
        stamp = delivery.timestamp.replace(tzinfo=UTC).timestamp()
        assert int(answer.wall_start) <= stamp <= int(answer.wall_end), (
            f"{answer.message_id}: timestamp {datetime.fromtimestamp(stamp, UTC)} is not its"
            f" acceptance time ({datetime.fromtimestamp(answer.wall_start, UTC)})"
        )


# -- 1, 2: a partition ---------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_every_request_during_a_partition_is_answered_within_the_publish_deadline(
    start_gateway: GatewayFactory, fault_proxy: FaultProxy, proxy_url: str, run_id: str
) -> None:
    gateway = start_gateway(broker_url=proxy_url, **FAST_BREAKER)
    assert send_sequentially(gateway.base_url, "orders.created", [f"{run_id}-warm"])[0].accepted

    fault_proxy.partition()
    try:
        # Several channels at once, and the first requests meet a closed breaker: they try the
        # broker and must give up at the deadline, not wait for the partition to end. The burst
        # of one channel's concurrent requests all fail at about the same time and are stored
        # one after the other, each waiting for the one accepted before it.
        senders = [
            Sender(gateway.base_url, name, run_id, pause_s=0.02).start() for name in CHANNEL_NAMES
        ]
        burst = send_concurrently(gateway.base_url, "orders.created", f"{run_id}-burst", 16)
        time.sleep(3.0)  # long enough for open -> half-open -> failed trial -> open again
        answers = [answer for sender in senders for answer in sender.stop()] + burst
        during = readyz(gateway.base_url)
    finally:
        fault_proxy.heal()

    assert_answered_in_time(answers)
    assert all(a.accepted for a in answers), {a.status_code for a in answers}
    # The bound was really exercised: some requests waited for the broker up to the deadline.
    assert max(a.elapsed for a in answers) >= DEADLINE_S * 0.9
    assert {a.status for a in answers} == {"stored"}
    assert during["breaker"] in ("open", "half_open")
    assert during["store_depth"] == len(answers)


@pytest.mark.timeout(90)
def test_events_accepted_around_a_partition_are_all_delivered_in_acceptance_order_per_channel(
    start_gateway: GatewayFactory,
    fault_proxy: FaultProxy,
    proxy_url: str,
    run_id: str,
    recorder: Recorder,
) -> None:
    gateway = start_gateway(broker_url=proxy_url, **FAST_BREAKER)
    watcher = ReadyWatcher(gateway.base_url).start()
    senders = [
        Sender(gateway.base_url, name, run_id, pause_s=0.01).start() for name in CHANNEL_NAMES
    ]
    time.sleep(1.0)  # published before the outage
    fault_proxy.partition()
    time.sleep(3.0)  # stored during it
    fault_proxy.heal()
    time.sleep(2.0)  # after it: queued behind the backlog, then published again
    answers = [answer for sender in senders for answer in sender.stop()]

    accepted = accepted_by_channel(answers)
    wait_delivered(recorder, answers)
    wait_breaker(gateway.base_url, "closed", timeout=15)
    recorder.wait_quiet()
    states = watcher.stop()

    assert_answered_in_time(answers)
    assert all(a.accepted for a in answers)
    assert answers[0].status == "published"  # sent before the outage
    assert "stored" in {a.status for a in answers}, "no outage was exercised"
    assert_in_acceptance_order(recorder.deliveries(), accepted)
    assert_replayed_with_original_envelope(answers, recorder)
    direct = {d.message_id for d in recorder.deliveries() if d.path == "direct"}
    assert {a.message_id for a in answers if a.status == "published"} <= direct
    assert "open" in states, states
    assert states[-1] == "closed", states
    assert readyz(gateway.base_url)["store_depth"] == 0
    assert "Traceback" not in gateway.logs()


# -- 3: the replay rate --------------------------------------------------------------------------

# Receive times are measured at the consumer, whose scheduling on a busy machine bunches
# arrivals by 10-30 ms now and then. The only allowance is the bucket's burst, so the rate is
# chosen for that burst to cover such jitter: TokenBucket.for_rate(10) has burst
# min(10 / 10, max(1, 10 / 100)) = 1 event = 100 ms at 10/s. (At 200/s the burst of 2 events
# is 10 ms: 204 arrivals in one second were seen there with a correct gateway.)
REPLAY_RATE = 10
REPLAY_BURST = 1
REPLAY_BATCH = 4  # several batches, so the rate must hold across batch boundaries too
BACKLOG_PER_CHANNEL = 20


@pytest.mark.timeout(90)
def test_a_backlog_is_replayed_in_order_and_never_faster_than_the_replay_rate(
    start_gateway: GatewayFactory, broker_url: str, run_id: str, recorder: Recorder, tmp_path: Path
) -> None:
    # The backlog is built by a gateway whose broker is nowhere; a second gateway on the same
    # store replays it straight to the broker, so no proxy thread sits between the replay and
    # the consumer whose receive times are measured.
    store_path = str(tmp_path / "backlog.db")
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    builder = start_gateway(wait_connected=False, broker_url=nowhere, store_path=store_path)
    senders = [
        Sender(builder.base_url, name, run_id, count=BACKLOG_PER_CHANNEL).start()
        for name in ("orders.created", "orders.cancelled")
    ]
    answers = [answer for sender in senders for answer in sender.join()]
    assert {a.status for a in answers} == {"stored"}
    assert readyz(builder.base_url)["store_depth"] == 2 * BACKLOG_PER_CHANNEL
    builder.stop()

    start_gateway(
        broker_url=broker_url,
        store_path=store_path,
        replay_rate=str(REPLAY_RATE),
        replay_batch=str(REPLAY_BATCH),
        **FAST_BREAKER,
    )
    wait_delivered(recorder, answers, timeout=40)
    recorder.wait_quiet()

    deliveries = recorder.deliveries()
    assert {d.path for d in deliveries} == {"replay"}
    assert_in_acceptance_order(deliveries, accepted_by_channel(answers))
    busiest = max_in_window([d.received for d in deliveries], window_s=1.0)
    # Measured on the consumer's receive times, with the bucket's burst as the only allowance.
    assert busiest <= REPLAY_RATE + REPLAY_BURST, f"{busiest} replayed events in one second"
    # ... and the replay did run at about the rate, so the bound was really tested.
    assert busiest >= REPLAY_RATE * 0.5, f"replay far below its rate: {busiest}/s"
    assert_replayed_with_original_envelope(answers, recorder)


# -- 4: kill -9 with a backlog -------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("inbound_queues")
def test_kill_9_during_a_replay_loses_no_accepted_event_and_a_restart_delivers_them_in_order(
    start_gateway: GatewayFactory,
    fault_proxy: FaultProxy,
    proxy_url: str,
    broker_url: str,
    run_id: str,
    recorder: Recorder,
    tmp_path: Path,
) -> None:
    store_path = tmp_path / "shared-store.db"
    fault_proxy.reject_new(True)
    first = start_gateway(
        wait_connected=False,
        broker_url=proxy_url,
        inbound_broker_url=broker_url,  # AMQP ingress works; only the outbound broker is away
        store_path=str(store_path),
        replay_rate="100",  # slow enough to be killed half way through the backlog
        **FAST_BREAKER,
    )
    http_backlog = send_sequentially(
        first.base_url, "orders.created", [f"{run_id}-orders.created-{i:05d}" for i in range(200)]
    )
    amqp_ids = [f"{run_id}-amqp-{i:05d}" for i in range(100)]
    publish_inbound(broker_url, "orders.cancelled", amqp_ids)
    assert {a.status for a in http_backlog} == {"stored"}
    wait_until(lambda: readyz(first.base_url)["store_depth"] == 300, timeout=20, what="300 stored")

    fault_proxy.reject_new(False)
    live = Sender(first.base_url, "payments.captured", run_id, pause_s=0.01).start()
    backlog_ids = {a.message_id for a in http_backlog}
    wait_until(
        lambda: len(recorder.seen_ids() & backlog_ids) >= 80, timeout=20, what="replay under way"
    )
    assert first.proc is not None
    first.proc.kill()
    first.wait(10)
    live_answers = live.stop()
    assert len(recorder.seen_ids() & backlog_ids) < 200, "killed too late"

    second = start_gateway(broker_url=broker_url, store_path=str(store_path), **FAST_BREAKER)
    answers = http_backlog + live_answers
    accepted = accepted_by_channel(answers)
    assert len(accepted.get("payments.captured", [])) > 0
    wait_delivered(recorder, answers, timeout=40)
    recorder.wait_for(amqp_ids, timeout=10)
    recorder.wait_quiet()

    deliveries = recorder.deliveries()
    assert_in_acceptance_order(deliveries, accepted)  # (AMQP order: test_amqp_order.py)
    assert_replayed_with_original_envelope(http_backlog, recorder)
    by_id = {d.message_id: d for d in deliveries}
    assert all(by_id[m].correlation_id == f"corr-{m}" for m in amqp_ids)
    wait_until(lambda: readyz(second.base_url)["store_depth"] == 0, timeout=10, what="drained")
    assert "Traceback" not in second.logs()


# -- 5: a full store -----------------------------------------------------------------------------

# Each orders.cancelled event of these tests takes about 250 logical bytes in the store.
SMALL_STORE_BYTES = 5000


def fill_store_until_refused(base_url: str, run_id: str, limit: int = 200) -> list[Answer]:
    """Post orders.cancelled events until the store refuses one (and then two more)."""
    answers: list[Answer] = []
    refused = 0
    with httpx.Client(base_url=base_url) as client:
        for i in range(limit):
            answers.append(post_event(client, "orders.cancelled", f"{run_id}-fill-{i:05d}"))
            refused += answers[-1].status_code == 503
            if refused == 3:
                return answers
    raise AssertionError(f"the store never refused an event: {answers[-1]}")


@pytest.mark.timeout(90)
def test_a_full_store_answers_503_with_retry_after_and_every_202_is_delivered_after_healing(
    start_gateway: GatewayFactory,
    fault_proxy: FaultProxy,
    proxy_url: str,
    run_id: str,
    recorder: Recorder,
) -> None:
    gateway = start_gateway(
        broker_url=proxy_url, store_max_bytes=str(SMALL_STORE_BYTES), **FAST_BREAKER
    )
    fault_proxy.partition()
    try:
        answers = fill_store_until_refused(gateway.base_url, run_id)
        full = readyz(gateway.base_url)
    finally:
        fault_proxy.heal()

    assert_answered_in_time(answers)
    codes = [a.status_code for a in answers]
    first_refusal = codes.index(503)
    assert first_refusal >= 10, codes  # the store did take events until it was full
    assert set(codes[:first_refusal]) == {202}
    assert set(codes[first_refusal:]) == {503}  # full stays full while the broker is away
    assert all(a.retry_after and int(a.retry_after) > 0 for a in answers[first_refusal:])
    assert full["store_bytes"] <= SMALL_STORE_BYTES
    assert full["store_depth"] == first_refusal

    accepted = accepted_by_channel(answers)
    wait_delivered(recorder, answers)
    assert_in_acceptance_order(recorder.deliveries(), accepted)
    assert_replayed_with_original_envelope(answers, recorder)
    wait_until(lambda: readyz(gateway.base_url)["store_depth"] == 0, timeout=10, what="drained")
    # Drained, the store takes events again (or the broker does).
    [after] = send_sequentially(gateway.base_url, "orders.cancelled", [f"{run_id}-after"])
    assert after.status_code == 202


@pytest.mark.timeout(60)
def test_readyz_says_not_ready_while_a_partition_and_a_full_store_refuse_every_event(
    start_gateway: GatewayFactory, fault_proxy: FaultProxy, proxy_url: str, run_id: str
) -> None:
    """CONTRACT: /readyz is 200 "when events can be accepted (broker connected or store
    writable)". In a partition the connection still looks up (nothing tells the client yet) but
    the breaker is open and every publish times out: with a full store, nothing is accepted."""
    gateway = start_gateway(
        broker_url=proxy_url, store_max_bytes=str(SMALL_STORE_BYTES), **FAST_BREAKER
    )
    fault_proxy.partition()
    try:
        answers = fill_store_until_refused(gateway.base_url, run_id)
        wait_breaker(gateway.base_url, "open", timeout=10)  # the replay's probes time out
        ready = httpx.get(f"{gateway.base_url}/readyz", timeout=5)
        [refused] = send_sequentially(gateway.base_url, "orders.cancelled", [f"{run_id}-x"])
    finally:
        fault_proxy.heal()

    assert answers[-1].status_code == 503
    assert refused.status_code == 503
    assert ready.status_code == 503, ready.json()


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("inbound_queues")
def test_amqp_ingress_with_a_full_store_leaves_the_message_in_its_queue_and_forwards_it_later(
    start_gateway: GatewayFactory,
    fault_proxy: FaultProxy,
    proxy_url: str,
    broker_url: str,
    vhost: str,
    run_id: str,
    recorder: Recorder,
) -> None:
    gateway = start_gateway(
        broker_url=proxy_url,
        inbound_broker_url=broker_url,
        store_max_bytes=str(SMALL_STORE_BYTES),
        **FAST_BREAKER,
    )
    fault_proxy.partition()
    try:
        http_answers = fill_store_until_refused(gateway.base_url, run_id)
        depth = readyz(gateway.base_url)["store_depth"]
        inbound_ids = [f"{run_id}-inbound-{i}" for i in range(3)]
        published_at = time.monotonic()
        publish_inbound(broker_url, "payments.captured", inbound_ids)
        # By then the gateway has taken them, failed to store them and requeued them (after a
        # 1 s back-off) several times.
        in_queue = fresh_queue_total(vhost, "breakwater.in.payments.captured", published_at + 1)
        after = readyz(gateway.base_url)
        delivered_meanwhile = recorder.seen_ids() & set(inbound_ids)
    finally:
        fault_proxy.heal()

    assert in_queue == len(inbound_ids)  # not acked: still in the inbound queue
    assert after["store_depth"] == depth  # and not in the store either: it is full
    assert not delivered_meanwhile
    accepted = [a.message_id for a in http_answers if a.accepted]
    recorder.wait_for([*accepted, *inbound_ids], timeout=30)
    healed_at = time.monotonic()
    wait_until(
        lambda: fresh_queue_total(vhost, "breakwater.in.payments.captured", healed_at) == 0,
        timeout=20,
        what="inbound queue empty",
    )
    assert "Traceback" not in gateway.logs()


# -- 6: AMQP ingress while the outbound broker is away -------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("inbound_queues")
def test_amqp_ingress_during_a_partition_stores_and_acks_messages_and_delivers_them_after_it(
    start_gateway: GatewayFactory,
    fault_proxy: FaultProxy,
    proxy_url: str,
    broker_url: str,
    vhost: str,
    run_id: str,
    recorder: Recorder,
) -> None:
    gateway = start_gateway(broker_url=proxy_url, inbound_broker_url=broker_url, **FAST_BREAKER)
    ids = [f"{run_id}-inbound-{i:04d}" for i in range(60)]
    fault_proxy.partition()
    try:
        publish_inbound(broker_url, "orders.created", ids)
        wait_until(
            lambda: readyz(gateway.base_url)["store_depth"] == len(ids), timeout=20, what="stored"
        )
        # Consumed and acked while the outbound broker is still away: they are in the store.
        in_queue = fresh_queue_total(vhost, "breakwater.in.orders.created", time.monotonic())
        delivered_during = recorder.seen_ids() & set(ids)
    finally:
        fault_proxy.heal()

    assert in_queue == 0
    assert not delivered_during
    deliveries = recorder.wait_for(ids, timeout=30, path="replay")
    replayed = {d.message_id: d for d in deliveries if d.path == "replay"}
    assert all(replayed[m].correlation_id == f"corr-{m}" for m in ids)
    wait_until(lambda: readyz(gateway.base_url)["store_depth"] == 0, timeout=10, what="drained")


# -- 8: connection resets ------------------------------------------------------------------------


def reset_under_traffic(proxy: FaultProxy) -> None:
    """Abort the connections while publishes are surely in flight: hold the bytes for a moment
    (publishes sent, confirms not back), then reset, then let new connections through."""
    proxy.partition()
    time.sleep(0.3)
    proxy.reset()
    proxy.heal()


@pytest.mark.timeout(90)
def test_connection_resets_mid_stream_and_mid_replay_lose_no_accepted_event(
    start_gateway: GatewayFactory,
    fault_proxy: FaultProxy,
    proxy_url: str,
    run_id: str,
    recorder: Recorder,
) -> None:
    # Replay at 50/s while the senders add about 75/s: once a backlog exists it lasts until the
    # senders stop, so the second reset lands in the middle of a replay.
    gateway = start_gateway(broker_url=proxy_url, replay_rate="50", **FAST_BREAKER)
    senders = [
        Sender(gateway.base_url, name, run_id, pause_s=0.03).start() for name in CHANNEL_NAMES
    ]
    time.sleep(1.0)
    reset_under_traffic(fault_proxy)  # in-flight direct publishes die with the connection
    wait_until(
        lambda: (
            len(recorder.seen_ids("replay")) >= 20 and readyz(gateway.base_url)["store_depth"] > 0
        ),
        timeout=20,
        what="a replay under way",
    )
    reset_under_traffic(fault_proxy)  # ... and now in-flight replays die too
    time.sleep(1.0)
    answers = [answer for sender in senders for answer in sender.stop()]

    wait_delivered(recorder, answers, timeout=60)
    recorder.wait_quiet()
    assert_answered_in_time(answers)
    assert all(a.accepted for a in answers)
    assert {"published", "stored"} <= {a.status for a in answers}
    assert_in_acceptance_order(recorder.deliveries(), accepted_by_channel(answers))
    assert_replayed_with_original_envelope(answers, recorder)


# -- 7: the broker closes every connection, or blocks publishers (private node) ------------------


@pytest.fixture
def private_recorder(clean_private_rabbit: RabbitNode, run_id: str) -> Iterator[Recorder]:
    """A consumer on the private node whose queue outlives a forced close (deleted afterwards)."""
    with Recorder(
        clean_private_rabbit.url, run_id, queue_name=f"breakwater-outage-test-{run_id}"
    ) as consumer:
        yield consumer


def run_through_a_broker_fault(
    gateway: GatewayProcess,
    recorder: Recorder,
    run_id: str,
    inject: Callable[[], None],
    undo: Callable[[], None] | None = None,
    hold_s: float = 0.0,
    breaker_opens: bool = True,
) -> tuple[list[Answer], ReadyWatcher]:
    """Send on every channel while `inject` breaks the broker (and `undo` mends it after
    `hold_s`); once the breaker has closed again and everything accepted was delivered, return
    the answers and what /readyz showed meanwhile."""
    watcher = ReadyWatcher(gateway.base_url).start()
    senders = [
        Sender(gateway.base_url, name, run_id, pause_s=0.02).start() for name in CHANNEL_NAMES
    ]
    try:
        time.sleep(1.0)
        inject()
        time.sleep(hold_s)
        if undo is not None:
            undo()
        if breaker_opens:
            wait_until(lambda: "open" in watcher.states, timeout=10, what="breaker open")
        else:
            time.sleep(2.0)  # the link reconnects at once: give the fault time to play out
        wait_until(lambda: watcher.states[-1] == "closed", timeout=30, what="breaker closed again")
        time.sleep(0.5)  # a little traffic after the recovery too
    finally:
        answers = [answer for sender in senders for answer in sender.stop()]
        watcher.stop()
    wait_delivered(recorder, answers, timeout=40)
    recorder.wait_quiet()
    return answers, watcher


def assert_survived_a_broker_fault(
    answers: list[Answer], watcher: ReadyWatcher, recorder: Recorder, breaker_opens: bool = True
) -> None:
    assert_answered_in_time(answers)
    assert all(a.accepted for a in answers)
    states = watcher.states
    assert states[0] == "closed", states
    assert states[-1] == "closed", states
    if breaker_opens:
        assert {"published", "stored"} <= {a.status for a in answers}
        assert "open" in states, states
        assert max(body["store_depth"] for body in watcher.bodies) > 0
    # No check that /readyz ever said broker_connected=false: the link reconnects within
    # milliseconds after a forced close, faster than the watcher polls.
    assert_in_acceptance_order(recorder.deliveries(), accepted_by_channel(answers))
    assert_replayed_with_original_envelope(answers, recorder)


@pytest.mark.timeout(120)
def test_close_all_connections_loses_nothing_accepted_and_the_link_comes_back(
    start_gateway: GatewayFactory,
    clean_private_rabbit: RabbitNode,
    private_recorder: Recorder,
    run_id: str,
) -> None:
    gateway = start_gateway(broker_url=clean_private_rabbit.url, **FAST_BREAKER)

    answers, watcher = run_through_a_broker_fault(
        gateway,
        private_recorder,
        run_id,
        inject=lambda: clean_private_rabbit.close_all_connections("breakwater outage test"),
        # The link reconnects within milliseconds: only the publishes in flight at the close
        # fail, which may or may not reach the breaker's threshold (both are right).
        breaker_opens=False,
    )

    assert_survived_a_broker_fault(answers, watcher, private_recorder, breaker_opens=False)
    assert "CONNECTION_FORCED" in gateway.logs()


@pytest.mark.timeout(120)
def test_a_memory_alarm_opens_the_breaker_stores_while_blocked_and_loses_nothing_accepted(
    start_gateway: GatewayFactory,
    clean_private_rabbit: RabbitNode,
    private_recorder: Recorder,
    run_id: str,
) -> None:
    gateway = start_gateway(broker_url=clean_private_rabbit.url, **FAST_BREAKER)

    answers, watcher = run_through_a_broker_fault(
        gateway,
        private_recorder,
        run_id,
        inject=lambda: clean_private_rabbit.set_memory_alarm(True),
        undo=lambda: clean_private_rabbit.set_memory_alarm(False),
        hold_s=3.0,
    )

    # /readyz said "not connected" while blocked: the link saw connection.blocked.
    assert_survived_a_broker_fault(answers, watcher, private_recorder)
