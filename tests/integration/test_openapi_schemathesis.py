"""The OpenAPI document (/docs/openapi.json) against the running gateway, by schemathesis.

Schemathesis reads the document the gateway serves and, for every operation, sends what the
document says is valid and what it says is not, over real HTTP to a gateway on the real broker.
Every answer must be documented: its status code, its content type, its required headers and a
body matching its schema; and no 5xx, whatever was sent. Three setups:

- the broker up: valid events are answered `202 published`;
- the broker partitioned (a `FaultProxy` holding every byte, the breaker open): `202 stored`;
- API tokens configured: with the token as above; without it every event operation is `401`
  (and schemathesis' own `ignored_auth` and `missing_required_header` checks probe both);
- CloudEvents on (`BREAKWATER_CLOUDEVENTS=binary`): the event operations also take CloudEvents in
  structured mode (a body of its own content type) and binary mode (`ce-*` headers).

All built-in checks run except `positive_data_acceptance`: a schema cannot say every rule of a
model (an order's `total` must equal the sum of its lines; money has at most 6 decimal places and
a string amount's bounds), so some schema-valid payloads are rightly refused with a `422`, which
the other checks still hold to the document.
"""

from __future__ import annotations

import contextlib
import copy
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.catalog.default import DEFAULT_CATALOG
from app.cloudevents.attributes import CloudEventsMode
from app.documents import openapi
from tests.support.fault_proxy import FaultProxy

from .gateway_process import ROOT, GatewayProcess
from .outage_helpers import wait_breaker

pytestmark = pytest.mark.integration

TOKEN = f"tok-openapi-{uuid.uuid4().hex}"
EXCLUDED = [positive_data_acceptance]
# Small enough that the file runs in about a minute: every operation still gets its examples, the
# coverage phase's edge cases and a few random requests.
FEW = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
EVENT_PATHS = {f"/v1/events/{name}" for name in DEFAULT_CATALOG} | {"/v1/events/{channel}"}
BATCH_PATHS = {f"{path}/batch" for path in EVENT_PATHS}
# The gateways take at most this many events in a batch, and the document schemathesis reads says
# so: with the default limit (1,000) its coverage phase would build a 1,000-event array, event by
# event, for every batch operation while collecting (minutes). The limit's edges are the same.
MAX_BATCH = 5
# A batch as NDJSON is documented as a string (one payload per line): sent as text is.
schemathesis.serializer.alias(openapi.NDJSON, "text/plain")

# What each setup answered, by (path, status code, `status` of a 202): read by the summaries.
SEEN: dict[str, Counter[tuple[str, int, str | None]]] = {
    setup: Counter() for setup in ("up", "partitioned", "guarded", "unauthenticated", "cloudevents")
}


def _gateway(tmp: Path, name: str, **env: str) -> GatewayProcess:
    settings_env = {
        "BREAKWATER_STORE_PATH": str(tmp / f"{name}.db"),
        "BREAKWATER_MAX_BATCH_EVENTS": str(MAX_BATCH),
        **{f"BREAKWATER_{key.upper()}": value for key, value in env.items()},
    }
    return GatewayProcess(settings_env, tmp / f"{name}.log")


@contextlib.contextmanager
def running(gateway: GatewayProcess, *, wait_connected: bool = True) -> Iterator[GatewayProcess]:
    try:
        yield gateway.start(wait_connected=wait_connected)
    finally:
        gateway.stop()


def _accepted_statuses(response: schemathesis.Response) -> set[str]:
    """The `status` of a 202: the event's, or each accepted event's of a batch."""
    body = json.loads(response.content)
    if "results" not in body:
        return {body["status"]}
    return {r["status"] for r in body["results"]} - {"rejected", "not_accepted"}


def _record(setup: str, case: Case, response: schemathesis.Response) -> None:
    statuses: set[str | None] = {None}
    if response.status_code == 202:
        statuses = set(_accepted_statuses(response))
    for status in statuses:
        SEEN[setup][(case.operation.path, response.status_code, status)] += 1


