"""The inbound broker: FastStream's RabbitBroker, started on the first of several URLs that answers."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import aio_pika
from aio_pika import RobustConnection
from faststream.rabbit import RabbitBroker
from faststream.security import BaseSecurity

from .outbound import redact

log = logging.getLogger("breakwater.inbound")

PROBE_TIMEOUT_S = 5.0


class InboundBroker(RabbitBroker):
    """Connects to the first URL of the list that answers.

    FastStream (and aio-pika's robust connection underneath) knows one URL; this probes the list
    in order, round after round, and hands FastStream the first that answers. Once connected, the
    robust connection reconnects to that same broker.
    """

    def __init__(
        self, urls: list[str], *, ssl_context: ssl.SSLContext | None = None, **kwargs: Any
    ) -> None:
        if ssl_context is not None and urls[0].startswith("amqps://"):
            kwargs["security"] = BaseSecurity(ssl_context=ssl_context)
        super().__init__(urls[0], **kwargs)
        self._urls = urls
        self._ssl_context = ssl_context

    async def _connect(self) -> RobustConnection:
        if len(self._urls) > 1:
            self._connection_kwargs["url"] = await self._first_answering()
        return await super()._connect()

    async def _first_answering(self) -> str:
        pause = 0.5
        while True:
            for url in self._urls:
                try:
                    probe = await aio_pika.connect(
                        url, timeout=PROBE_TIMEOUT_S, ssl_context=self._ssl_context
                    )
                except Exception:
                    continue
                await probe.close()
                log.info("inbound broker: using %s", redact(url))
                return url
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)
