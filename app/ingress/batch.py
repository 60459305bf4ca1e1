"""Batch ingress: many events of one channel in one request (`POST /v1/events/{channel}/batch`).

The body is a JSON array of payloads, or NDJSON (one payload per line, with an NDJSON content
type). Each event is validated on its own and answered on its own, in array order: its
`message_id` and `published`/`stored`, or its error with the status a single request would have
had. Valid events are accepted even when others in the batch are not; `?atomic=true` asks for
all-or-nothing at the door: one invalid event, or one key already used for another event or still
in flight, and no event is accepted.

Order inside a batch is the array order: the events enter the publisher one after the other
without a pause between them, so published ones are pipelined in that order and stored ones are
queued for the same group commit. An `Idempotency-Key: <base>` header gives event `i` the key
`<base>:<i>`: retrying the batch with the same base repeats each event, not a second copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ..catalog import Channel, InvalidPayload
from ..catalog.model import NotJson, load_json
from ..catalog.payload import pointer
from ..events import Event, Headers
from .idempotency import Accepted, IdempotentPublisher, KeyConflict, KeyInFlight
from .refusals import Refusal, refusal

# What producers send NDJSON as (`application/x-ndjson` is the common one; JSON Lines' names too).
NDJSON_TYPES: Final = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)
KEY_SEPARATOR: Final = ":"


class BatchRefused(Exception):
    """The request as a whole is not a batch the gateway takes (422 with this sentence)."""


def is_ndjson(content_type: str | None) -> bool:
    return (content_type or "").partition(";")[0].strip().lower() in NDJSON_TYPES


def read_payloads(body: bytes, *, ndjson: bool, limit: int) -> list[Any | NotJson]:
    """The batch's payloads as JSON values, in order; an NDJSON line that is not JSON is its
    NotJson (that event's error, not the batch's). Raises BatchRefused for the whole request."""
    if ndjson:
        lines = [line for line in body.split(b"\n") if line.strip()]
        _check_count(len(lines), limit)
        payloads: list[Any | NotJson] = []
        for line in lines:
            try:
                payloads.append(load_json(line))
            except NotJson as exc:
                payloads.append(exc)
        return payloads
    try:
        data = load_json(body)
    except NotJson as exc:
        raise BatchRefused(f"the body is not JSON: {exc}") from None
    if not isinstance(data, list):
        raise BatchRefused(
            "a batch is a JSON array of the channel's payloads (or NDJSON, one payload per line,"
            " with Content-Type: application/x-ndjson)"
        )
    _check_count(len(data), limit)
    return data


def _check_count(count: int, limit: int) -> None:
    if count == 0:
        raise BatchRefused("the batch has no events")
    if count > limit:
        raise BatchRefused(
            f"the batch has {count} events; at most {limit} are taken in one request"
            " (BREAKWATER_MAX_BATCH_EVENTS): split it"
        )


def key_of(base: str, index: int) -> str:
    return f"{base}{KEY_SEPARATOR}{index}"


def longest_key_base(count: int) -> int:
    """How long an `Idempotency-Key` base may be for `count` events: every event's key, base,
    separator and index, stays within the 200 characters of a `message_id`."""
    return 200 - len(KEY_SEPARATOR) - len(str(count - 1))


@dataclass(slots=True)
class Outcomes:
    """Each event's answer, by index: an `Accepted` with its event, or a `Refusal`."""

    size: int = 0  # events in the batch
    events: dict[int, Event] = field(default_factory=dict)
    answers: dict[int, Accepted | Refusal] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return sum(isinstance(answer, Accepted) for answer in self.answers.values())

    def refusals(self) -> list[Refusal]:
        return [answer for answer in self.answers.values() if isinstance(answer, Refusal)]

    def results(self) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for index in range(self.size):
            answer = self.answers.get(index)
            if answer is None:  # valid, but an atomic batch was refused for the others
                results.append({"index": index, "status": "not_accepted"})
            elif isinstance(answer, Refusal):
                results.append({"index": index, "status": "rejected", "error": answer.as_json()})
            else:
                results.append(self._accepted(index, answer))
        return results

    def _accepted(self, index: int, answer: Accepted) -> dict[str, Any]:
        result: dict[str, Any] = {
            "index": index,
            "message_id": self.events[index].message_id,
            "status": answer.outcome.value,
        }
        if answer.repeat:
            result["repeated"] = True
        return result

    def batch_errors(self) -> list[dict[str, Any]]:
        """Every invalid event's errors, each located in the batch: `loc` starts with the event's
        index and `pointer` points into the array (`/3/quantity`)."""
        errors: list[dict[str, Any]] = []
        for index in sorted(self.answers):
            answer = self.answers[index]
            if isinstance(answer, Refusal) and isinstance(answer.detail, list):
                for error in answer.detail:
                    loc = [index, *error["loc"]]
                    errors.append({**error, "loc": loc, "pointer": pointer(loc)})
        return errors


def validate(
    channel: Channel,
    payloads: Sequence[Any | NotJson],
    *,
    key_base: str | None,
    correlation_id: str,
    headers: Headers = (),
) -> Outcomes:
    """Validate each payload on its own: an Event for each valid one, a 422 for each other.
    Every event carries the same extra `headers` (the request's trace context)."""
    outcomes = Outcomes(size=len(payloads))
    for index, payload in enumerate(payloads):
        try:
            if isinstance(payload, NotJson):
                error = {"type": "json_invalid", "loc": [], "msg": f"Invalid JSON: {payload}"}
                raise InvalidPayload([{**error, "pointer": ""}])
            body = channel.payload.validate_data(payload)
        except InvalidPayload as exc:
            outcomes.answers[index] = Refusal(422, "invalid_payload", exc.errors)
            continue
        key = key_of(key_base, index) if key_base is not None else None
        outcomes.events[index] = Event.accept(
            channel.name, body, message_id=key, correlation_id=correlation_id, headers=headers
        )
    return outcomes


def check_keys(publisher: IdempotentPublisher, outcomes: Outcomes) -> None:
    """For an atomic batch: each keyed event's conflict or in-flight repeat, found before any
    event is submitted, becomes its refusal."""
    for index, event in outcomes.events.items():
        try:
            publisher.check(event)
        except (KeyConflict, KeyInFlight) as exc:
            outcomes.answers[index] = refusal(exc)


async def submit(publisher: IdempotentPublisher, outcomes: Outcomes, *, keyed: bool) -> None:
    """Hand every valid event to the publisher, in index order, and wait for all answers.

    The tasks are created in order and each reaches the publisher's ordering (and, broker up, its
    publish) at its first step, before the next task runs: the batch's order is kept while the
    publishes are pipelined and the stores share a group commit."""
    indices = sorted(index for index in outcomes.events if index not in outcomes.answers)
    tasks = [
        asyncio.ensure_future(publisher.submit(outcomes.events[index], keyed=keyed))
        for index in indices
    ]
    settled = await asyncio.gather(*tasks, return_exceptions=True)
    for index, result in zip(indices, settled, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            outcomes.answers[index] = refusal(result)
        else:
            outcomes.answers[index] = result
