"""Security of the real gateway process: bearer tokens on HTTP ingress, and secrets that never leave.

- With `BREAKWATER_API_TOKENS` set, `POST /v1/events/{channel}` needs `Authorization: Bearer <token>`:
  401 without it or with a wrong one, with `WWW-Authenticate`, and the same answer whatever was
  wrong (no hint which part). The check comes before anything else (no channel list, no body
  read). `/healthz` and `/readyz` stay open.
- The broker password and the API tokens appear nowhere the gateway writes: not in its log
  (console or JSON), not in an error body or header, not in `/readyz`, `/metrics`, the status page
  `/`, the AsyncAPI documents, nor in the fallback store; not even when a setting is rejected.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from app.catalog.default import DEFAULT_CATALOG

from .gateway_process import ROOT, GatewayProcess, free_port

pytestmark = pytest.mark.integration

RABBITMQCTL = os.environ.get("RABBITMQCTL", "rabbitmqctl")
ORDER = DEFAULT_CATALOG["orders.created"].example
CANCELLED = DEFAULT_CATALOG["orders.cancelled"].example
TOKENS = (f"tok-alpha-{uuid.uuid4().hex}", f"tok-beta-{uuid.uuid4().hex}")


def ctl(*args: str) -> None:
    subprocess.run([RABBITMQCTL, *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def private_vhost() -> Iterator[str]:
    name = f"breakwater-security-{uuid.uuid4().hex[:8]}"
    ctl("add_vhost", name)
    try:
        ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        ctl("delete_vhost", name)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway with two API tokens, connected to a broker (in a vhost of its own)."""
    tmp = tmp_path_factory.mktemp("security")
    with private_vhost() as vhost:
        gateway = GatewayProcess(
            {
                "BREAKWATER_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                "BREAKWATER_STORE_PATH": str(tmp / "store.db"),
                "BREAKWATER_API_TOKENS": f" {TOKENS[0]} , {TOKENS[1]} ",
                "BREAKWATER_MAX_BODY_BYTES": "1024",
            },
            tmp / "gateway.log",
        )
        try:
            yield gateway.start()
        finally:
            gateway.stop()


@pytest.fixture(scope="module")
def http(guarded: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=guarded.base_url, timeout=10.0) as client:
        yield client


def post(
    http: httpx.Client,
    authorization: str | bytes | None,
    *,
    channel: str = "orders.cancelled",
    content: bytes | None = None,
) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    body = json.dumps(CANCELLED).encode() if content is None else content
    return http.post(f"/v1/events/{channel}", content=body, headers=headers)


def shape(response: httpx.Response) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
    """Everything a client can compare between two answers, but the clock."""
    headers = tuple(sorted((k, v) for k, v in response.headers.items() if k.lower() != "date"))
    return response.status_code, response.content, headers


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert response.json()["detail"]
    for token in TOKENS:
        assert token not in response.text
        assert all(token not in value for value in response.headers.values())


WRONG_CREDENTIALS: list[str | None] = [
    None,
    "",
    "Bearer",
    "Bearer wrong",
    f"Bearer {TOKENS[0][:-1]}",  # one character short
    f"Bearer {TOKENS[0]}x",  # one character more
    f"Bearer {TOKENS[0][1:]}",
    f"Bearer {TOKENS[0].upper()}",
    f"Bearer {TOKENS[0]},{TOKENS[1]}",
    f"Bearer {TOKENS[0]} {TOKENS[1]}",
    f"Bearer {TOKENS[0][: len(TOKENS[0]) // 2]}",
    f"Basic {base64.b64encode(f'user:{TOKENS[0]}'.encode()).decode()}",
    f"Basic {TOKENS[0]}",
    f"Token {TOKENS[0]}",
    f"Bearer: {TOKENS[0]}",
    f"Bearer-{TOKENS[0]}",
    TOKENS[0],
    f"{TOKENS[0]} Bearer",
]


def test_ingress_without_the_right_bearer_token_is_401_and_says_not_which_part_was_wrong(
    http: httpx.Client,
) -> None:
    answers = []
    for credentials in WRONG_CREDENTIALS:
        response = post(http, credentials)
        assert_unauthorized(response)
        answers.append((credentials, shape(response)))
    distinct = {answer for _, answer in answers}
    assert len(distinct) == 1, answers


