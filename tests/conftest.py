"""Fixtures shared by every test package: the private RabbitMQ node and the TCP fault proxy."""

pytest_plugins = ["tests.support.fixtures"]
