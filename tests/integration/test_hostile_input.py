"""Hostile input against the real gateway process: property-based fuzzing (hypothesis) of HTTP bodies,
headers and raw requests, and of AMQP payloads and properties.

The rules every example is held to:
- HTTP: a 4xx with a reason, or a 202 only for an input that is genuinely valid, which must then be
  delivered to `breakwater.events` with the value sent. Never a 5xx, never a hang.
- AMQP: a valid message is forwarded (ids kept), anything else is dead-lettered with
  `x-breakwater-error`, its body and headers kept. Never requeued forever, never stuck unacked.
- Afterwards the process is alive, `/healthz` answers 200, the inbound queues are drained (no ready
  and no unacknowledged message) and the log holds no traceback and no ERROR line.

Validity is decided by generators written from the contract (CONTRACT.md, "Channels"), not by the
gateway's own models: a payload built from the contract's rules must be accepted, a payload that
breaks one rule must be refused. For arbitrary garbage the gateway may say either, but what it
accepts must then be delivered.

One gateway serves the whole module, in a vhost of the module's own, so that queue depths at the
end count only what this module sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import string
import struct
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import httpx
import pamqp.encode
import pytest
from aio_pika.abc import AbstractIncomingMessage
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from prometheus_client.parser import text_string_to_metric_families

from app.broker.topology import DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE
from app.catalog.default import DEFAULT_CATALOG

from .consumers import bind_queue
from .gateway_process import GatewayProcess

pytestmark = pytest.mark.integration

RABBITMQCTL = os.environ.get("RABBITMQCTL", "rabbitmqctl")
BODY_LIMIT = 256 * 1024
INBOUND_QUEUES = tuple(channel.inbound_queue for channel in DEFAULT_CATALOG.values())
T = TypeVar("T")

# Examples run against a live process, so they are moderate in number and have no deadline. The
# health checks about slow or large data do not apply to a test that talks to a server.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# AMQP examples share queue state: after a failure, shrinking would only chase the leftovers.
FUZZ_NO_SHRINK = settings(FUZZ, phases=[Phase.explicit, Phase.generate])


# --------------------------------------------------------------------------------------------------
# JSON text that `json.dumps` cannot write: literals (NaN, 1e308, 10**400) and repeated keys.


class Literal(str):
    """JSON text written as it is: `NaN`, `Infinity`, `1e308`, a 400-digit number."""


class Pairs(list[tuple[str, Any]]):
    """A JSON object as key/value pairs, in this order; a key may repeat."""


def dump(value: Any, *, ascii_only: bool = False) -> str:
    if isinstance(value, Literal):
        return str(value)
    if isinstance(value, dict):
        value = Pairs(value.items())
    if isinstance(value, Pairs):
        members = (
            f"{json.dumps(k, ensure_ascii=ascii_only)}:{dump(v, ascii_only=ascii_only)}"
            for k, v in value
        )
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(item, ascii_only=ascii_only) for item in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def last_wins(value: Any) -> Any:
    """What a JSON parser that keeps the last of repeated keys makes of `value`."""
    if isinstance(value, dict):
        value = Pairs(value.items())
    if isinstance(value, Pairs):
        return {key: last_wins(item) for key, item in value}
    if isinstance(value, list):
        return [last_wins(item) for item in value]
    return value


# --------------------------------------------------------------------------------------------------
# Payloads built from the contract's rules.


@dataclass
class Payload:
    """A body, and whether the contract calls it valid (`expected`: the values to be delivered)."""

    body: bytes
    expected: dict[str, Any] | None = None  # None: invalid (must be refused)
    garbage: bool = False  # True: the contract does not decide; either answer, but be consistent
    why: str = ""


ids = st.text(min_size=1, max_size=200)
currency = st.from_regex(r"\A[A-Z]{3}\Z")


@st.composite
def money(
    draw: st.DrawFn, *, positive: bool, max_value: str = "9999.999999"
) -> tuple[Any, Decimal]:
    """A decimal with at most 6 places and 18 digits, as the JSON sends it: a string in one of several
    notations, or a JSON number when it has at most 15 significant digits (a float holds those
    exactly; see `test_money_as_json_numbers_keeps_every_digit` for the others)."""
    places = draw(st.integers(0, 6))
    low = Decimal(1).scaleb(-places) if positive else Decimal(0)
    value = draw(
        st.decimals(
            min_value=low,
            max_value=Decimal(max_value),
            places=places,
            allow_nan=False,
            allow_infinity=False,
        )
    )
    form = draw(st.sampled_from(["str", "fixed", "normalized", "number"]))
    if form == "number" and len(value.as_tuple().digits) <= 15:
        return Literal(format(value, "f")), value
    if form == "normalized":
        return str(value.normalize()), value
    return (str(value) if form == "str" else format(value, "f")), value


@st.composite
def valid_fields(draw: st.DrawFn, channel: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what to send, what must be delivered) for a valid event of `channel`."""
    if channel == "orders.cancelled":
        sent = {"order_id": draw(ids), "reason": draw(st.text(min_size=1, max_size=500))}
        return sent, dict(sent)
    if channel == "payments.captured":
        amount, value = draw(money(positive=True, max_value="999999999999.999999"))
        sent = {
            "payment_id": draw(ids),
            "order_id": draw(ids),
            "amount": amount,
            "currency": draw(currency),
        }
        return sent, {**sent, "amount": value}
    lines, expected_lines = [], []
    for _ in range(draw(st.integers(1, 4))):
        sku = draw(st.text(min_size=1, max_size=100))
        quantity = draw(st.integers(1, 1_000_000))
        price, value = draw(money(positive=False))
        lines.append({"sku": sku, "quantity": quantity, "unit_price": price})
        expected_lines.append({"sku": sku, "quantity": quantity, "unit_price": value})
    total = sum((line["quantity"] * line["unit_price"] for line in expected_lines), Decimal(0))
    total_form = draw(st.sampled_from(["str", "fixed", "number"]))
    sent_total: Any = str(total) if total_form == "str" else format(total, "f")
    if total_form == "number" and len(total.as_tuple().digits) <= 15:
        sent_total = Literal(format(total, "f"))
    sent = {
        "order_id": draw(ids),
        "customer_id": draw(ids),
        "items": lines,
        "currency": draw(currency),
        "total": sent_total,
    }
    return sent, {**sent, "items": expected_lines, "total": total}


def shuffled(draw: st.DrawFn, fields: dict[str, Any]) -> Pairs:
    return Pairs(draw(st.permutations(list(fields.items()))))


