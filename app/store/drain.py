"""Store maintenance without the HTTP server: drain a store file to a broker, or purge a channel."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ..broker.tls import client_tls_context
from ..outbound.breaker import Breaker
from ..outbound.connection import OutboundLink, Unroutable
from ..outbound.publisher import ResilientPublisher
from ..settings import Settings
from ..tracing import tracing_for
from .fallback import FallbackStore, StoreUnavailable
from .replay import Replayer

log = logging.getLogger("breakwater.drain")


def _store(settings: Settings, path: Path) -> FallbackStore:
    if not path.exists():
        # Opening would create an empty store: for maintenance, a wrong path is a mistake.
        raise StoreUnavailable(f"no fallback store at {path}")
    return FallbackStore(
        path, max_bytes=settings.store_max_bytes, synchronous=settings.store_synchronous.value
    )


async def drain_store(
    settings: Settings,
    *,
    path: Path,
    rate: float,
    broker_urls: list[str],
    connect_timeout_s: float,
) -> int:
    """Replay every event of the store at `path` to the first of `broker_urls` that answers;
    return how many went out."""
    store = _store(settings, path)
    await store.open()  # takes the store's lock: refuses while a gateway owns the file
    link = OutboundLink(broker_urls, ssl_context=client_tls_context(settings))
    tracing = tracing_for(settings)  # replay spans, as the gateway's own replay makes
    try:
        link.start()
        try:
            await asyncio.wait_for(link.ever_connected.wait(), connect_timeout_s)
        except TimeoutError:
            raise TimeoutError(
                f"no broker answered at {link.display_url} within {connect_timeout_s:.0f} s;"
                f" {store.depth()} events stay in {path}"
            ) from None
        breaker = Breaker(
            fail_max=settings.breaker_fail_max,
            reset_timeout_s=settings.breaker_reset_timeout_s,
            excluded=(Unroutable,),
        )
        publisher = ResilientPublisher(
            link,
            breaker,
            store,
            deadline_s=settings.publish_timeout_s,
            tracer=tracing.publish_tracer,
        )
        replayer = Replayer(publisher, rate=rate, batch=settings.replay_batch)
        await replayer.run(until_empty=True)
        return replayer.replayed
    finally:
        await link.close()
        await store.close()
        await tracing.close()


async def purge_channel(settings: Settings, path: Path, channel: str) -> int:
    store = _store(settings, path)
    await store.open()
    deleted = 0
    try:
        while rows := await store.peek(1000, channel):
            await store.delete([row.seq for row in rows])
            deleted += len(rows)
    finally:
        await store.close()
    log.warning("purged %d stored events of channel %s from %s", deleted, channel, path)
    return deleted
