"""Chaos fixtures: the integration suite's vhost, broker URL and gateway launcher (pytest loads a
conftest only from a test's own directory and its parents, so they are imported here), plus the
private-node and fault-proxy fixtures that tests/conftest.py registers for every package."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.integration.conftest import broker_url, start_gateway, vhost
from tests.integration.outage_helpers import purge_inbound_queues

__all__ = ["broker_url", "inbound_queues", "run_id", "start_gateway", "vhost"]


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def inbound_queues(broker_url: str) -> Iterator[None]:
    """The shared vhost's inbound queues start and end empty."""
    purge_inbound_queues(broker_url)
    yield
    purge_inbound_queues(broker_url)
