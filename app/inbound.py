"""The inbound broker: FastStream's RabbitBroker, started on the first of several URLs that answers."""

from __future__ import annotations

import asyncio
import contextlib
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
# Pauses between attempts to start AMQP ingress after a start cut short by the broker.
START_RETRY_FIRST_S = 0.5
START_RETRY_MAX_S = 5.0


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

    async def start(self) -> None:
        """Start consuming; if the broker goes away half-way, tear down and start again.

        FastStream declares and consumes queue by queue after the gateway has reported startup.
        A broker that stops or drops the connection in between (a node restart, a forced close)
        makes that raise, and FastStream would then end the whole gateway, HTTP ingress and the
        replay of stored events included. Here the error costs AMQP ingress a retry instead.
        """
        pause = START_RETRY_FIRST_S
        while True:
            try:
                await super().start()
                return
            except Exception as exc:
                log.warning(
                    "AMQP ingress start interrupted (%s: %s); starting again in %.1fs",
                    type(exc).__name__,
                    exc,
                    pause,
                )
            # Subscribers already consuming, the channel and the connection all go, so the next
            # attempt starts from nothing (and, with several URLs, picks the first that answers).
            with contextlib.suppress(Exception):
                await self.stop()
            await asyncio.sleep(pause)
            pause = min(pause * 2, START_RETRY_MAX_S)

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