@st.composite
def valid_payload(draw: st.DrawFn, channel: str) -> Payload:
    sent, expected = draw(valid_fields(channel))
    body = dump(shuffled(draw, sent), ascii_only=draw(st.booleans()))
    padding = draw(st.sampled_from(["", " ", "\n", " \t\r\n "]))
    return Payload((padding + body + padding).encode(), expected, why="valid")


NAN_AND_INFINITY = [
    Literal("NaN"),
    Literal("Infinity"),
    Literal("-Infinity"),
    "NaN",
    "nan",
    "sNaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "inf",
    "-inf",
]
HUGE_NUMBERS = [
    Literal("1e308"),
    Literal("-1e308"),
    Literal("1e309"),
    Literal("1" + "0" * 400),  # 10**400 as a JSON literal
    Literal("1" + "0" * 5000),
    Literal("9" * 20_000),
    "1" + "0" * 5000,
    "9" * 100_000,
    "1e400",
    "1e999999999",
    "1e-999999999",
    Literal("1e-7"),
    "0.0000001",
    "1.1234567",
    "1000000000000",  # 13 digits before the point: more than 18 digits with 6 places
]
NOT_A_STRING = [None, 0, 1, -1.5, True, False, [], {}, ["a"], {"a": "b"}, Literal("1e308")]
BAD_VALUES: dict[str, list[Any]] = {
    "id": ["", "x" * 201, "x" * 10_001, *NOT_A_STRING],
    "reason": ["", "r" * 501, "r" * 10_001, *NOT_A_STRING],
    "currency": [
        "",
        "eur",
        "Eur",
        "EU",
        "EURO",
        "€UR",
        "ÄÖÜ",
        "EUR\n",
        " EUR",
        "E\x00R",
        "ＥＵＲ",  # noqa: RUF001 - full-width letters are the point
        *NOT_A_STRING,
    ],
    "money": [
        *NAN_AND_INFINITY,
        *HUGE_NUMBERS,
        None,
        True,
        [],
        {},
        "",
        "abc",
        "1,5",
        "0x10",
        "--1",
        "1..0",
        "1e",
        "e1",
    ],
    "quantity": [
        0,
        -1,
        1_000_001,
        Literal("1" + "0" * 400),
        Literal("1e308"),
        Literal("NaN"),
        Literal("Infinity"),
        Literal("-Infinity"),
        1.5,
        "abc",
        "",
        None,
        [],
        {},
    ],
    "items": [[], None, {}, "x", [None], [1], [[]], [{}]],
}
ROLES: dict[str, dict[str, str]] = {
    "orders.created": {
        "order_id": "id",
        "customer_id": "id",
        "items": "items",
        "currency": "currency",
        "total": "money",
    },
    "orders.cancelled": {"order_id": "id", "reason": "reason"},
    "payments.captured": {
        "payment_id": "id",
        "order_id": "id",
        "amount": "money",
        "currency": "currency",
    },
}
LINE_ROLES = {"sku": "id", "quantity": "quantity", "unit_price": "money"}