# -- the gateways ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def up(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("openapi-up")
    with running(_gateway(tmp, "up", broker_url=broker_url)) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def partitioned(vhost: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway whose broker link is partitioned, its breaker open: every valid event is
    stored. The breaker stays open for the whole run (no trial publish)."""
    tmp = tmp_path_factory.mktemp("openapi-partitioned")
    with FaultProxy("127.0.0.1", 5672) as proxy:
        gateway = _gateway(
            tmp,
            "partitioned",
            broker_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}",
            publish_timeout_s="1",
            breaker_fail_max="1",
            breaker_reset_timeout_s="600",
        )
        with running(gateway):
            proxy.partition()
            try:
                # One event runs into the publish deadline and opens the breaker.
                example = DEFAULT_CATALOG["orders.cancelled"].example
                first = httpx.post(
                    f"{gateway.base_url}/v1/events/orders.cancelled", json=example, timeout=10
                )
                assert first.json()["status"] == "stored", first.text
                wait_breaker(gateway.base_url, "open", timeout=10)
                yield gateway
            finally:
                proxy.heal()


@pytest.fixture(scope="module")
def guarded(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("openapi-guarded")
    with running(_gateway(tmp, "guarded", broker_url=broker_url, api_tokens=TOKEN)) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def cloudevents(
    broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("openapi-cloudevents")
    gateway = _gateway(tmp, "cloudevents", broker_url=broker_url, cloudevents="binary")
    with running(gateway):
        yield gateway


# The documents these gateways serve, loaded here: schemathesis' lazy `from_fixture` loader does
# not run under pytest 9 (`Function._nodeid`). That the gateways serve exactly these is checked below.
# The gateways' batch limit, `MAX_BATCH`, is the only difference from the documents they serve.
def _with_batch_limit(document: dict[str, object]) -> dict[str, object]:
    document = copy.deepcopy(document)
    paths = document["paths"]
    assert isinstance(paths, dict)
    for path in BATCH_PATHS:
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]
        body["schema"]["maxItems"] = MAX_BATCH
    return document


SERVED = openapi.document(DEFAULT_CATALOG)
SERVED_GUARDED = openapi.document(DEFAULT_CATALOG, tokens_required=True)
SERVED_CLOUDEVENTS = openapi.document(DEFAULT_CATALOG, cloudevents=CloudEventsMode.binary)
OPEN = schemathesis.openapi.from_dict(_with_batch_limit(SERVED))
WITH_CLOUDEVENTS = schemathesis.openapi.from_dict(_with_batch_limit(SERVED_CLOUDEVENTS))
GUARDED = schemathesis.openapi.from_dict(_with_batch_limit(SERVED_GUARDED))


# -- the runs ----------------------------------------------------------------------------------


@OPEN.parametrize()
@FEW
def test_broker_up_every_answer_is_documented(case: Case, up: GatewayProcess) -> None:
    response = case.call_and_validate(base_url=up.base_url, excluded_checks=EXCLUDED)
    _record("up", case, response)
    if response.status_code == 202:
        assert _accepted_statuses(response) == {"published"}, response.text


@OPEN.parametrize()
@FEW
def test_broker_partitioned_every_answer_is_documented(
    case: Case, partitioned: GatewayProcess
) -> None:
    response = case.call_and_validate(base_url=partitioned.base_url, excluded_checks=EXCLUDED)
    _record("partitioned", case, response)
    if response.status_code == 202:
        assert _accepted_statuses(response) == {"stored"}, response.text


@GUARDED.parametrize()
@FEW
def test_with_tokens_and_the_token_every_answer_is_documented(
    case: Case, guarded: GatewayProcess
) -> None:
    response = case.call_and_validate(
        base_url=guarded.base_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        excluded_checks=EXCLUDED,
    )
    _record("guarded", case, response)


@GUARDED.parametrize()
@FEW
def test_with_tokens_and_no_token_every_event_is_refused_as_documented(
    case: Case, guarded: GatewayProcess
) -> None:
    # Schemathesis would send a generated token: take it away (and leave any other header).
    if case.headers:
        case.headers.pop("Authorization", None)
    response = case.call_and_validate(base_url=guarded.base_url, excluded_checks=EXCLUDED)
    _record("unauthenticated", case, response)
    # (The coverage phase also tries methods the path has not: 405, before any token check.)
    if case.operation.path in EVENT_PATHS | BATCH_PATHS and case.method.upper() == "POST":
        assert response.status_code == 401, response.text


@WITH_CLOUDEVENTS.parametrize()
@FEW
def test_with_cloudevents_every_answer_is_documented(
    case: Case, cloudevents: GatewayProcess
) -> None:
    response = case.call_and_validate(base_url=cloudevents.base_url, excluded_checks=EXCLUDED)
    _record("cloudevents", case, response)
    if response.status_code == 202:
        assert _accepted_statuses(response) == {"published"}, response.text


# -- what the runs saw -------------------------------------------------------------------------


def _accepted(setup: str) -> Counter[str | None]:
    return Counter(
        {
            status: count
            for (_, code, status), count in SEEN[setup].items()
            if code == 202 and status is not None
        }
    )


def test_the_runs_exercised_acceptance_and_refusal() -> None:
    """The runs above were not vacuous: every setup reached every operation, accepted events
    where it could (published with the broker up, stored while partitioned) and refused bad
    ones."""
    for setup, seen in SEEN.items():
        paths = {path for path, _, _ in seen}
        assert paths >= EVENT_PATHS | BATCH_PATHS, (
            f"{setup}: never called {(EVENT_PATHS | BATCH_PATHS) - paths}"
        )
        assert not [key for key in seen if key[1] >= 500], f"{setup}: {seen}"
    assert set(_accepted("up")) == {"published"}, SEEN["up"]
    assert set(_accepted("partitioned")) == {"stored"}, SEEN["partitioned"]
    assert set(_accepted("guarded")) == {"published"}, SEEN["guarded"]
    assert set(_accepted("cloudevents")) == {"published"}, SEEN["cloudevents"]
    for setup in ("up", "partitioned", "guarded", "cloudevents"):
        assert any(code == 422 for _, code, _ in SEEN[setup]), f"{setup}: nothing refused"
    unauthenticated = {
        code for path, code, _ in SEEN["unauthenticated"] if path in EVENT_PATHS | BATCH_PATHS
    }
    assert 401 in unauthenticated
    assert unauthenticated <= {401, 405}


def test_the_gateway_serves_the_committed_document_and_its_page_offline(
    up: GatewayProcess,
) -> None:
    document = httpx.get(f"{up.base_url}/docs/openapi.json")
    assert document.status_code == 200
    assert document.headers["content-type"].startswith("application/json")
    assert document.text == (ROOT / "openapi.json").read_text(encoding="utf-8")
    assert document.json() == SERVED
    page = httpx.get(f"{up.base_url}/docs/openapi")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "https://" not in page.text  # no CDN
    assert "http://" not in page.text
    for asset, kind, marker in (
        ("swagger-ui-bundle.js", "javascript", "SwaggerUIBundle"),
        ("swagger-ui.css", "css", ".swagger-ui"),
    ):
        assert f"static/openapi/{asset}" in page.text
        response = httpx.get(f"{up.base_url}/docs/static/openapi/{asset}")
        assert response.status_code == 200, asset
        assert kind in response.headers["content-type"]
        assert marker in response.text


def test_a_gateway_with_tokens_serves_a_document_that_requires_them(
    guarded: GatewayProcess,
) -> None:
    document = httpx.get(f"{guarded.base_url}/docs/openapi.json").json()
    assert document == SERVED_GUARDED
    for name in DEFAULT_CATALOG:
        assert document["paths"][f"/v1/events/{name}"]["post"]["security"] == [{"bearerAuth": []}]


def test_a_gateway_with_cloudevents_serves_a_document_that_takes_them(
    cloudevents: GatewayProcess,
) -> None:
    document = httpx.get(f"{cloudevents.base_url}/docs/openapi.json").json()
    assert document == SERVED_CLOUDEVENTS
    operation = document["paths"]["/v1/events/orders.created"]["post"]
    assert "application/cloudevents+json" in operation["requestBody"]["content"]
    assert "ce-id" in {parameter["name"] for parameter in operation["parameters"]}


def test_starlettes_own_answers_have_the_documented_error_body(up: GatewayProcess) -> None:
    """Paths and methods the document has no operation for still answer `{"detail": ...}`."""
    for method, path, code in (
        ("GET", "/v1/events/orders.created", 405),
        ("POST", "/v1/events/a%2Fb", 404),
        ("POST", "/v1/events/", 404),
        ("PUT", "/healthz", 405),
    ):
        response = httpx.request(method, f"{up.base_url}{path}", timeout=10)
        assert response.status_code == code, (method, path)
        assert response.headers["content-type"] == "application/json"
        assert isinstance(response.json()["detail"], str)
        if code == 405:
            assert response.headers["allow"]
