"""Gateway faults: kill -9 with AMQP ingress in flight and mid-replay, SIGTERM under HTTP load with a
backlog replaying, and two replicas on one single-active-consumer queue with the active one killed. Each ends with an
ACCOUNTING line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.store.fallback import StoreReader
from tests.integration.gateway_process import GatewayProcess
from tests.integration.outage_helpers import Recorder
from tests.support.fault_proxy import FaultProxy

from .accounting import Accounting
from .consumer_states import consumer_state, inversions
from .helpers import (
    FAST_BREAKER,
    Load,
    accepted_total,
    deliveries,
    preload,
    ready_count,
    readyz,
    wait,
    wait_delivered,
)

pytestmark = pytest.mark.integration

GatewayFactory = Callable[..., GatewayProcess]
CHANNEL = "orders.created"
INBOUND_QUEUE = f"breakwater.in.{CHANNEL}"
BREAKWATER = Path(sys.executable).with_name("breakwater")


def kill9(gateway: GatewayProcess) -> None:
    assert gateway.proc is not None
    gateway.proc.kill()
    assert gateway.wait(10) == -signal.SIGKILL


def stop_and_count_inbound(gateway: GatewayProcess, broker_url: str) -> int:
    """SIGTERM the gateway (its unacked messages return to the queue), then count what is left."""
    gateway.signal(signal.SIGTERM)
    assert gateway.wait(40) == 0, gateway.logs()[-3000:]
    return ready_count(broker_url, INBOUND_QUEUE)


@pytest.mark.usefixtures("inbound_queues")
def test_gateway_kill9_with_amqp_ingress_in_flight(
    start_gateway: GatewayFactory, broker_url: str, run_id: str, tmp_path: Path
) -> None:
    ids = [f"{run_id}-in-{i:05d}" for i in range(3000)]
    store = str(tmp_path / "ingress.db")
    with Recorder(broker_url, run_id) as recorder:
        preload(broker_url, CHANNEL, ids)
        first = start_gateway(store_path=store)
        wait(lambda: len(recorder.seen_ids()) >= 500, 30, "500 events forwarded")
        kill9(first)
        forwarded_before_kill = len(recorder.seen_ids())
        fault_end = time.monotonic()
        second = start_gateway(store_path=store)
        wait_delivered(ids, recorder, timeout=60)
        accounting = Accounting.of(
            "gateway_kill9_amqp_ingress",
            ids,
            deliveries(recorder),
            fault_end=fault_end,
            forwarded_before_kill=forwarded_before_kill,
        )
        left = stop_and_count_inbound(second, broker_url)
        accounting.extra["inbound_left"] = left
        accounting.report()
    assert forwarded_before_kill < len(ids), "the kill came after everything was forwarded"
    accounting.assert_nothing_lost()
    assert left == 0, f"{left} messages left in {INBOUND_QUEUE}"


def _backlog(gateway: GatewayProcess, proxy: FaultProxy, prefix: str, count: int) -> list[str]:
    """Partition the outbound link and send `count` events: all accepted into the store."""
    proxy.partition()
    load = Load(gateway.base_url, prefix).start()
    try:
        load.wait_sent(count)
    finally:
        load.stop()
    accepted = load.accepted_ids()
    assert len(accepted) == load.sent(), {a.status_code for a in load.answers()}
    assert readyz(gateway)["store_depth"] >= len(accepted) - 10, readyz(gateway)
    return accepted


def test_gateway_kill9_mid_replay(
    start_gateway: GatewayFactory,
    fault_proxy: FaultProxy,
    vhost: str,
    broker_url: str,
    run_id: str,
    tmp_path: Path,
) -> None:
    settings = {
        "broker_url": f"amqp://guest:guest@127.0.0.1:{fault_proxy.port}/{vhost}",
        "inbound_broker_url": broker_url,
        "store_path": str(tmp_path / "replay.db"),
        "replay_rate": "300",
        **FAST_BREAKER,
    }
    with Recorder(broker_url, run_id) as recorder:
        first = start_gateway(**settings)
        accepted = _backlog(first, fault_proxy, run_id, 1500)
        fault_proxy.heal()
        fault_end = time.monotonic()
        wait(lambda: len(recorder.seen_ids()) >= 300, 30, "the replay under way")
        kill9(first)
        replayed_before_kill = len(recorder.seen_ids())
        second = start_gateway(**settings)
        wait_delivered(accepted, recorder, timeout=60)
        wait(lambda: readyz(second)["store_depth"] == 0, 10, "an empty store")
        accounting = Accounting.of(
            "gateway_kill9_mid_replay",
            accepted,
            deliveries(recorder),
            fault_end=fault_end,
            replayed_before_kill=replayed_before_kill,
        )
        accounting.report()
    assert replayed_before_kill < len(accepted), "the kill came after the replay finished"
    accounting.assert_nothing_lost()


def test_sigterm_under_http_load_with_backlog_replaying(
    start_gateway: GatewayFactory,
    fault_proxy: FaultProxy,
    vhost: str,
    broker_url: str,
    run_id: str,
    tmp_path: Path,
) -> None:
    settings = {
        "broker_url": f"amqp://guest:guest@127.0.0.1:{fault_proxy.port}/{vhost}",
        "inbound_broker_url": broker_url,
        "store_path": str(tmp_path / "sigterm.db"),
        "replay_rate": "300",
        **FAST_BREAKER,
    }
    with Recorder(broker_url, run_id) as recorder:
        first = start_gateway(**settings)
        backlog = _backlog(first, fault_proxy, f"{run_id}-backlog", 1200)
        fault_proxy.heal()
        live = Load(first.base_url, f"{run_id}-live").start()
        try:
            wait(lambda: len(recorder.seen_ids()) >= 200, 30, "the replay under way")
            live.wait_sent(live.sent() + 200)
            first.signal(signal.SIGTERM)
            started = time.monotonic()
            exit_code = first.wait(40)
            shutdown_s = time.monotonic() - started
        finally:
            live.stop()
        fault_end = time.monotonic()
        delivered_at_exit = len(recorder.seen_ids())
        accepted = backlog + live.accepted_ids()
        second = start_gateway(**settings)  # the same store: whatever was left is replayed
        wait_delivered(accepted, recorder, timeout=60)
        accounting = Accounting.of(
            "gateway_sigterm_load_and_replay",
            accepted,
            deliveries(recorder),
            fault_end=fault_end,
            exit_code=exit_code,
            shutdown_s=round(shutdown_s, 3),
            live_accepted=len(live.accepted_ids()),
            live_refused=sum(1 for a in live.answers() if not a.accepted),
            delivered_at_exit=delivered_at_exit,
            left_in_store_at_restart=readyz(second)["store_depth"],
        )
        accounting.report()
    assert exit_code == 0, first.logs()[-3000:]
    assert delivered_at_exit < len(accepted), "SIGTERM came after everything was delivered"
    accounting.assert_nothing_lost()


def stranded_ids(store: Path) -> set[str]:
    """Ids in a dead gateway's store file: acked (so gone from the inbound queue), not yet replayed."""
    with StoreReader(store) as reader:
        return {row.event.message_id for row in reader.events()}