@st.composite
def invalid_payload(draw: st.DrawFn, channel: str) -> Payload:
    """A valid payload with one rule of the contract broken: the gateway must refuse it."""
    sent, _ = draw(valid_fields(channel))
    roles = ROLES[channel]
    kind = draw(
        st.sampled_from(
            [
                "bad value",
                "missing field",
                "unknown field",
                "repeated key, bad last",
                "not an object",
                "deep nesting in a field",
                "invalid utf-8 in a string",
                "truncated",
                "trailing garbage",
                "raw control character",
            ]
            + (
                ["bad line value", "bad line", "too many lines", "wrong total", "negative price"]
                if channel == "orders.created"
                else []
            )
            + (["zero or negative amount"] if channel == "payments.captured" else [])
        )
    )
    name = draw(st.sampled_from(sorted(roles)))
    fields = dict(sent)
    if kind == "bad value":
        bad = draw(st.sampled_from(BAD_VALUES[roles[name]]))
        fields[name] = bad
    elif kind == "missing field":
        del fields[name]
    elif kind == "unknown field":
        extra = draw(st.text(max_size=30).filter(lambda key: key not in roles))
        fields[extra] = draw(st.sampled_from([None, 1, "x", [], {}]))
    elif kind == "repeated key, bad last":
        pairs = shuffled(draw, fields)
        pairs.append((name, draw(st.sampled_from(BAD_VALUES[roles[name]]))))
        return Payload(dump(pairs).encode(), None, why=f"{kind}: {name}")
    elif kind == "not an object":
        top = draw(
            st.sampled_from(
                [[fields], [], "text", 0, Literal("1e308"), Literal("NaN"), None, True, False]
            )
        )
        return Payload(dump(top).encode(), None, why=kind)
    elif kind == "deep nesting in a field":
        depth = draw(st.sampled_from([1_000, 10_000, 100_000]))
        fields[name] = Literal("[" * depth + "]" * depth)
    elif kind == "invalid utf-8 in a string":
        text_field = next(key for key in ("order_id", "payment_id") if key in fields)
        fields[text_field] = "\ue000"  # a placeholder that becomes the bad bytes
        bad = draw(st.sampled_from([b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80"]))
        body = dump(shuffled(draw, fields)).encode().replace("\ue000".encode(), bad)
        return Payload(body, None, why=f"{kind}: {bad!r}")
    elif kind == "truncated":
        body = dump(shuffled(draw, fields)).encode()
        cut = draw(st.integers(0, len(body) - 1))
        return Payload(body[:cut], None, why=kind)
    elif kind == "trailing garbage":
        tail = draw(st.sampled_from([b"x", b"{}", b",", b"]", b"\x00", b"//", b"\xff"]))
        return Payload(dump(shuffled(draw, fields)).encode() + tail, None, why=kind)
    elif kind == "raw control character":
        text_field = next(key for key in ("order_id", "payment_id") if key in fields)
        control = draw(st.sampled_from([0, 1, 8, 10, 13, 27, 31]))
        fields[text_field] = "\ue000"
        body = dump(shuffled(draw, fields)).encode().replace(b"\xee\x80\x80", bytes([control]))
        return Payload(body, None, why=f"{kind}: {control}")
    elif kind == "bad line value":
        line_field = draw(st.sampled_from(sorted(LINE_ROLES)))
        bad = draw(st.sampled_from(BAD_VALUES[LINE_ROLES[line_field]]))
        fields["items"] = [{**fields["items"][0], line_field: bad}, *fields["items"][1:]]
        name = f"items.0.{line_field}"
    elif kind == "bad line":
        line = dict(fields["items"][0])
        if draw(st.booleans()):
            del line[draw(st.sampled_from(sorted(LINE_ROLES)))]
        else:
            line[draw(st.text(max_size=10).filter(lambda k: k not in LINE_ROLES))] = 1
        fields["items"] = [line, *fields["items"][1:]]
    elif kind == "too many lines":
        fields["items"] = [{"sku": "s", "quantity": 1, "unit_price": "0"}] * 1001
        fields["total"] = "0"
    elif kind == "wrong total":
        total = Decimal(str(last_wins(fields["total"])))
        delta = draw(st.sampled_from(["0.000001", "-0.000001", "1", "-1", "0.01"]))
        fields["total"] = str(total + Decimal(delta))
    elif kind == "negative price":
        fields["items"] = [{**fields["items"][0], "unit_price": "-0.01"}, *fields["items"][1:]]
    elif kind == "zero or negative amount":
        fields["amount"] = draw(
            st.sampled_from(["0", "0.000000", "-0", "-0.000001", "-1", Literal("0"), Literal("-1")])
        )
    body = dump(shuffled(draw, fields), ascii_only=draw(st.booleans())).encode()
    return Payload(body, None, why=f"{kind}: {name}")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=20,
)


@st.composite
def garbage_payload(draw: st.DrawFn, channel: str) -> Payload:
    """Bytes the contract has no word for; whatever the gateway says, it must say it cleanly."""
    kind = draw(
        st.sampled_from(
            [
                "random bytes",
                "random json",
                "random fields",
                "deep nesting",
                "empty",
                "byte order mark",
                "repeated key",
                "lax types",
            ]
        )
    )
    if kind == "random bytes":
        body = draw(st.binary(max_size=2000))
    elif kind == "random json":
        body = dump(draw(json_values), ascii_only=draw(st.booleans())).encode()
    elif kind == "random fields":
        keys = st.sampled_from([*ROLES[channel], "sku", "quantity", "unit_price", "x"])
        fields = draw(st.dictionaries(keys, json_values, max_size=6))
        body = dump(fields).encode()
    elif kind == "deep nesting":
        depth = draw(st.integers(1, 20_000))
        if draw(st.booleans()):
            body = b"[" * depth + b"]" * depth
        else:
            body = b'{"a":' * depth + b"1" + b"}" * depth
    elif kind == "empty":
        body = draw(st.sampled_from([b"", b" ", b"\n", b"\r\n\t ", b"\x00"]))
    elif kind == "byte order mark":
        sent, _ = draw(valid_fields(channel))
        body = b"\xef\xbb\xbf" + dump(sent).encode()
    elif kind == "repeated key":
        sent, _ = draw(valid_fields(channel))
        pairs = shuffled(draw, sent)
        key = draw(st.sampled_from(sorted(sent)))
        other, _ = draw(valid_fields(channel))
        pairs.insert(draw(st.integers(0, len(pairs))), (key, other[key]))
        body = dump(pairs).encode()
    else:  # numbers as strings, booleans as numbers, "1_000", Arabic-Indic digits: pydantic's lax mode takes some
        sent, _ = draw(valid_fields(channel))
        money_field = {"payments.captured": "amount", "orders.created": "total"}.get(channel)
        if money_field and draw(st.booleans()):
            sent[money_field] = draw(
                st.sampled_from([" 1", "1 ", "1_000", "\uff11", "\u0661", "+1", "1.", ".5"])
            )
        elif channel == "orders.created":
            quantity = draw(st.sampled_from([True, "1", "2", 1.0, Literal("1e0"), Literal("1.0")]))
            sent["items"] = [{**sent["items"][0], "quantity": quantity}]
            sent["total"] = "1e9"
        else:
            name = draw(st.sampled_from(sorted(sent)))
            sent[name] = draw(st.sampled_from([1, 1.5, True, "1", Literal("1e0")]))
        body = dump(sent).encode()
    return Payload(body, None, garbage=True, why=kind)


def payloads(channel: str) -> st.SearchStrategy[Payload]:
    return st.one_of(valid_payload(channel), invalid_payload(channel), garbage_payload(channel))


channels = st.sampled_from(sorted(DEFAULT_CATALOG))


# --------------------------------------------------------------------------------------------------
# AMQP field values written byte for byte: what other clients send and pamqp never would.


class Wire(bytes):
    """A field value already encoded (type octet and payload), written as it is."""


def long_string(data: bytes) -> Wire:
    return Wire(b"S" + struct.pack(">I", len(data)) + data)


def nested_tables(depth: int) -> Wire:
    value = long_string(b"leaf")
    for _ in range(depth):
        member = b"\x01n" + value
        value = Wire(b"F" + struct.pack(">I", len(member)) + member)
    return value


WIRE_VALUES = [
    long_string(b"\xff\xfe not utf-8"),  # pamqp decodes it to bytes
    long_string(b"\xc0\xaf"),
    Wire(
        b"d" + struct.pack(">d", 1e300)
    ),  # a double beyond a 32-bit float (pamqp writes floats as f)
    Wire(b"d" + struct.pack(">d", -1.7976931348623157e308)),
    Wire(b"d" + struct.pack(">d", 0.1)),
    Wire(
        b"D\x02" + struct.pack(">I", 4_000_000_000)
    ),  # unsigned mantissa beyond pamqp's signed range
    Wire(b"D\xff" + struct.pack(">I", 1)),
    Wire(b"x" + struct.pack(">I", 3) + b"\x00\xff\x80"),
    Wire(b"l" + struct.pack(">q", -(2**63))),
    Wire(b"T" + struct.pack(">Q", 0)),
    Wire(b"T" + struct.pack(">Q", 4_102_444_800_000)),  # milliseconds, as some clients send
    Wire(b"A" + struct.pack(">I", 0)),
    Wire(b"F" + struct.pack(">I", 0)),
]


@contextlib.contextmanager
def wire_values_encodable() -> Iterator[None]:
    """Let pamqp (the test's client) write `Wire` values and `Wire` short strings as they are."""
    table_value = pamqp.encode.encode_table_value
    short_string = pamqp.encode.METHODS["shortstr"]

    def encode_table_value(value: Any) -> bytes:
        return bytes(value) if isinstance(value, Wire) else table_value(value)

    def encode_short_string(value: Any) -> bytes:
        if isinstance(value, Wire):
            return bytes([len(value)]) + bytes(value)
        return short_string(value)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pamqp.encode, "encode_table_value", encode_table_value)
        patch.setitem(pamqp.encode.METHODS, "shortstr", encode_short_string)
        yield


short_strings = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=string.printable, min_size=200, max_size=255),
    st.text(min_size=1, max_size=85).filter(lambda s: len(s.encode()) <= 255),
)
header_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.decimals(min_value=-(2**31) + 1, max_value=2**31 - 1, places=0),
    st.decimals(min_value=-21474, max_value=21474, places=5),
    st.text(max_size=100),
    st.binary(max_size=50).map(bytearray),
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    st.sampled_from(WIRE_VALUES),
)
header_values = st.recursive(
    header_leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=20), children, max_size=4)
    ),
    max_leaves=12,
)
headers = st.one_of(
    st.none(),
    st.just({}),
    st.dictionaries(
        # at most 30 characters: pamqp truncates keys beyond 128 bytes
        st.one_of(st.text(min_size=1, max_size=30), st.just("x-breakwater-error")),
        header_values,
        max_size=6,
    ),
)
message_ids = st.one_of(
    st.none(),
    st.just(""),
    short_strings,
    st.sampled_from([Wire(b"\xff\xfe"), Wire(b"id-\x80")]),
)


