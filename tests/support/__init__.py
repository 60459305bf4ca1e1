"""Test-support tools: a TCP fault proxy and a private RabbitMQ node (fixtures in ``fixtures``)."""

from tests.support.fault_proxy import FaultProxy
from tests.support.rabbit_node import RabbitNode, RabbitNodeError, free_port

__all__ = ["FaultProxy", "RabbitNode", "RabbitNodeError", "free_port"]