def replay_dead_store(store: Path, broker_url: str) -> dict[str, int]:
    """`breakwater store replay`: what an operator runs on a dead replica's volume."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKWATER_")}
    proc = subprocess.run(
        [str(BREAKWATER), "store", "replay", "--path", str(store), "--broker-url", broker_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, int] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.usefixtures("inbound_queues")
def test_two_replicas_the_active_consumer_killed_mid_stream(
    start_gateway: GatewayFactory, broker_url: str, run_id: str
) -> None:
    """Two replicas on one single-active-consumer queue: one forwards, the other stands by. The
    active one is killed -9 mid-stream; the broker hands the queue to the other, which starts with
    what the dead one had not acked. Duplicates are allowed (named and counted); order among first
    deliveries and every event are kept. What the dead replica had acked *into its own store*
    (a publish that timed out) would wait in that store file, and reach the exchange only when that
    store is replayed: late, out of order. It is counted apart, replayed here, and must be rare."""
    ids = [f"{run_id}-rep-{i:05d}" for i in range(4000)]
    with Recorder(broker_url, run_id) as recorder:
        preload(broker_url, CHANNEL, ids)
        replicas = [start_gateway(), start_gateway()]  # each with a store of its own
        wait(lambda: len(recorder.seen_ids()) >= 500, 30, "500 events forwarded")
        states = {consumer_state(replica) for replica in replicas}
        assert states == {"active", "standby"}, states
        active, standby = sorted(replicas, key=lambda r: consumer_state(r) != "active")
        assert accepted_total(standby) == 0, "the standby replica forwarded events"
        by_active = accepted_total(active)
        kill9(active)
        fault_end = time.monotonic()
        forwarded_at_kill = len(recorder.seen_ids())
        # Takeover: from the kill to the standby's first delivery (the broker notices the dead
        # connection, requeues its unacked messages, activates the next consumer).
        wait(lambda: consumer_state(standby) == "active", 60, "the standby replica took over")
        takeover_s = round(time.monotonic() - fault_end, 3)
        dead_store = Path(active.env["BREAKWATER_STORE_PATH"])
        stranded = stranded_ids(dead_store) - recorder.seen_ids()
        through_standby = wait_delivered(set(ids) - stranded, recorder, timeout=60)
        order_kept = inversions([i for i in ids if i not in stranded], deliveries(recorder))
        replayed = replay_dead_store(dead_store, broker_url)["replayed"] if stranded else 0
        wait_delivered(ids, recorder, timeout=30)
        accounting = Accounting.of(
            "two_replicas_active_consumer_killed",
            ids,
            deliveries(recorder),
            fault_end=fault_end,
            forwarded_at_kill=forwarded_at_kill,
            acked_by_killed_replica_at_kill=int(by_active),
            order_inversions=order_kept,
            takeover_s=takeover_s,
            stranded_in_killed_replica_store=len(stranded),
            replayed_from_dead_store=replayed,
        )
        left = stop_and_count_inbound(standby, broker_url)
        accounting.extra["inbound_left"] = left
        accounting.report()
    assert through_standby, "the standby replica did not forward the rest of the queue"
    assert forwarded_at_kill < len(ids), "the kill came after everything was forwarded"
    accounting.assert_nothing_lost()
    assert order_kept == 0, f"{order_kept} first deliveries out of order"
    assert left == 0, f"{left} messages left in {INBOUND_QUEUE}"
