"""Breakwater: a store-and-forward event gateway for RabbitMQ."""

__version__ = "0.1.0"
