"""Which event loop and HTTP parser the gateway runs on.

uvloop and httptools are uvicorn's `standard` extras and what the field deploys: measured with
`python -m bench --loop asyncio|uvloop` (README: Benchmarks). The standard library's loop stays a
setting (`BREAKWATER_EVENT_LOOP=asyncio`) for platforms uvloop does not support, and is what the
gateway falls back to, with a warning, when uvloop is not installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from typing import Literal

from ..settings import EventLoop

log = logging.getLogger("breakwater")

LoopName = Literal["uvloop", "asyncio"]
ParserName = Literal["httptools", "h11"]


def loop_for(setting: EventLoop) -> LoopName:
    """The loop to start: the setting's, unless it asks for uvloop and uvloop is not installed."""
    if setting is EventLoop.asyncio:
        return "asyncio"
    if importlib.util.find_spec("uvloop") is None:
        log.warning(
            "BREAKWATER_EVENT_LOOP=uvloop but uvloop is not installed: using asyncio's loop"
        )
        return "asyncio"
    return "uvloop"


def http_parser() -> ParserName:
    """httptools when installed (uvicorn's own choice with `http="auto"`), else h11."""
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


def running_loop() -> str:
    """The running loop's kind, as the start-up log names it: `uvloop` or `asyncio`."""
    return type(asyncio.get_running_loop()).__module__.partition(".")[0]
