"""TLS to the broker: `amqps://` against a private node with a TLS listener and a test CA made here."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aio_pika
import httpx
import pytest

from app.catalog.default import DEFAULT_CATALOG

from ..support.rabbit_node import RabbitNode, free_port
from .consumers import bind_queue, collect
from .gateway_process import GatewayProcess

CANCEL = DEFAULT_CATALOG["orders.cancelled"].example


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_test_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost and a client certificate, all signed by the CA."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=breakwater-test-ca", "-keyout", "ca.key", "-out", "ca.pem", cwd=directory)  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "san.ext",
                 "-out", f"{name}.pem", cwd=directory)  # fmt: skip
    return {name: directory / name for name in
            ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_node(pki: dict[str, Path]) -> Iterator[RabbitNode]:
    tls_port = free_port()
    node = RabbitNode(
        f"bwtls{uuid.uuid4().hex[:6]}",
        free_port(),
        free_port(),
        Path("/tmp/breakwater-test-rabbit") / f"tls-{uuid.uuid4().hex[:8]}",
        extra_config=(
            f"listeners.ssl.1 = 127.0.0.1:{tls_port}\n"
            f"ssl_options.cacertfile = {pki['ca.pem']}\n"
            f"ssl_options.certfile = {pki['server.pem']}\n"
            f"ssl_options.keyfile = {pki['server.key']}\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = true\n"
        ),
    )
    node.tls_port = tls_port  # type: ignore[attr-defined]
    with node:
        yield node


def tls_url(node: RabbitNode) -> str:
    return f"amqps://guest:guest@localhost:{node.tls_port}/"  # type: ignore[attr-defined]


async def test_events_are_published_over_tls_with_a_client_certificate(
    start_gateway: Callable[..., GatewayProcess], tls_node: RabbitNode, pki: dict[str, Path]
) -> None:
    gateway = start_gateway(
        broker_url=tls_url(tls_node),
        broker_ca_file=str(pki["ca.pem"]),
        broker_cert_file=str(pki["client.pem"]),
        broker_key_file=str(pki["client.key"]),
    )
    connection = await aio_pika.connect_robust(tls_node.url)  # the node's plain listener
    try:
        queue = await bind_queue(connection, "orders.cancelled")
        response = httpx.post(f"{gateway.base_url}/v1/events/orders.cancelled", json=CANCEL)
        assert response.json()["status"] == "published"
        [message] = await collect(queue, 1)
        assert message.message_id == response.json()["message_id"]
    finally:
        await connection.close()
    connections = tls_node.ctl("list_connections", "ssl", "name", "--quiet")
    assert "true" in connections  # the gateway's connection is a TLS one


def test_a_broker_certificate_from_an_unknown_ca_is_refused(
    start_gateway: Callable[..., GatewayProcess], tls_node: RabbitNode, pki: dict[str, Path]
) -> None:
    """Without the test CA the certificate does not verify: nothing is sent, events are stored."""
    gateway = start_gateway(
        wait_connected=False,
        broker_url=tls_url(tls_node),
        broker_cert_file=str(pki["client.pem"]),
        broker_key_file=str(pki["client.key"]),
    )
    response = httpx.post(f"{gateway.base_url}/v1/events/orders.cancelled", json=CANCEL)
    assert response.json()["status"] == "stored"
    assert httpx.get(f"{gateway.base_url}/readyz").json()["broker_connected"] is False
    assert "CERTIFICATE_VERIFY_FAILED" in gateway.logs()
    assert "guest:guest" not in gateway.logs()


def test_a_certificate_without_its_key_is_a_configuration_error(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("not used")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKWATER_")}
    result = subprocess.run(
        [sys.executable, "-m", "app"],
        env={**env, "BREAKWATER_BROKER_CERT_FILE": str(cert)},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "BREAKWATER_BROKER_CERT_FILE and BREAKWATER_BROKER_KEY_FILE go together" in result.stderr