@pytest.mark.parametrize("token", TOKENS)
@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_each_configured_token_is_accepted(http: httpx.Client, token: str, scheme: str) -> None:
    response = post(
        http, f"{scheme} {token}", channel="orders.created", content=json.dumps(ORDER).encode()
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "published"


def test_the_token_is_checked_before_anything_else(http: httpx.Client) -> None:
    """Without the token nothing is learnt: not which channels exist, not what the body limit is,
    not whether the payload was valid."""
    unknown = post(http, None, channel="no.such.channel")
    oversized = post(http, "Bearer nope", content=b"x" * 10_000)
    invalid = post(http, None, content=b"{not json")
    for response in (unknown, oversized, invalid):
        assert_unauthorized(response)
    assert shape(unknown) == shape(invalid) == shape(oversized)
    # With the token, the same requests get their real answers.
    authorized = f"Bearer {TOKENS[1]}"
    assert post(http, authorized, channel="no.such.channel").status_code == 404
    assert post(http, authorized, content=b"x" * 10_000).status_code == 413
    assert post(http, authorized, content=b"{not json").status_code == 422


def test_health_endpoints_stay_open(http: httpx.Client) -> None:
    assert http.get("/healthz").status_code == 200
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["broker_connected"] is True


def test_refusals_are_counted_without_letting_clients_invent_labels(
    http: httpx.Client,
) -> None:
    def unauthorized() -> dict[str, float]:
        counts: dict[str, float] = {}
        text = http.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "breakwater_events_rejected_total":
                    assert sample.labels["channel"] in {*DEFAULT_CATALOG, "unknown"}, sample
                    if sample.labels["reason"] == "unauthorized":
                        counts[sample.labels["channel"]] = sample.value
        return counts

    before = unauthorized()
    post(http, None, channel="orders.cancelled")
    post(http, "Bearer nope", channel=f"made-up-{uuid.uuid4().hex}")
    after = unauthorized()
    assert after.get("orders.cancelled", 0) == before.get("orders.cancelled", 0) + 1
    assert after.get("unknown", 0) == before.get("unknown", 0) + 1


# Header values h11 lets a client send: visible ASCII and obs-text, inner spaces and tabs.
authorization_values = st.lists(
    st.integers(0x21, 0x7E) | st.integers(0x80, 0xFF) | st.sampled_from([0x20, 0x09]),
    max_size=120,
).map(lambda octets: bytes(octets).strip(b" \t"))


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    credentials=st.one_of(
        authorization_values,
        st.builds(
            lambda scheme, token: f"{scheme} {token}".strip().encode(),
            st.sampled_from(["Bearer", "bearer", "Basic", "Token", ""]),
            st.one_of(
                st.text(
                    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80
                ),
                st.sampled_from(TOKENS).flatmap(
                    lambda token: st.integers(0, len(token) - 1).map(lambda n: token[:n])
                ),
                st.sampled_from(TOKENS).map(lambda token: token + "\x7e"),
            ),
        ),
    )
)
def test_random_credentials_are_refused_identically(http: httpx.Client, credentials: bytes) -> None:
    valid = {f"bearer {token}".encode() for token in TOKENS}
    scheme, _, rest = credentials.partition(b" ")
    if scheme.lower() + b" " + rest.strip() in valid:
        return  # hypothesis found a right token: nothing to refuse
    response = post(http, credentials)
    assert_unauthorized(response)
    assert shape(response) == shape(post(http, None))


