"""Logging set-up: readable lines for a terminal, or one JSON object per line for a collector."""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType

from ..settings import LogFormat

# FastStream logs every message it consumes at INFO; events are counted in metrics, not logged.
# aio-pika and aiormq log every failed reconnect attempt (twice, at ERROR); the gateway logs the
# state change once itself.
_QUIET_LOGGERS = {
    "faststream": logging.WARNING,
    "aio_pika": logging.ERROR,
    "aio_pika.robust_connection": logging.CRITICAL,
    "aiormq": logging.CRITICAL,
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logging.getLogger("breakwater").critical(
        "uncaught exception; the process stops", exc_info=(exc_type, exc, tb)
    )


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # what the default hook does too
    thread = args.thread.name if args.thread is not None else "unknown"
    exc = args.exc_value
    logging.getLogger("breakwater").error(
        "uncaught exception in thread %s",
        thread,
        exc_info=(args.exc_type, exc, args.exc_traceback) if exc is not None else None,
    )


def configure_logging(fmt: LogFormat, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt is LogFormat.json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, logger_level in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(logger_level)
    # uvicorn installs its own handlers unless told otherwise; route it through ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Python's warnings and the tracebacks of uncaught exceptions are written to stderr directly,
    # bypassing logging; in JSON they would be the lines a collector cannot parse.
    logging.captureWarnings(True)
    if fmt is LogFormat.json:
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread
