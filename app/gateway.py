"""Wires the parts together and owns their life cycle."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from . import __version__
from .broker.link import redact
from .broker.tls import client_tls_context
from .catalog import Catalog
from .cloudevents.stamping import Stamper
from .ingress.amqp_ingress import AmqpIngress, documented_broker
from .ingress.http_api import HttpApi
from .ingress.idempotency import IdempotentPublisher
from .ingress.inbound import InboundLink
from .operations.event_loop import loop_for, running_loop
from .operations.metrics import UNKNOWN_CHANNEL, Metrics
from .operations.status_page import (
    BrokerLink,
    ChannelStatus,
    RateMeter,
    ReplayStatus,
    StatusSnapshot,
    StoreStatus,
)
from .outbound.breaker import Breaker, BreakerState
from .outbound.connection import OutboundLink, Unroutable
from .outbound.publisher import ResilientPublisher
from .settings import Settings
from .store.fallback import FallbackStore, StoreError
from .store.replay import Replayer
from .tracing import Tracing, tracing_for

log = logging.getLogger("breakwater")

LINK_HEAD_START_S = 2.0


class Gateway:
    def __init__(
        self, settings: Settings, catalog: Catalog, *, tracing: Tracing | None = None
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        # From the OTEL_* settings; a test passes one that keeps its spans in memory.
        self.tracing = tracing or tracing_for(settings)
        tls = client_tls_context(settings)
        self.link = OutboundLink(settings.broker_urls, ssl_context=tls)
        self.breaker = Breaker(
            fail_max=settings.breaker_fail_max,
            reset_timeout_s=settings.breaker_reset_timeout_s,
            excluded=(Unroutable,),
        )
        self.store = FallbackStore(
            settings.store_path,
            max_bytes=settings.store_max_bytes,
            synchronous=settings.store_synchronous.value,
        )
        self.metrics = Metrics(catalog)
        self.stamper = Stamper.for_settings(catalog, settings)
        self.publisher = ResilientPublisher(
            self.link,
            self.breaker,
            self.store,
            deadline_s=settings.publish_timeout_s,
            observer=self.metrics,
            tracer=self.tracing.publish_tracer,
        )
        self.idempotent = IdempotentPublisher(
            self.publisher,
            self.store,
            ttl_s=settings.idempotency_ttl_s,
            max_keys=settings.idempotency_max_keys,
        )
        self.replayer = Replayer(
            self.publisher,
            rate=settings.replay_rate,
            batch=settings.replay_batch,
            replays=catalog.__contains__,
        )
        inbound_urls = settings.inbound_urls
        self.inbound = documented_broker(
            inbound_urls[0],
            catalog,
            settings.inbound_prefetch,
            single_active_consumer=settings.inbound_single_active_consumer,
        )
        self.amqp = AmqpIngress(
            self.idempotent, deadline_s=settings.publish_timeout_s, stamper=self.stamper
        )
        self.inbound_link = InboundLink(
            inbound_urls,
            self.tracing.consuming(self.amqp.forward),
            prefetch=settings.inbound_prefetch,
            single_active_consumer=settings.inbound_single_active_consumer,
            catalog=catalog,
            ssl_context=tls,
        )
        self.amqp.link = self.inbound_link
        self._replay_meter = RateMeter()
        self._replay_meter.observe(0)
        self.http = HttpApi(
            settings,
            catalog,
            self.idempotent,
            self.readiness,
            self.metrics.registry,
            status=self.status,
            stamper=self.stamper,
        )
        # What the ASGI app serves: the HTTP ingress, with its accepting spans when tracing.
        self.http_app = self.tracing.http(self.http.app)
        self._count_events()
        self._tasks: list[asyncio.Task[None]] = []

    def _count_events(self) -> None:
        self.metrics.watch(lambda: self.breaker.state, self.store.depth, self.store.used_bytes)
        self.metrics.watch_consumers(self.inbound_link.consumer_states)
        self.metrics.watch_idempotency(self.idempotent.__len__, self.idempotent.oldest_age_s)
        for ingress, failure in ((self.http, False), (self.amqp, True)):
            ingress.on_repeat = self.metrics.repeat
            ingress.on_accepted = self.metrics.event_accepted
            # An HTTP refusal is the client's error (a 4xx), a dead-letter the delivery's.
            ingress.on_rejected = self.tracing.noting_rejections(
                self.metrics.event_rejected, failure=failure
            )
            ingress.on_deprecated = self.metrics.deprecated_event
            ingress.trace_context = self.tracing.context
        self.amqp.on_withdrawn = self.metrics.delivery_withdrawn
        self.replayer.on_replayed = self.metrics.event_replayed
        for link in (self.link, self.inbound_link):
            link.on_mismatches = functools.partial(self.metrics.topology, link.role)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        connected = self.link.is_connected
        # A silently dead link still looks connected until the heartbeat notices; an open breaker
        # (or half-open: only one trial call gets through) is what says the broker is not taking
        # events.
        broker_ok = connected and self.breaker.state is BreakerState.closed
        ready = broker_ok or self.store.is_writable()
        body: dict[str, Any] = {
            "ready": ready,
            "breaker": self.breaker.state.value,
            "broker_connected": connected,
            "store_depth": self.store.depth(),
            "store_bytes": self.store.used_bytes(),
        }
        topology = self.topology()
        if topology:
            body["topology_mismatches"] = topology
        stranded = self.stranded()
        if stranded:
            # Still ready: new events are taken. But these wait for an operator (README).
            body["stranded_channels"] = stranded
        return ready, body

    def topology(self) -> list[str]:
        """What the brokers hold that differs from what the gateway declares, and its cost."""
        return [str(m) for link in (self.link, self.inbound_link) for m in link.mismatches]

    def stranded(self) -> dict[str, int]:
        """Stored events of channels the loaded catalog does not have, by channel: kept, not
        replayed, until the catalog has the channel again or `breakwater store` exports/purges."""
        return {
            name: depth
            for name, depth in sorted(self.store.channel_depths().items())
            if name not in self.catalog
        }

    def status(self) -> StatusSnapshot:
        """What the status page at `/` shows, read from the live objects and the metrics."""
        now = datetime.now(UTC)
        depths = self.store.channel_depths()
        oldest = self.store.oldest_timestamps()
        accepted = _counter_values(self.metrics.accepted)
        replayed = _counter_values(self.metrics.replayed)
        rejected: defaultdict[str, dict[str, int]] = defaultdict(dict)
        for (channel, reason), count in _counter_values(self.metrics.rejected).items():
            rejected[channel][reason] = count
        names = list(self.catalog) + sorted(set(depths) - set(self.catalog))
        if rejected.get(UNKNOWN_CHANNEL):
            names.append(UNKNOWN_CHANNEL)
        rate = self._replay_meter.observe(self.replayer.replayed)
        return StatusSnapshot(
            version=__version__,
            taken_at=now,
            breaker=self.breaker.state,
            breaker_retry_after_s=self.breaker.retry_after_s,
            outbound=BrokerLink(
                self.link.display_url,
                self.link.is_connected,
                self.link.unavailable_reason(),
            ),
            inbound=BrokerLink(
                ", ".join(redact(url) for url in self.settings.inbound_urls),
                self.inbound_connected(),
            ),
            store=StoreStatus(
                path=str(self.store.path),
                depth=self.store.depth(),
                used_bytes=self.store.used_bytes(),
                max_bytes=self.store.max_bytes,
                writable=self.store.is_writable(),
                oldest_age_s=(now - min(oldest.values())).total_seconds() if oldest else None,
                idempotency_keys=len(self.idempotent) if self.idempotent.enabled else None,
                idempotency_reach_s=self.idempotent.oldest_age_s(),
            ),
            replay=ReplayStatus(
                configured_rate=self.replayer.rate,
                achieved_rate=rate[0] if rate else None,
                window_s=rate[1] if rate else None,
                replayed_total=self.replayer.replayed,
            ),
            topology=tuple(self.topology()),
            consumers=tuple(sorted(self.inbound_link.consumer_states().items())),
            channels=tuple(
                ChannelStatus(
                    name=name,
                    depth=depths.get(name, 0),
                    oldest_age_s=(now - oldest[name]).total_seconds() if name in oldest else None,
                    published=accepted.get((name, "published"), 0),
                    stored=accepted.get((name, "stored"), 0),
                    replayed=replayed.get((name,), 0),
                    rejected=rejected.get(name, {}),
                    deprecated=name in self.catalog and self.catalog[name].deprecated,
                    in_catalog=name in self.catalog or name == UNKNOWN_CHANNEL,
                )
                for name in names
            ),
        )

    def inbound_connected(self) -> bool:
        return self.inbound_link.is_consuming

    def _check_event_loop(self) -> None:
        # `faststream run` picks the loop itself (uvloop when installed) before any setting is
        # read; say how to get the one asked for instead of silently running on another.
        wanted = self.settings.event_loop.value
        if running_loop() != wanted and loop_for(self.settings.event_loop) == wanted:
            log.warning(
                "BREAKWATER_EVENT_LOOP=%s, but whoever started the gateway chose %s; with"
                " `faststream run`, add `--loop %s:new_event_loop`",
                wanted,
                running_loop(),
                wanted,
            )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Start the store, the links and the replay; stop them in reverse."""
        try:
            await self.store.open()
            await self.idempotent.load()
        except StoreError as exc:
            await self.store.close()  # nothing to do when it did not open
            log.critical("cannot start: %s", exc)
            raise
        self.link.start()
        # A short head start for the outbound link: AMQP ingress starts consuming right after
        # this, and events taken before the link is up would all go the store-and-replay way.
        # No broker yet: serve anyway, the store takes the events.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.link.ever_connected.wait(), LINK_HEAD_START_S)
        self.inbound_link.start()
        self._tasks.append(asyncio.create_task(self.replayer.run(), name="replay"))
        self._tasks.append(
            asyncio.create_task(self.idempotent.run_expiry(), name="idempotency-expiry")
        )
        self._check_event_loop()
        log.info(
            "breakwater ready on the %s event loop: store %s (%d events waiting, %d idempotency"
            " keys), outbound %s",
            running_loop(),
            self.store.path,
            self.store.depth(),
            len(self.idempotent),
            self.link.display_url,
        )
        try:
            yield
        finally:
            # AMQP ingress first, while the outbound link and the store can still take what it
            # holds: the deliveries in hand settle and are acked within the grace period.
            await self.inbound_link.stop_consuming(self.settings.shutdown_grace_s)
            await self.inbound_link.close()
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.link.close()
            await self.amqp.withdrawals_settled()
            await self.idempotent.keys_written()
            await self.store.close()
            await self.tracing.close()
            log.info("breakwater stopped")


def _counter_values(counter: Counter) -> dict[tuple[str, ...], int]:
    """A labelled counter's current values by label values, read the way a scrape reads them."""
    values: dict[tuple[str, ...], int] = {}
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                values[tuple(sample.labels.values())] = int(sample.value)
    return values