def test_the_guarded_gateway_logged_no_token_and_no_traceback(guarded: GatewayProcess) -> None:
    """After every refusal above (the tokens' prefixes among them), its log holds no token."""
    logs = guarded.logs()
    assert "breakwater ready" in logs
    for token in TOKENS:
        assert token not in logs
        assert token[: len(token) // 2 + 8] not in logs
    assert "Traceback" not in logs, logs[-5000:]


# --------------------------------------------------------------------------------------------------
# Secrets


@pytest.fixture
def secrets() -> dict[str, str]:
    """Distinctive secrets; the hex core of each is what must never show up anywhere."""
    return {
        "outbound password": f"Pw{uuid.uuid4().hex}",
        "inbound password": f"In{uuid.uuid4().hex}",
        "token": f"Tk{uuid.uuid4().hex}",
        "second token": f"Tk{uuid.uuid4().hex}",
    }


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    """Which secrets `text` contains, as they are, URL-encoded or just their random core."""
    found = []
    for name, secret in secrets.items():
        forms = {secret, secret[2:], urllib.parse.quote(secret, safe="")}
        if any(form in text for form in forms):
            found.append(name)
    return found


def broker_url(user: str, password: str, port: int, vhost: str) -> str:
    # Characters that must be percent-encoded in a URL, around the secret: the gateway must not
    # leak the decoded form either.
    quoted = urllib.parse.quote(f"@:/{password}%?#", safe="")
    return f"amqp://{user}:{quoted}@127.0.0.1:{port}/{vhost}"


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_no_secret_appears_in_logs_answers_pages_metrics_or_the_store(
    tmp_path: Path, secrets: dict[str, str], log_format: str
) -> None:
    """A gateway whose brokers are unreachable (so it logs about them, with their URLs) and whose
    every endpoint is scraped; the passwords and tokens appear in none of it."""
    dead_port = free_port()
    gateway = GatewayProcess(
        {
            "BREAKWATER_BROKER_URL": broker_url(
                "bw-out", secrets["outbound password"], dead_port, "out"
            ),
            "BREAKWATER_INBOUND_BROKER_URL": broker_url(
                "bw-in", secrets["inbound password"], dead_port, "in"
            ),
            "BREAKWATER_API_TOKENS": f"{secrets['token']},{secrets['second token']}",
            "BREAKWATER_STORE_PATH": str(tmp_path / "store.db"),
            "BREAKWATER_LOG_FORMAT": log_format,
            "BREAKWATER_MAX_BODY_BYTES": "4096",
        },
        tmp_path / "gateway.log",
    )
    seen: list[str] = []

    def record(response: httpx.Response) -> httpx.Response:
        seen.append(f"{response.request.method} {response.request.url} -> {response.status_code}")
        seen.extend(f"{k}: {v}" for k, v in response.headers.items())
        seen.append(response.text)
        return response

    try:
        gateway.start(wait_connected=False)
        with httpx.Client(base_url=gateway.base_url, timeout=10.0) as client:
            good = {"Authorization": f"Bearer {secrets['token']}"}
            accepted = record(client.post("/v1/events/orders.created", json=ORDER, headers=good))
            assert accepted.status_code == 202, accepted.text
            assert accepted.json()["status"] == "stored"
            for headers in (
                {},
                {"Authorization": f"Bearer {secrets['token']}x"},
                {"Authorization": f"Bearer {secrets['outbound password']}"},
                {"Authorization": f"Basic {secrets['second token']}"},
            ):
                refused = client.post("/v1/events/orders.created", json=ORDER, headers=headers)
                assert record(refused).status_code == 401
            for channel, body, status in (
                ("orders.created", b"{", 422),
                ("nope", b"{}", 404),
                ("orders.created", b" " * 5000, 413),
            ):
                answer = client.post(f"/v1/events/{channel}", content=body, headers=good)
                assert record(answer).status_code == status, answer.text
            # Wait for the inbound broker's "unreachable" warning (after a grace period).
            deadline = time.monotonic() + 15
            while "inbound broker" not in gateway.logs() and time.monotonic() < deadline:
                time.sleep(0.2)
            pages = {
                path: record(client.get(path))
                for path in (
                    "/",
                    "/healthz",
                    "/readyz",
                    "/metrics",
                    "/docs/asyncapi",
                    "/docs/asyncapi.yaml",
                    "/docs/asyncapi.json",
                )
            }
        for path, page in pages.items():
            assert page.status_code == 200, (path, page.text)
        assert pages["/readyz"].json()["broker_connected"] is False
        assert pages["/readyz"].json()["store_depth"] == 1
    finally:
        gateway.stop()
    logs = gateway.logs()
    assert f"127.0.0.1:{dead_port}" in logs, "the gateway never named its brokers: nothing tested"
    assert "inbound broker" in logs, logs
    assert "outbound broker" in logs, logs
    assert not leaks(logs, secrets), (leaks(logs, secrets), logs)
    for text in seen:
        assert not leaks(text, secrets), (leaks(text, secrets), text[:2000])
    store = b"".join(path.read_bytes() for path in tmp_path.glob("store.db*"))
    assert store, "no store written"
    assert not leaks(store.decode("latin-1"), secrets)


@pytest.mark.parametrize(
    "url_template",
    [
        "http://bw:{password}@127.0.0.1:5672/",
        "amqp://bw:{password}@127.0.0.1:notaport/",
        "amqp://bw:{password}@[::1/",
        "{password}",
    ],
)
def test_a_rejected_broker_url_does_not_echo_its_password(url_template: str) -> None:
    password = f"Pw{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "BREAKWATER_BROKER_URL": url_template.format(password=password),
        "BREAKWATER_HTTP_PORT": str(free_port()),
    }
    for log_format in ("console", "json"):
        result = subprocess.run(
            [sys.executable, "-m", "app"],
            cwd=ROOT,
            env={**env, "BREAKWATER_LOG_FORMAT": log_format},
            capture_output=True,
            text=True,
            timeout=60,
        )
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert "BREAKWATER_BROKER_URL" in output, output
        assert password not in output, output
        assert password[2:] not in output, output
