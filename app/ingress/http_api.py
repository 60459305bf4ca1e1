"""HTTP ingress (`POST /v1/events/{channel}`) and the health endpoints, as a Starlette app.

It is mounted behind FastStream's ASGI app, which serves the AsyncAPI page itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..catalog import Catalog, Channel, InvalidPayload
from ..cloudevents import http as cloudevents_http
from ..cloudevents.attributes import Attributes, InvalidCloudEvent
from ..cloudevents.stamping import NO_CLOUDEVENTS, Stamper
from ..events import ID_PATTERN, Event, Headers, new_id
from ..operations.status_page import StatusSnapshot, render
from ..outbound.connection import Unroutable
from ..outbound.publisher import Outcome
from ..settings import Settings
from ..store.fallback import StoreError
from ..tracing.context import producer_context
from . import batch
from .idempotency import IdempotentPublisher, KeyConflict, KeyInFlight
from .refusals import Refusal, refusal

log = logging.getLogger("breakwater.http")

# Set on a 202 that answers a repeat of an earlier request's Idempotency-Key (nothing was published).
REPLAYED_HEADER = "Idempotent-Replayed"
# The status page has no scripts and only inline styles; forbid everything else.
_STATUS_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


class BodyTooLarge(Exception):
    def __init__(self, *, unread: bool) -> None:
        super().__init__("body too large")
        self.unread = unread  # the client is (or may be) still sending the rest


def _error(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _retry_after(refused: Refusal) -> dict[str, str] | None:
    return None if refused.retry_after_s is None else {"Retry-After": str(refused.retry_after_s)}


async def _routing_error(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (404 no such path, 405 with `Allow`) in the body every other error
    has, `{"detail": ...}`, instead of plain text: the OpenAPI document promises one error body."""
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, exc.detail, dict(exc.headers or {}))


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The body, or BodyTooLarge as soon as it passes `limit` (nothing more is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(unread=int(declared) > 0)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(unread=more)
        chunks.append(chunk)
        if not more:
            return b"".join(chunks)


# A lingering close, as nginx does it: after a 413 the rest of the upload is read and dropped
# before the connection is closed. Closing with unread bytes makes the kernel send a reset, and a
# client that writes its whole body before it reads (Python's urllib, many SDKs) then sees
# "connection reset" instead of the answer. Bounded, so a slow sender cannot hold the connection.
LINGER_MAX_BYTES = 64 * 1024 * 1024
LINGER_MAX_S = 5.0


class LingeringResponse(JSONResponse):
    """The answer first (a client that reads while it writes has it at once), then the unread
    upload is drained, bounded in bytes and time, then the response ends and the server closes."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        drained = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINGER_MAX_S):
                while drained < LINGER_MAX_BYTES:
                    message = await receive()
                    drained += len(message.get("body", b""))
                    if message["type"] != "http.request" or not message.get("more_body"):
                        break
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class HttpApi:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        publisher: IdempotentPublisher,
        readiness: Callable[[], tuple[bool, dict[str, Any]]],
        registry: CollectorRegistry,
        *,
        status: Callable[[], StatusSnapshot],
        stamper: Stamper = NO_CLOUDEVENTS,
    ) -> None:
        self._registry = registry
        self._stamper = stamper
        self._status = status
        self._settings = settings
        self._catalog = catalog
        self._publisher = publisher
        self._readiness = readiness
        self._tokens = [t.get_secret_value().encode() for t in settings.api_tokens]
        self.on_accepted: Callable[[str, Outcome], None] = lambda channel, outcome: None
        self.on_rejected: Callable[[str, str], None] = lambda channel, reason: None
        self.on_deprecated: Callable[[str], None] = lambda channel: None
        self.on_repeat: Callable[[str, str], None] = lambda channel, ingress: None
        # The trace context an event takes from its request's headers (app/tracing).
        self.trace_context: Callable[[Mapping[str, Any]], Headers] = producer_context
        self.app = Starlette(
            routes=[
                Route("/v1/events/{channel}", self.post_event, methods=["POST"]),
                Route("/v1/events/{channel}/batch", self.post_batch, methods=["POST"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/readyz", self.readyz, methods=["GET"]),
                Route("/metrics", self.metrics, methods=["GET"]),
                Route("/", self.status_page, methods=["GET"]),
            ],
            exception_handlers={HTTPException: _routing_error},
        )
        # Starlette would answer `/v1/events/x/` with a 307 to an absolute URL built from the
        # request's Host header, before the token check. The routes are exact; the rest is a 404.
        self.app.router.redirect_slashes = False

    def _authorized(self, request: Request) -> bool:
        if not self._tokens:
            return True
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        candidate = presented.strip().encode()
        # Compare against every token so the time taken does not tell which one nearly matched.
        matches = [hmac.compare_digest(candidate, token) for token in self._tokens]
        return any(matches)

    async def _channel_and_body(self, request: Request) -> tuple[Channel, bytes] | Response:
        """The request's channel and body, or the answer when it has neither (401, 404, 413)."""
        name = request.path_params["channel"]
        if not self._authorized(request):
            self.on_rejected(name, "unauthorized")
            return _error(401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})
        channel = self._catalog.get(name)
        if channel is None:
            self.on_rejected(name, "unknown_channel")
            return _error(404, f"unknown channel {name!r}; known channels: {sorted(self._catalog)}")
        try:
            body = await read_limited_body(request, self._settings.max_body_bytes)
        except BodyTooLarge as exc:
            self.on_rejected(name, "too_large")
            detail = {"detail": f"body larger than {self._settings.max_body_bytes} bytes"}
            # A client that sent `Expect: 100-continue` sends no body until told to: nothing to
            # drain (reading now would invite the upload).
            expects = request.headers.get("expect", "").lower() == "100-continue"
            if exc.unread and not expects:
                return LingeringResponse(detail, 413, {"Connection": "close"})
            return JSONResponse(detail, 413, {"Connection": "close"})
        except ClientDisconnect:
            return Response(status_code=400)
        return channel, body

    async def _open(
        self, request: Request
    ) -> tuple[Channel, bytes, dict[str, str | None]] | Response:
        """Channel, body and id headers of an event request, or the answer when one is wrong."""
        opened = await self._channel_and_body(request)
        if isinstance(opened, Response):
            return opened
        channel, body = opened
        ids = self._id_headers(request, channel.name)
        if isinstance(ids, Response):
            return ids
        return channel, body, ids

    def _id_headers(self, request: Request, name: str) -> dict[str, str | None] | Response:
        """`message_id` and `correlation_id` from their headers (None when absent), or the 422."""
        ids: dict[str, str | None] = {}
        for header, field in (
            ("idempotency-key", "message_id"),
            ("x-correlation-id", "correlation_id"),
        ):
            value = request.headers.get(header)
            if value is not None and not ID_PATTERN.match(value):
                self.on_rejected(name, "invalid_header")
                return _error(422, f"{header} must be 1-200 printable ASCII characters")
            ids[field] = value
        return ids

    async def post_event(self, request: Request) -> Response:
        opened = await self._open(request)
        if isinstance(opened, Response):
            return opened
        channel, body, ids = opened
        name = channel.name
        validated = self._validated(request, channel, body, ids)
        if isinstance(validated, Response):
            return validated
        normalised, sent = validated
        event = Event.accept(name, normalised, headers=self.trace_context(request.headers), **ids)
        if self._stamper.applies_to(name):
            event = self._stamper.stamp(event, sent)
        try:
            accepted = await self._publisher.submit(event, keyed=ids["message_id"] is not None)
        except (KeyConflict, KeyInFlight, StoreError, Unroutable) as exc:
            refused = refusal(exc)
            self.on_rejected(name, refused.reason)
            return _error(refused.status, refused.detail, _retry_after(refused))
        headers: dict[str, str] = {}
        if accepted.repeat:
            self.on_repeat(name, "http")
            headers[REPLAYED_HEADER] = "true"
        else:
            self.on_accepted(name, accepted.outcome)
        if channel.deprecated:
            # RFC 9745: the channel still works; the producer's tooling can see it is going away.
            self.on_deprecated(name)
            headers["Deprecation"] = "true"
        return JSONResponse(
            {"message_id": event.message_id, "status": accepted.outcome.value},
            status_code=202,
            headers=headers,
        )

    def _validated(
        self, request: Request, channel: Channel, body: bytes, ids: dict[str, str | None]
    ) -> tuple[bytes, Attributes | None] | Response:
        """The normalised payload, and the attributes of a CloudEvent (whose `id` becomes the
        `message_id` in `ids`); or the 422."""
        try:
            received = None
            if self._stamper.applies_to(channel.name):
                received = cloudevents_http.read(
                    request.headers.items(), request.headers.get("content-type"), body, channel
                )
            if received is None:
                return channel.payload.validate(body), None
        except InvalidPayload as exc:
            self.on_rejected(channel.name, "invalid_payload")
            return _error(422, exc.errors)
        except InvalidCloudEvent as exc:
            self.on_rejected(channel.name, "invalid_cloudevent")
            return _error(422, str(exc))
        key, event_id = ids["message_id"], received.attributes.id
        if key is not None and key != event_id:
            self.on_rejected(channel.name, "invalid_cloudevent")
            return _error(
                422,
                f"idempotency-key {key!r} and the CloudEvent's id {event_id!r} differ: both name"
                " the event (its message_id); send one of them, or the same in both",
            )
        ids["message_id"] = event_id  # the idempotency key, as an Idempotency-Key would be
        return received.body, received.attributes

    async def post_batch(self, request: Request) -> Response:
        """Many events of one channel (app/ingress/batch.py): each validated and answered on its own."""
        opened = await self._open(request)
        if isinstance(opened, Response):
            return opened
        channel, body, ids = opened
        name = channel.name
        stamping = self._stamper.applies_to(name)
        if stamping:
            refused = cloudevents_http.batch_refusal(
                request.headers.items(), request.headers.get("content-type")
            )
            if refused is not None:
                self.on_rejected(name, "invalid_batch")
                return _error(422, refused)
        atomic = request.query_params.get("atomic", "false").lower()
        if atomic not in ("true", "false"):
            self.on_rejected(name, "invalid_batch")
            return _error(422, "atomic must be true or false")
        try:
            payloads = batch.read_payloads(
                body,
                ndjson=batch.is_ndjson(request.headers.get("content-type")),
                limit=self._settings.max_batch_events,
            )
        except batch.BatchRefused as exc:
            self.on_rejected(name, "invalid_batch")
            return _error(422, str(exc))
        key_base = ids["message_id"]
        if key_base is not None and len(key_base) > batch.longest_key_base(len(payloads)):
            self.on_rejected(name, "invalid_header")
            longest = batch.longest_key_base(len(payloads))
            return _error(
                422,
                f"idempotency-key of a batch of {len(payloads)} events may have at most"
                f" {longest} characters (each event's key is <key>:<index>)",
            )
        outcomes = batch.validate(
            channel,
            payloads,
            key_base=key_base,
            correlation_id=ids["correlation_id"] or new_id(),
            headers=self.trace_context(request.headers),
        )
        if stamping:
            for index, event in outcomes.events.items():
                outcomes.events[index] = self._stamper.stamp(event)
        if atomic == "true":
            if key_base is not None:
                batch.check_keys(self._publisher, outcomes)
            if outcomes.refusals():
                return self._batch_refused(name, outcomes, atomic=True)
        await batch.submit(self._publisher, outcomes, keyed=key_base is not None)
        return self._batch_answer(channel, outcomes)

    def _batch_answer(self, channel: Channel, outcomes: batch.Outcomes) -> Response:
        accepted = outcomes.accepted
        if not accepted:
            return self._batch_refused(channel.name, outcomes, atomic=False)
        repeats = 0
        for answer in outcomes.answers.values():
            if isinstance(answer, Refusal):
                self.on_rejected(channel.name, answer.reason)
            elif answer.repeat:
                repeats += 1
                self.on_repeat(channel.name, "http")
            else:
                self.on_accepted(channel.name, answer.outcome)
        headers: dict[str, str] = {}
        if repeats == len(outcomes.answers):
            headers[REPLAYED_HEADER] = "true"  # the whole batch repeats an accepted one
        if channel.deprecated:
            for _ in range(accepted - repeats):
                self.on_deprecated(channel.name)
            headers["Deprecation"] = "true"
        return JSONResponse(
            {
                "accepted": accepted,
                "rejected": outcomes.size - accepted,
                "results": outcomes.results(),
            },
            status_code=202,
            headers=headers,
        )

    def _batch_refused(self, name: str, outcomes: batch.Outcomes, *, atomic: bool) -> Response:
        """No event of the batch was accepted. The status is the one a retry should follow:
        without atomic, 503 (retry later), 409, 502, then 422; atomic, refused at the door, 422
        (invalid events or a key conflict), then 409. Invalid events' errors are the `detail`,
        each located in the batch (`/3/quantity`)."""
        refusals = outcomes.refusals()
        for refused in refusals:
            self.on_rejected(name, refused.reason)
        for _ in range(outcomes.size - len(refusals)):
            self.on_rejected(name, "atomic_batch_refused")  # valid, but not accepted alone
        order = (422, 409) if atomic else (503, 409, 502, 422)
        status = next(s for s in order if any(r.status == s for r in refusals))
        first = next(r for r in refusals if r.status == status)
        errors = outcomes.batch_errors()
        detail: Any = (
            errors
            if status == 422 and errors
            else f"no event of the batch was accepted: {first.detail}"
        )
        body = {
            "detail": detail,
            "accepted": 0,
            "rejected": outcomes.size,
            "results": outcomes.results(),
        }
        return JSONResponse(body, status_code=status, headers=_retry_after(first))

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)

    async def status_page(self, request: Request) -> Response:
        return HTMLResponse(render(self._status()), headers=_STATUS_PAGE_HEADERS)

    async def readyz(self, request: Request) -> Response:
        ready, body = self._readiness()
        return JSONResponse(body, status_code=200 if ready else 503)
