"""W3C Trace Context in an event's headers, without OpenTelemetry: what tracing off needs.

With tracing off the gateway makes no spans, but a producer's trace still continues across it: a
valid `traceparent` (and its `tracestate`) that came with the request or the inbound message is
fixed in the event's headers at acceptance, stored with it, and published unchanged, so the
consumer's span is a child of the producer's. An event without one costs one header lookup.

A malformed value is dropped, never an error: the consumer then starts a trace of its own, as it
would have without the header. The checks are the Trace Context recommendation's (level 1). Of a
request with several `tracestate` fields, the first travels on (tracing on, the SDK joins them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from ..events import Headers

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
TRACE_HEADERS: Final = frozenset({TRACEPARENT, TRACESTATE})

# version-trace_id-parent_id-flags; a later version may append fields after another "-".
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_INVALID_VERSION: Final = "ff"
_ZERO_TRACE_ID: Final = "0" * 32
_ZERO_PARENT_ID: Final = "0" * 16
# Receivers must pass on at least 512 characters of tracestate and may drop a longer one; its
# members are printable ASCII (key=value lists, comma-separated).
TRACESTATE_MAX_CHARS: Final = 512
_TRACESTATE = re.compile(r"[\x20-\x7e]*")


def valid_traceparent(value: str) -> bool:
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return False
    version, trace_id, parent_id, _, rest = match.groups()
    if version == _INVALID_VERSION or (version == "00" and rest is not None):
        return False
    return trace_id != _ZERO_TRACE_ID and parent_id != _ZERO_PARENT_ID


def valid_tracestate(value: str) -> bool:
    return len(value) <= TRACESTATE_MAX_CHARS and _TRACESTATE.fullmatch(value) is not None


def producer_context(carrier: Mapping[str, Any] | None) -> Headers:
    """The producer's trace context from its HTTP or AMQP headers, as event headers: a valid
    `traceparent` and, beside it, a valid `tracestate`; nothing when either part is missing or
    malformed (a `tracestate` without its `traceparent` means nothing)."""
    if not carrier:
        return ()
    parent = carrier.get(TRACEPARENT)
    if parent is None:  # most events: the only cost of tracing off
        return ()
    # An AMQP header can be of any type (a long string that is not UTF-8 arrives as bytes).
    if not isinstance(parent, str) or not valid_traceparent(parent):
        return ()
    state = carrier.get(TRACESTATE)
    if isinstance(state, str) and state and valid_tracestate(state):
        return ((TRACEPARENT, parent), (TRACESTATE, state))
    return ((TRACEPARENT, parent),)


def with_context(headers: Headers, context: Headers) -> Headers:
    """`headers` with their trace context (if any) replaced by `context`."""
    kept = tuple(pair for pair in headers if pair[0] not in TRACE_HEADERS)
    return kept + context
