"""Runs the ASGI app under uvicorn with the gateway's settings."""

from __future__ import annotations

import logging
import signal
from types import FrameType

import uvicorn

from ..settings import get_settings
from .event_loop import http_parser, loop_for

log = logging.getLogger("breakwater")


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve() -> None:
    settings = get_settings()
    from ..main import app

    # uvicorn re-raises SIGTERM after its graceful shutdown, with the handler that was there before
    # it started; with the default one the process would die by signal (exit 143) although
    # everything finished cleanly. This handler turns that into a normal exit.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        loop=loop_for(settings.event_loop),
        http=http_parser(),
        log_config=None,  # keep the gateway's logging set-up (console or JSON)
        access_log=False,
        # SIGTERM: stop accepting, let in-flight requests finish, then the lifespan shutdown drains.
        timeout_graceful_shutdown=round(settings.shutdown_grace_s),
        lifespan="on",
    )