@st.composite
def amqp_properties(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "message_id": draw(message_ids),
        "correlation_id": draw(message_ids),
        "content_type": draw(
            st.one_of(
                st.none(),
                st.sampled_from(
                    ["", "application/json", "text/plain", "application/octet-stream", "gzip"]
                ),
                short_strings,
            )
        ),
        "content_encoding": draw(
            st.one_of(st.none(), st.sampled_from(["gzip", "utf-8", ""]), short_strings)
        ),
        "headers": draw(headers),
        "type": draw(st.one_of(st.none(), short_strings)),
        "app_id": draw(st.one_of(st.none(), short_strings)),
        "reply_to": draw(st.one_of(st.none(), short_strings)),
        "priority": draw(st.one_of(st.none(), st.integers(0, 255))),
        "delivery_mode": draw(st.sampled_from([1, 2])),
        "timestamp": draw(
            st.one_of(
                st.none(),
                st.datetimes(
                    min_value=datetime(1970, 1, 2),
                    max_value=datetime(2100, 1, 1),
                    timezones=st.just(UTC),
                ),
            )
        ),
    }


# --------------------------------------------------------------------------------------------------
# The broker side: aio-pika on an event loop of its own, so that hypothesis' synchronous tests can
# publish and wait for what came out.


def ctl(*args: str) -> str:
    result = subprocess.run(
        [RABBITMQCTL, *args], check=True, capture_output=True, text=True, timeout=60
    )
    return result.stdout


@contextlib.contextmanager
def private_vhost() -> Iterator[str]:
    name = f"breakwater-hostile-{uuid.uuid4().hex[:8]}"
    ctl("add_vhost", name)
    try:
        ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        ctl("delete_vhost", name)


def inbound_depths(vhost: str) -> dict[str, tuple[int, int]]:
    """(ready, unacknowledged) of every inbound queue, as the broker reports them."""
    out = ctl("list_queues", "-q", "-p", vhost, "name", "messages_ready", "messages_unacknowledged")
    depths = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] in INBOUND_QUEUES:
            depths[parts[0]] = (int(parts[1]), int(parts[2]))
    return depths


@dataclass
class Outcome:
    kind: str  # "delivered" (on breakwater.events) or "dead" (on breakwater.dead-letter)
    message: AbstractIncomingMessage


