"""app.broker.link.SupervisedLink without a broker: closing it while it connects."""

from __future__ import annotations

import asyncio

from app.outbound.connection import OutboundLink


class CancellationSwallowingLink(OutboundLink):
    """Its connect attempt fails as the cancel arrives, the way aio-pika's `asyncio.wait_for`
    can on Python 3.11: the CancelledError turns into the attempt's own failure."""

    def __init__(self) -> None:
        super().__init__("amqp://guest:guest@127.0.0.1:1/", reconnect_interval_s=0.01)
        self.attempts = 0

    async def _connect(self, url: str) -> asyncio.Future[str]:
        self.attempts += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionRefusedError("refused") from None
        raise AssertionError("never set")


async def test_closing_a_link_that_is_connecting_returns_even_if_the_cancel_is_swallowed() -> None:
    link = CancellationSwallowingLink()
    link.start()
    while not link.attempts:
        await asyncio.sleep(0)

    closing = asyncio.ensure_future(link.close())
    done, _ = await asyncio.wait({closing}, timeout=5)

    assert closing in done, "close() waits for a supervisor that goes on connecting"
    assert link.attempts == 1  # no attempt after the close
