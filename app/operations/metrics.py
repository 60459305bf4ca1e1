"""Prometheus metrics with the contract's names, on a registry of the gateway's own."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..broker.topology import Mismatch
from ..events import DeliveryPath
from ..outbound.breaker import BreakerState

BREAKER_STATE_VALUES = {BreakerState.closed: 0, BreakerState.half_open: 1, BreakerState.open: 2}
# A label value must not come from the client unchecked: unknown channels are counted together.
UNKNOWN_CHANNEL = "unknown"


CONSUMER_STATES = ("active", "standby", "shared", "unknown")


class ConsumerStates(Collector):
    """`breakwater_inbound_consumer{queue,state}`: 1 for the state this process is in for each
    inbound queue it consumes, 0 for the others (read at scrape time)."""

    def __init__(self) -> None:
        self.read: Callable[[], Mapping[str, str]] = dict

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "breakwater_inbound_consumer",
            "Per inbound queue this process consumes, 1 for its state: active (it has had"
            " deliveries), standby (single active consumer, none yet: another replica is active,"
            " or the queue has been empty), shared (every replica consumes it), unknown (the"
            " queue exists with other arguments than declared).",
            labels=["queue", "state"],
        )
        for queue, current in sorted(self.read().items()):
            for state in CONSUMER_STATES:
                family.add_metric([queue, state], 1.0 if state == current else 0.0)
        yield family


class Metrics:
    def __init__(self, channels: Collection[str] = ()) -> None:
        self._channels = frozenset(channels)
        self._mismatches: dict[str, tuple[Mismatch, ...]] = {}
        # `_created` series double every counter's cardinality and no dashboard reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self.breaker_state = Gauge(
            "breakwater_breaker_state",
            "Outbound circuit breaker: 0 closed, 1 half_open, 2 open.",
            registry=self.registry,
        )
        self.accepted = Counter(
            "breakwater_events_accepted",
            "Events answered 202 or acked, by channel and status (published|stored).",
            ["channel", "status"],
            registry=self.registry,
        )
        self.replayed = Counter(
            "breakwater_events_replayed",
            "Stored events published by the replay and deleted from the store.",
            ["channel"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "breakwater_events_rejected",
            "Events refused (4xx, 503, dead-lettered or requeued), by channel and reason.",
            ["channel", "reason"],
            registry=self.registry,
        )
        self.store_depth = Gauge(
            "breakwater_store_depth",
            "Events waiting in the fallback store.",
            registry=self.registry,
        )
        self.store_bytes = Gauge(
            "breakwater_store_bytes",
            "Bytes of events in the fallback store (what its bound counts).",
            registry=self.registry,
        )
        self.publish_seconds = Histogram(
            "breakwater_publish_seconds",
            "Confirmed publishes to the outbound broker: connection check, send and confirm.",
            ["path"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.deprecated = Counter(
            "breakwater_deprecated_events",
            "Events accepted on channels the catalog marks deprecated, by channel.",
            ["channel"],
            registry=self.registry,
        )
        self.topology_mismatch = Gauge(
            "breakwater_topology_mismatch",
            "1 for each exchange or queue that exists with other arguments than the gateway"
            " declares (it is used as it is; the status page says what that costs).",
            ["link", "kind", "name"],
            registry=self.registry,
        )
        self.repeats = Counter(
            "breakwater_idempotent_repeats",
            "Events not published again because their key (HTTP `Idempotency-Key`, AMQP"
            " `message_id`) was seen within the idempotency window, by channel and ingress.",
            ["channel", "ingress"],
            registry=self.registry,
        )
        self.withdrawn = Counter(
            "breakwater_inbound_withdrawn",
            "Stored copies of AMQP deliveries taken back from the store because the delivery could"
            " no longer be acked (its channel went away): the broker delivers them again, so the"
            " copy would only have been a duplicate, by channel.",
            ["channel"],
            registry=self.registry,
        )
        self.idempotency_keys = Gauge(
            "breakwater_idempotency_keys",
            "Idempotency keys remembered (the window's size).",
            registry=self.registry,
        )
        self.idempotency_window = Gauge(
            "breakwater_idempotency_window_seconds",
            "Age of the oldest remembered idempotency key: how far back repeats are recognised.",
            registry=self.registry,
        )
        self._consumers = ConsumerStates()
        self.registry.register(self._consumers)
        for channel in channels:
            for status in ("published", "stored"):
                self.accepted.labels(channel, status)
            self.replayed.labels(channel)
            for ingress in ("http", "amqp"):
                self.repeats.labels(channel, ingress)

    def watch(
        self,
        breaker_state: Callable[[], BreakerState],
        store_depth: Callable[[], int],
        store_bytes: Callable[[], int],
    ) -> None:
        """Gauges read at scrape time, so they are never stale."""
        self.breaker_state.set_function(lambda: BREAKER_STATE_VALUES[breaker_state()])
        self.store_depth.set_function(store_depth)
        self.store_bytes.set_function(store_bytes)

    def watch_idempotency(self, keys: Callable[[], int], window_s: Callable[[], float]) -> None:
        self.idempotency_keys.set_function(keys)
        self.idempotency_window.set_function(window_s)

    def repeat(self, channel: str, ingress: str) -> None:
        self.repeats.labels(channel, ingress).inc()

    def delivery_withdrawn(self, channel: str) -> None:
        self.withdrawn.labels(channel).inc()

    def watch_consumers(self, states: Callable[[], Mapping[str, str]]) -> None:
        self._consumers.read = states

    def event_accepted(self, channel: str, status: str) -> None:
        self.accepted.labels(channel, status).inc()

    def channel_label(self, channel: str) -> str:
        return channel if channel in self._channels else UNKNOWN_CHANNEL

    def event_rejected(self, channel: str, reason: str) -> None:
        self.rejected.labels(self.channel_label(channel), reason).inc()

    def deprecated_event(self, channel: str) -> None:
        self.deprecated.labels(channel).inc()

    def event_replayed(self, channel: str) -> None:
        self.replayed.labels(channel).inc()

    def published(self, channel: str, seconds: float, path: DeliveryPath) -> None:
        self.publish_seconds.labels(path.value).observe(seconds)

    def topology(self, link: str, found: Sequence[Mismatch]) -> None:
        """The mismatches a link found on its last connect, replacing what it found before."""
        self._mismatches[link] = tuple(found)
        self.topology_mismatch.clear()
        for name, mismatches in self._mismatches.items():
            for mismatch in mismatches:
                self.topology_mismatch.labels(name, mismatch.kind, mismatch.name).set(1)