@dataclass
class Broker:
    url: str
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self.loop.run_forever, name="amqp", daemon=True)
        self._thread.start()
        self.call(self._open())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _open(self) -> None:
        self.outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
        self.connection = await aio_pika.connect_robust(self.url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        events = await bind_queue(self.connection, "#")
        await events.consume(self._collect("delivered"), no_ack=True)
        dead_channel = await self.connection.channel()
        exchange = await dead_channel.declare_exchange(
            DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead = await dead_channel.declare_queue(DEAD_LETTER_QUEUE, durable=True)
        await dead.bind(exchange)
        await dead.purge()
        await dead.consume(self._collect("dead"), no_ack=True)

    def _collect(self, kind: str) -> Callable[[AbstractIncomingMessage], Coroutine[Any, Any, None]]:
        async def put(message: AbstractIncomingMessage) -> None:
            await self.outcomes.put(Outcome(kind, message))

        return put

    def publish(self, queue: str, message: aio_pika.Message) -> None:
        async def send() -> None:
            await self.channel.default_exchange.publish(message, routing_key=queue)

        self.call(send())

    def next_outcome(self, timeout: float = 10.0) -> Outcome:
        async def get() -> Outcome:
            return await asyncio.wait_for(self.outcomes.get(), timeout)

        try:
            return self.call(get(), timeout + 5)
        except TimeoutError:
            raise AssertionError(
                f"nothing was delivered or dead-lettered within {timeout} s"
            ) from None

    def assert_no_more_outcomes(self, wait: float = 0.5) -> None:
        time.sleep(wait)
        leftovers: list[Outcome] = []
        while not self.outcomes.empty():
            leftovers.append(self.outcomes.get_nowait())
        assert not leftovers, [
            (o.kind, o.message.message_id, o.message.body[:100]) for o in leftovers
        ]

    def declare_queue(self, queue: str) -> None:
        async def declare() -> None:
            await self.channel.declare_queue(queue, auto_delete=False, durable=False)

        self.call(declare())

    def queue_depth(self, queue: str) -> int:
        async def depth() -> int:
            channel = await self.connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
                return int(declared.declaration_result.message_count or 0)
            finally:
                await channel.close()

        return self.call(depth())

    def consumers(self, queue: str) -> int:
        async def count() -> int:
            channel = await self.connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
                result = declared.declaration_result
                assert result.message_count == 0, f"{queue}: {result.message_count} ready"
                return int(result.consumer_count or 0)
            finally:
                with contextlib.suppress(Exception):
                    await channel.close()

        return self.call(count())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self.connection.close(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@dataclass
class Rig:
    gateway: GatewayProcess
    broker: Broker
    vhost: str
    http: httpx.Client

    def post(self, channel: str, body: bytes, **kwargs: Any) -> httpx.Response:
        return self.http.post(f"/v1/events/{channel}", content=body, **kwargs)


def wait_until_consuming(gateway: GatewayProcess, broker: Broker, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if all(broker.consumers(queue) >= 1 for queue in INBOUND_QUEUES):
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gateway never consumed its inbound queues:\n{gateway.logs()}")
        time.sleep(0.2)


@contextlib.contextmanager
def running_rig(tmp: Path, **env: str) -> Iterator[Rig]:
    with private_vhost() as vhost, wire_values_encodable():
        url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        gateway = GatewayProcess(
            {
                "BREAKWATER_BROKER_URL": url,
                "BREAKWATER_STORE_PATH": str(tmp / "store.db"),
                "BREAKWATER_MAX_BODY_BYTES": str(BODY_LIMIT),
                # Hypothesis draws the same ids again and again (shrinking, small examples): with
                # the idempotency window on, a later example would be a repeat or a conflict of an
                # earlier one. Every example here is judged on its own; the window has its own
                # tests (test_idempotency.py).
                "BREAKWATER_IDEMPOTENCY_TTL_S": "0",
                **env,
            },
            tmp / "gateway.log",
        )
        broker: Broker | None = None
        try:
            gateway.start()
            broker = Broker(url)
            wait_until_consuming(gateway, broker)
            with httpx.Client(base_url=gateway.base_url, timeout=15.0) as http:
                yield Rig(gateway, broker, vhost, http)
        finally:
            if broker is not None:
                broker.close()
            gateway.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(tmp_path_factory.mktemp("hostile")) as rig:
        yield rig


def assert_gateway_unharmed(rig: Rig) -> None:
    """Alive, healthy, nothing left in or held from the inbound queues, no traceback logged."""
    assert rig.gateway.proc is not None
    assert rig.gateway.proc.poll() is None, rig.gateway.logs()
    assert rig.http.get("/healthz").status_code == 200
    ready = rig.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["broker_connected"] is True, ready.text
    deadline = time.monotonic() + 15
    while True:
        depths = inbound_depths(rig.vhost)
        if set(depths) == set(INBOUND_QUEUES) and all(d == (0, 0) for d in depths.values()):
            break
        assert time.monotonic() < deadline, f"inbound queues not drained: {depths}"
        time.sleep(0.5)
    for queue in INBOUND_QUEUES:
        assert rig.broker.consumers(queue) >= 1, f"nobody consumes {queue} any more"
    logs = rig.gateway.logs()
    assert "Traceback" not in logs, logs[-5000:]
    bad = [line for line in logs.splitlines() if " ERROR " in line or " CRITICAL " in line]
    assert not bad, bad


# --------------------------------------------------------------------------------------------------
# Checking answers.


def say(text: str, *, tally: str | None = None) -> None:
    """Hypothesis' `note` (and `event`, for --hypothesis-show-statistics), also outside hypothesis."""
    with contextlib.suppress(InvalidArgument):
        note(text)
        if tally is not None:
            event(tally)


def decimal_of(value: Any) -> Decimal:
    assert isinstance(value, str), f"money must be delivered as a decimal string: {value!r}"
    return Decimal(value)


def assert_delivered_as(body: bytes, channel: str, expected: dict[str, Any]) -> None:
    delivered = json.loads(body)
    assert set(delivered) == set(expected)
    for key, value in expected.items():
        if key in ("total", "amount"):
            assert decimal_of(delivered[key]) == value, key
        elif key == "items":
            assert len(delivered[key]) == len(value)
            for got, line in zip(delivered[key], value, strict=True):
                assert got["sku"] == line["sku"]
                assert got["quantity"] == line["quantity"]
                assert decimal_of(got["unit_price"]) == line["unit_price"]
        else:
            assert delivered[key] == value, key


def assert_reason(response: httpx.Response) -> None:
    assert response.content, f"{response.status_code} without a reason"
    with contextlib.suppress(ValueError):
        detail = response.json()["detail"]
        assert detail, response.text


def check_http_answer(rig: Rig, channel: str, payload: Payload, response: httpx.Response) -> None:
    say(
        f"{payload.why}: {payload.body[:300]!r} -> {response.status_code} {response.text[:500]}",
        tally=f"{payload.why.split(':')[0]} -> {response.status_code}",
    )
    assert response.status_code < 500, response.text
    if payload.expected is not None:
        assert response.status_code == 202, response.text
    elif not payload.garbage:
        assert response.status_code == 422, response.text
        assert isinstance(response.json()["detail"], list)
        assert response.json()["detail"]
    if response.status_code != 202:
        assert 400 <= response.status_code < 500
        assert_reason(response)
        return
    answer = response.json()
    assert answer["status"] in ("published", "stored")
    outcome = rig.broker.next_outcome()
    assert outcome.kind == "delivered"
    assert outcome.message.message_id == answer["message_id"]
    assert outcome.message.routing_key == channel
    if payload.expected is not None:
        assert_delivered_as(outcome.message.body, channel, payload.expected)
    else:
        # Garbage that was accepted: it must be what the channel's model makes of it, as sent.
        assert json.loads(outcome.message.body) == as_the_model_makes_it(channel, payload.body)


def as_the_model_makes_it(channel: str, body: bytes) -> Any:
    """The channel's model on `body`, read by the standard library with exact decimals (pydantic's
    own JSON reader takes numbers through float: `1.50` would come back as `1.5`); the gateway
    keeps every digit a number was sent with."""
    model = DEFAULT_CATALOG[channel].model
    try:
        parsed = json.loads(body, parse_float=Decimal)
    except ValueError:  # what only a laxer reader takes: pydantic's own
        return json.loads(model.model_validate_json(body).model_dump_json())
    return json.loads(model.model_validate(parsed).model_dump_json())


# --------------------------------------------------------------------------------------------------
# HTTP


@FUZZ
@given(data=st.data())
def test_http_bodies_are_answered_4xx_with_a_reason_or_accepted_and_delivered(
    rig: Rig, data: st.DataObject
) -> None:
    channel = data.draw(channels, label="channel")
    payload = data.draw(payloads(channel), label="payload")
    content_type = data.draw(
        st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"])
    )
    response = rig.post(channel, payload.body, headers={"Content-Type": content_type})
    check_http_answer(rig, channel, payload, response)


def test_http_hostile_bodies_named_in_the_brief(rig: Rig) -> None:
    """The classics, each at least once, whatever hypothesis draws."""
    payment = {"payment_id": "p", "order_id": "o", "currency": "EUR"}
    order_line = {"sku": "s", "quantity": 1, "unit_price": "1"}
    order = {"order_id": "o", "customer_id": "c", "currency": "EUR", "items": [order_line]}
    cases: list[tuple[str, bytes]] = [
        ("payments.captured", dump({**payment, "amount": Literal(literal)}).encode())
        for literal in ("NaN", "Infinity", "-Infinity", "1e308", "1" + "0" * 400, "9" * 50_000)
    ]
    cases += [
        ("payments.captured", dump({**payment, "amount": text}).encode())
        for text in ("NaN", "Infinity", "-Infinity", "sNaN", "1" + "0" * 100_000)
    ]
    cases += [
        ("orders.created", dump({**order, "total": Literal("NaN")}).encode()),
        ("orders.created", dump({**order, "total": "Infinity"}).encode()),
        (
            "orders.created",
            dump(
                {
                    **order,
                    "total": "1",
                    "items": [{**order_line, "quantity": Literal("1" + "0" * 400)}],
                }
            ).encode(),
        ),
        (
            "orders.created",
            dump({**order, "total": "1", "items": [{**order_line, "unit_price": "NaN"}]}).encode(),
        ),
        ("orders.cancelled", b"[" * 10_000 + b"]" * 10_000),
        ("orders.cancelled", b'{"order_id":' + b"[" * 10_000 + b"]" * 10_000 + b',"reason":"x"}'),
        ("orders.cancelled", b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
        ("orders.cancelled", b'{"order_id":"\xff\xfe","reason":"x"}'),
        ("orders.cancelled", b"\xff\xfe\x00{"),
        ("orders.cancelled", '{"order_id":"o","reason":"x"}'.encode("utf-16")),
        ("orders.cancelled", b""),
        ("orders.cancelled", b"null"),
        ("orders.cancelled", b"[]"),
        ("orders.cancelled", b'"text"'),
        ("orders.cancelled", b"1e308"),
        ("orders.cancelled", b'{"order_id":"o","reason":"x","unknown":1}'),
        ("orders.cancelled", b'{"order_id":"o","reason":"x","reason":""}'),
        ("orders.cancelled", b'{"order_id":"o\x00","reason":"x"}'),
        ("orders.cancelled", b'{"order_id":"' + b"o" * 1_000_000 + b'","reason":"x"}'),
        ("orders.cancelled", dump({"order_id": "o" * 10_001, "reason": "x"}).encode()),
    ]
    for channel, body in cases:
        if len(body) > BODY_LIMIT:
            response = rig.post(channel, body)
            assert response.status_code == 413, (body[:100], response.text)
            assert_reason(response)
            continue
        response = rig.post(channel, body)
        check_http_answer(rig, channel, Payload(body, why="named"), response)
        assert response.status_code == 422, (body[:100], response.text)
    rig.broker.assert_no_more_outcomes()


visible = st.integers(0x21, 0x7E)
obs_text = st.integers(0x80, 0xFF)
header_bytes = st.one_of(
    st.lists(visible, min_size=1, max_size=200).map(bytes),  # what the gateway takes as an id
    st.just(b""),
    st.integers(201, 400).map(lambda n: b"k" * n),
    st.lists(visible | obs_text | st.sampled_from([0x20, 0x09]), min_size=1, max_size=60)
    .map(lambda octets: bytes(octets).strip(b" \t"))
    .filter(bool),
    st.text(min_size=1, max_size=30)
    .map(str.encode)
    .filter(lambda b: all(0x21 <= c <= 0x7E or c >= 0x80 for c in b)),
)
header_names = st.text(
    alphabet=string.ascii_letters + string.digits + "!#$%&'*+.^_`|~-", min_size=1, max_size=40
).map(str.encode)


def is_printable_id(value: bytes | None) -> bool:
    return value is None or (0 < len(value) <= 200 and all(0x21 <= c <= 0x7E for c in value))


@FUZZ
@given(
    channel=channels,
    data=st.data(),
    key=st.none() | header_bytes,
    correlation=st.none() | header_bytes,
    content_type=st.none()
    | st.sampled_from(
        [
            b"application/json",
            b"application/json; charset=latin-1",
            b"text/plain",
            b"multipart/form-data; boundary=x",
            b"application/x-www-form-urlencoded",
            b"*/*",
            b"\xff\xfe",
        ]
    )
    | header_bytes,
    junk=st.dictionaries(
        header_names.filter(
            lambda name: (
                name.lower()
                not in (b"content-length", b"transfer-encoding", b"host", b"connection", b"expect")
            )
        ),
        header_bytes,
        max_size=4,
    ),
)
def test_http_headers_odd_ids_and_content_types(
    rig: Rig,
    channel: str,
    data: st.DataObject,
    key: bytes | None,
    correlation: bytes | None,
    content_type: bytes | None,
    junk: dict[bytes, bytes],
) -> None:
    payload = data.draw(valid_payload(channel), label="payload")
    sent: dict[bytes, bytes] = dict(junk)
    for name, value in (
        (b"idempotency-key", key),
        (b"x-correlation-id", correlation),
        (b"content-type", content_type),
    ):
        for other in [n for n in sent if n.lower() == name]:
            del sent[other]
        if value is not None:
            sent[name] = value
    response = rig.post(channel, payload.body, headers=list(sent.items()))
    note(f"{sent} -> {response.status_code} {response.text[:300]}")
    assert response.status_code < 500, response.text
    if is_printable_id(key) and is_printable_id(correlation):
        assert response.status_code == 202, response.text
    if response.status_code != 202:
        assert 400 <= response.status_code < 500
        assert_reason(response)
        return
    outcome = rig.broker.next_outcome()
    assert outcome.kind == "delivered"
    assert_delivered_as(outcome.message.body, channel, payload.expected or {})
    answer = response.json()
    assert outcome.message.message_id == answer["message_id"]
    if key is not None:
        assert answer["message_id"] == key.decode("latin-1")
    if correlation is not None:
        assert outcome.message.correlation_id == correlation.decode("latin-1")
    else:
        assert outcome.message.correlation_id


@FUZZ
@given(
    name=st.text(max_size=300).filter(lambda n: n not in DEFAULT_CATALOG and n not in (".", ".."))
)
def test_http_unknown_channels_get_404_and_do_not_grow_the_metrics(rig: Rig, name: str) -> None:
    path = "/v1/events/" + urllib.parse.quote(name, safe="")
    response = rig.http.post(path, content=b'{"order_id":"o","reason":"x"}')
    assert response.status_code == 404, response.text
    assert_reason(response)
    labels = set()
    for family in text_string_to_metric_families(rig.http.get("/metrics").text):
        for sample in family.samples:
            if "channel" in sample.labels:
                labels.add(sample.labels["channel"])
    assert labels <= {*DEFAULT_CATALOG, "unknown"}, labels - {*DEFAULT_CATALOG, "unknown"}


@pytest.mark.parametrize(
    "path", ["/v1/events/orders.created/", "/v1/events/unknown/", "/healthz/", "/v1/events//"]
)
def test_http_trailing_slash_is_not_redirected_to_the_host_the_client_named(
    rig: Rig, path: str
) -> None:
    """Starlette's default answers a path with a trailing slash with a 307 to an absolute URL built
    from the request's Host header, before any token check: a redirect to wherever the client (or
    whoever rewrote its Host) says. The ingress has exact routes; anything else is a 404."""
    response = rig.http.post(path, content=b"{}", headers={"Host": "evil.example"})
    assert response.status_code == 404, (response.status_code, response.headers)
    assert "location" not in response.headers
    assert_reason(response)


def chunks(body: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@settings(FUZZ, max_examples=25)
@given(
    channel=channels,
    data=st.data(),
    size=st.one_of(
        st.sampled_from([BODY_LIMIT - 1, BODY_LIMIT, BODY_LIMIT + 1, 2 * BODY_LIMIT]),
        st.integers(BODY_LIMIT - 1000, 3 * BODY_LIMIT),
    ),
    chunked=st.booleans(),
)
def test_http_bodies_around_the_size_limit(
    rig: Rig, channel: str, data: st.DataObject, size: int, chunked: bool
) -> None:
    """A valid payload padded with whitespace to `size` bytes: accepted up to the limit, 413 above,
    sent with a Content-Length or chunked; the 413 is a response the client reads."""
    payload = data.draw(valid_payload(channel), label="payload")
    body = payload.body + b" " * (size - len(payload.body))
    assert len(body) == size
    content: bytes | Iterator[bytes] = chunks(body, 16 * 1024) if chunked else body
    with httpx.Client(base_url=rig.gateway.base_url, timeout=15.0) as client:
        response = client.post(f"/v1/events/{channel}", content=content)
    if size > BODY_LIMIT:
        assert response.status_code == 413, response.text
        assert str(BODY_LIMIT) in response.json()["detail"]
        return
    assert response.status_code == 202, response.text
    outcome = rig.broker.next_outcome()
    assert outcome.message.message_id == response.json()["message_id"]
    assert_delivered_as(outcome.message.body, channel, payload.expected or {})


def raw_exchange(rig: Rig, request: bytes, timeout: float = 10.0) -> bytes:
    """Send `request` as it is, half-close, and read everything until the server closes."""
    with socket.create_connection(("127.0.0.1", rig.gateway.port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    return received


def statuses(received: bytes) -> list[int]:
    return [
        int(line.split(b" ")[1])
        for line in received.split(b"\r\n")
        if line.startswith(b"HTTP/1.")
        and len(line.split(b" ")) > 1
        and line.split(b" ")[1].isdigit()
    ]


RAW_REQUESTS = [
    # a chunked body whose chunk sizes lie
    b"POST /v1/events/orders.cancelled HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\n{}\r\n0\r\n\r\n",
    b"POST /v1/events/orders.cancelled HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"ffffffffffffffffffff\r\n{}",
    # Content-Length and chunked at once; a negative and a 40-digit Content-Length
    b"POST /v1/events/orders.cancelled HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 3\r\n\r\n0\r\n\r\n",
    b"POST /v1/events/orders.cancelled HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}",
    b"POST /v1/events/orders.cancelled HTTP/1.1\r\nHost: x\r\nContent-Length: "
    + b"9" * 40
    + b"\r\n\r\n{}",
    # a body shorter than announced, then the client goes away
    b"POST /v1/events/orders.cancelled HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{",
    # a body longer than announced: the rest is garbage as the next request
    b"POST /v1/events/orders.cancelled HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}garbage",
    # control characters and NUL in headers, obsolete line folding, a header without a colon
    b"POST /v1/events/orders.cancelled HTTP/1.1\r\nHost: x\r\nIdempotency-Key: a\x00b\r\n\r\n",
    b"POST /v1/events/orders.cancelled HTTP/1.1\r\nHost: x\r\nX-Correlation-Id: a\x01b\r\n\r\n",
    b"POST /v1/events/orders.cancelled HTTP/1.1\r\nHost: x\r\nIdempotency-Key: a\r\n b\r\n\r\n",
    b"POST /v1/events/orders.cancelled HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    # a 100 KB header and a 100 KB request target
    b"POST /v1/events/orders.cancelled HTTP/1.1\r\nHost: x\r\nIdempotency-Key: "
    + b"k" * 100_000
    + b"\r\n\r\n",
    b"POST /v1/events/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    # not HTTP at all
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
    b"GET / HTTP/9.9\r\n\r\n",
    b"\r\n\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", RAW_REQUESTS, ids=range(len(RAW_REQUESTS)))
def test_http_protocol_garbage_gets_4xx_or_a_close_never_5xx(
    rig: Rig, request_bytes: bytes
) -> None:
    received = raw_exchange(rig, request_bytes)
    assert all(status < 500 for status in statuses(received)), received[:2000]


@FUZZ
@given(
    head=st.binary(max_size=300),
    prefix=st.sampled_from(
        [
            b"",
            b"POST /v1/events/orders.cancelled HTTP/1.1\r\n",
            b"POST /v1/events/orders.cancelled HTTP/1.1\r\nHost: x\r\n",
        ]
    ),
)
def test_http_random_request_bytes_never_get_a_5xx(rig: Rig, head: bytes, prefix: bytes) -> None:
    received = raw_exchange(rig, prefix + head + b"\r\n\r\n")
    assert all(status < 500 for status in statuses(received)), received[:2000]


def test_http_gateway_is_unharmed(rig: Rig) -> None:
    rig.broker.assert_no_more_outcomes()
    assert_gateway_unharmed(rig)


# --------------------------------------------------------------------------------------------------
# AMQP


def build_message(body: bytes, properties: dict[str, Any]) -> aio_pika.Message:
    return aio_pika.Message(body, **{k: v for k, v in properties.items() if v is not None})


def check_amqp_outcome(
    rig: Rig, channel: str, payload: Payload, properties: dict[str, Any]
) -> Outcome:
    outcome = rig.broker.next_outcome()
    message = outcome.message
    say(
        f"{payload.why}: {payload.body[:200]!r} {properties} -> {outcome.kind} {message.headers}",
        tally=f"{payload.why.split(':')[0]} -> {outcome.kind}",
    )
    sent_id, sent_correlation = properties["message_id"], properties["correlation_id"]
    if payload.expected is not None:
        assert outcome.kind == "delivered", message.headers
    elif not payload.garbage:
        assert outcome.kind == "dead", message.body
    if outcome.kind == "delivered":
        assert message.routing_key == channel
        assert message.headers.get("x-breakwater-path") == "direct"
        if payload.expected is not None:
            assert_delivered_as(message.body, channel, payload.expected)
        else:
            assert json.loads(message.body) == as_the_model_makes_it(channel, payload.body)
    else:
        reason = message.headers.get("x-breakwater-error")
        assert isinstance(reason, str), message.headers
        assert reason.strip(), message.headers
        assert message.headers.get("x-breakwater-queue") == DEFAULT_CATALOG[channel].inbound_queue
        assert message.body == payload.body
        assert set(properties["headers"] or {}) <= set(message.headers)
    # Ids given as (decodable) text are kept; absent or empty ones are generated.
    for sent, got in ((sent_id, message.message_id), (sent_correlation, message.correlation_id)):
        if isinstance(sent, str) and not isinstance(sent, Wire) and sent:
            assert got == sent
        elif outcome.kind == "delivered":
            assert got
    return outcome


@FUZZ_NO_SHRINK
@given(data=st.data())
def test_amqp_messages_are_forwarded_or_dead_lettered_with_a_reason(
    rig: Rig, data: st.DataObject
) -> None:
    channel = data.draw(channels, label="channel")
    payload = data.draw(payloads(channel), label="payload")
    properties = data.draw(amqp_properties(), label="properties")
    rig.broker.publish(
        DEFAULT_CATALOG[channel].inbound_queue, build_message(payload.body, properties)
    )
    check_amqp_outcome(rig, channel, payload, properties)


@pytest.mark.parametrize(
    "value",
    [
        long_string(b"\xff\xfe not utf-8"),
        Wire(b"d" + struct.pack(">d", 1e300)),
        Wire(b"D\x02" + struct.pack(">I", 4_000_000_000)),
        [long_string(b"\x80"), {"inner": Wire(b"d" + struct.pack(">d", -1e200))}],
    ],
    ids=["non-utf8-long-string", "double-beyond-float32", "unsigned-decimal", "nested"],
)
def test_amqp_invalid_message_with_headers_pamqp_cannot_rewrite_is_dead_lettered(
    rig: Rig, value: Any
) -> None:
    """Headers as other clients (Java, pika, .NET) write them: a long string that is not UTF-8, a
    64-bit double. pamqp reads them (as bytes, as a float) but cannot write them back as they were;
    the dead-letter copy must still go out instead of being requeued every second forever."""
    properties = {
        "message_id": f"poison-{uuid.uuid4().hex}",
        "correlation_id": None,
        "headers": {"odd": value, "plain": "kept"},
    }
    payload = Payload(b"not json", None, why="odd headers")
    rig.broker.publish("breakwater.in.orders.cancelled", build_message(payload.body, properties))
    outcome = check_amqp_outcome(rig, "orders.cancelled", payload, properties)
    assert outcome.message.headers["plain"] == "kept"
    assert "odd" in outcome.message.headers


def test_amqp_reply_to_does_not_make_the_gateway_publish_anywhere(rig: Rig) -> None:
    """`reply_to` on an inbound message must not turn the gateway into a publisher for whoever can
    reach its inbound queues: by default FastStream answers every consumed message with the
    handler's result (an empty message) to the queue named by `reply_to`, through the default
    exchange, with the gateway's own permissions, into any queue of the inbound broker (which by
    default is also the broker the consumers read from), unvalidated."""
    target = f"hostile.reply-target.{uuid.uuid4().hex}"
    rig.broker.declare_queue(target)
    valid = dump(DEFAULT_CATALOG["orders.cancelled"].example).encode()
    for body, kind in ((valid, "delivered"), (b"not json", "dead")):
        properties = {"message_id": uuid.uuid4().hex, "correlation_id": None, "headers": None}
        message = build_message(body, {**properties, "reply_to": target})
        rig.broker.publish("breakwater.in.orders.cancelled", message)
        assert rig.broker.next_outcome().kind == kind
    rig.broker.assert_no_more_outcomes(wait=1.0)
    assert rig.broker.queue_depth(target) == 0, (
        "the gateway replied into a queue of the producer's choosing"
    )


def test_amqp_big_and_empty_bodies(rig: Rig) -> None:
    for body in (b"", b" ", b"\x00" * 1000, os.urandom(2 * 1024 * 1024), b"[" * 1_000_000):
        properties = {"message_id": uuid.uuid4().hex, "correlation_id": None, "headers": None}
        payload = Payload(body, None, why=f"{len(body)} bytes")
        rig.broker.publish("breakwater.in.payments.captured", build_message(body, properties))
        check_amqp_outcome(rig, "payments.captured", payload, properties)


def test_amqp_gateway_is_unharmed(rig: Rig) -> None:
    rig.broker.assert_no_more_outcomes()
    assert_gateway_unharmed(rig)


# --------------------------------------------------------------------------------------------------
# Bugs found here and fixed: each test keeps its bug fixed.


def test_money_as_json_numbers_keeps_every_digit(rig: Rig) -> None:
    payment = b'{"payment_id":"p","order_id":"o","amount":123456789012.123456,"currency":"EUR"}'
    response = rig.post("payments.captured", payment)
    assert response.status_code == 202, response.text
    delivered = json.loads(rig.broker.next_outcome().message.body)
    assert Decimal(delivered["amount"]) == Decimal("123456789012.123456")
    order = (
        b'{"order_id":"o","customer_id":"c","currency":"EUR","total":"370370367036.370368",'
        b'"items":[{"sku":"s","quantity":3,"unit_price":123456789012.123456}]}'
    )
    response = rig.post("orders.created", order)
    assert response.status_code == 202, response.text
    rig.broker.next_outcome()


@pytest.mark.parametrize(
    "value",
    [nested_tables(2000), Wire(b"T" + struct.pack(">Q", 2**64 - 1))],
    ids=["table-nested-2000-deep", "timestamp-beyond-datetime"],
)
def test_amqp_headers_the_client_library_cannot_decode_do_not_stall_ingress(
    tmp_path: Path, value: Wire
) -> None:
    with running_rig(tmp_path) as rig:
        properties = {
            "message_id": uuid.uuid4().hex,
            "correlation_id": None,
            "headers": {"h": value},
        }
        rig.broker.publish("breakwater.in.orders.cancelled", build_message(b"not json", properties))
        outcome = rig.broker.next_outcome(timeout=5.0)
        assert outcome.kind == "dead"
        assert "cannot be decoded" in outcome.message.headers["x-breakwater-error"]
        # Ingress goes on: the next message is forwarded.
        valid = {**properties, "message_id": uuid.uuid4().hex, "headers": None}
        body = b'{"order_id":"o-1","reason":"after the poison"}'
        rig.broker.publish("breakwater.in.orders.cancelled", build_message(body, valid))
        assert rig.broker.next_outcome(timeout=5.0).kind == "delivered"
