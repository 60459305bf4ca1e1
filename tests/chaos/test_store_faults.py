"""Store faults: a full filesystem under the store while the broker is partitioned, a corrupt store
file at start, a read-only store directory at start. Each ends with an ACCOUNTING line."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.gateway_process import GatewayProcess
from tests.integration.outage_helpers import Recorder, post_event
from tests.support.fault_proxy import FaultProxy

from .accounting import Accounting
from .helpers import (
    FAST_BREAKER,
    deliveries,
    readyz,
    remount_read_only,
    tmpfs,
    wait,
    wait_delivered,
)

pytestmark = pytest.mark.integration

GatewayFactory = Callable[..., GatewayProcess]
CHANNEL = "orders.created"


def test_store_disk_full_while_partitioned(
    start_gateway: GatewayFactory,
    fault_proxy: FaultProxy,
    vhost: str,
    broker_url: str,
    run_id: str,
    tmp_path: Path,
) -> None:
    """The store's filesystem (a tiny tmpfs, mostly taken by a ballast file) fills up while the
    broker is away: 503 + Retry-After from then on, never a hang or a 500. The broker comes back
    while the disk is still full (the replay publishes, but cannot delete what it published), then
    the ballast goes: the store must drain, everything accepted is delivered, and the gateway
    accepts again."""
    tiny = tmp_path / "tiny"
    with tmpfs(tiny, "1m") as why:
        if why is not None:
            print(f"SKIP disk-full scenario: {why}", flush=True)
            pytest.skip(f"cannot mount a tmpfs for the store: {why}")
        ballast = tiny / "ballast"
        ballast.write_bytes(b"\0" * (640 * 1024))
        gateway = start_gateway(
            broker_url=f"amqp://guest:guest@127.0.0.1:{fault_proxy.port}/{vhost}",
            inbound_broker_url=broker_url,
            store_path=str(tiny / "store.db"),
            **FAST_BREAKER,
        )
        try:
            with Recorder(broker_url, run_id) as recorder:
                fault_proxy.partition()
                answers = []
                with httpx.Client(base_url=gateway.base_url) as client:
                    refused = 0
                    while refused < 20 and len(answers) < 20_000:
                        answer = post_event(client, CHANNEL, f"{run_id}-{len(answers):05d}")
                        answers.append(answer)
                        refused += answer.status_code == 503
                ready_when_full = readyz(gateway)
                fault_proxy.heal()
                fault_end = time.monotonic()
                accepted = [a.message_id for a in answers if a.accepted]
                # The replay publishes again, but cannot delete what it published: disk full.
                wait(lambda: recorder.seen_ids(), 30, "the replay publishing after the heal")
                delivered_while_full = len(recorder.seen_ids())
                ballast.unlink()  # the operator frees space
                wait(lambda: readyz(gateway)["store_depth"] == 0, 20, "the store drained")
                with httpx.Client(base_url=gateway.base_url) as client:
                    after = [post_event(client, CHANNEL, f"{run_id}-after-{n}") for n in range(20)]
                after_ids = [a.message_id for a in after if a.accepted]
                wait_delivered(accepted + after_ids, recorder, timeout=30)
                statuses = sorted({a.status_code for a in answers})
                full = [a for a in answers if a.status_code == 503]
                accounting = Accounting.of(
                    "store_disk_full",
                    accepted + after_ids,
                    deliveries(recorder),
                    fault_end=fault_end,
                    sent_while_partitioned=len(answers),
                    refused_503=len(full),
                    statuses=statuses,
                    retry_after=sorted({a.retry_after for a in full if a.retry_after}),
                    slowest_answer_s=round(max(a.elapsed for a in answers), 3),
                    delivered_while_disk_full=delivered_while_full,
                    accepted_after_space_freed=len(after_ids),
                    readyz_when_full=ready_when_full,
                )
                accounting.report()
        finally:
            gateway.stop()  # before the unmount
    assert full, "the store never filled up"
    assert set(statuses) <= {202, 503}, f"answers other than 202/503: {statuses}"
    assert all(a.retry_after for a in full), "a 503 without Retry-After"
    first_full = answers.index(full[0])
    assert all(a.status_code == 503 for a in answers[first_full:]), "accepted again while full"
    assert max(a.elapsed for a in answers) <= 3.0, "an answer hung"
    assert len(after_ids) == len(after), "not accepting again after the store drained"
    accounting.assert_nothing_lost()


def test_corrupt_store_file_is_quarantined(
    start_gateway: GatewayFactory, broker_url: str, run_id: str, tmp_path: Path
) -> None:
    store = tmp_path / "corrupt" / "store.db"
    store.parent.mkdir()
    garbage = b"this is not an SQLite database\n" * 100 + os.urandom(8192)
    store.write_bytes(garbage)
    with Recorder(broker_url, run_id) as recorder:
        gateway = start_gateway(store_path=str(store))
        fault_end = time.monotonic()
        quarantined = sorted(store.parent.glob("store.db.corrupt-*"))
        logs = gateway.logs()
        with httpx.Client(base_url=gateway.base_url) as client:
            answers = [post_event(client, CHANNEL, f"{run_id}-{n:04d}") for n in range(200)]
        accepted = [a.message_id for a in answers if a.accepted]
        wait_delivered(accepted, recorder, timeout=30)
        accounting = Accounting.of(
            "store_corrupt_at_start",
            accepted,
            deliveries(recorder),
            fault_end=fault_end,
            quarantined=[p.name for p in quarantined],
        )
        accounting.report()
    assert len(quarantined) == 1, list(store.parent.iterdir())
    assert quarantined[0].read_bytes() == garbage, "the quarantined file is not the garbage intact"
    warning = next((line for line in logs.splitlines() if "corrupt" in line), None)
    assert warning is not None, f"the log does not say the store was corrupt:\n{logs}"
    assert "WARNING" in warning, warning
    assert str(quarantined[0]) in warning, warning
    assert len(accepted) == len(answers), {a.status_code for a in answers}
    accounting.assert_nothing_lost()


def test_read_only_store_directory_at_start(
    start_gateway: GatewayFactory, broker_url: str, run_id: str, tmp_path: Path
) -> None:
    """What the app does: it refuses to start and says why (exit != 0, CRITICAL "cannot start",
    the path and the OS's reason). Nothing is accepted, so nothing can be lost."""
    read_only = tmp_path / "ro"
    with tmpfs(read_only, "1m") as why:
        if why is not None:
            print(f"SKIP read-only scenario: {why}", flush=True)
            pytest.skip(f"cannot mount a tmpfs for the store: {why}")
        remount_read_only(read_only)
        store = read_only / "store.db"
        with pytest.raises(RuntimeError, match="gateway exited with") as refused:
            start_gateway(store_path=str(store), wait_connected=False)
    message = str(refused.value)
    accounting = Accounting.of(
        "store_read_only_at_start", [], [], fault_end=None, outcome="refused to start"
    )
    accounting.report()
    assert "exited with 0" not in message, message
    critical = next((line for line in message.splitlines() if "cannot start" in line), None)
    assert critical is not None, f"no 'cannot start' line in the log:\n{message}"
    assert "CRITICAL" in critical, critical
    assert str(store) in critical, critical
    assert "Read-only file system" in critical, critical
    assert accounting.lost == 0
