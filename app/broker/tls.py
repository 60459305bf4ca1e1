"""TLS to the brokers (`amqps://` URLs): which CA to trust, and an optional client certificate."""

from __future__ import annotations

import ssl

from ..settings import Settings


def client_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """None when no broker URL uses TLS; else a verifying context (hostname and chain)."""
    urls = [*settings.broker_urls, *settings.inbound_urls]
    if not any(url.startswith("amqps://") for url in urls):
        return None
    ca_file = str(settings.broker_ca_file) if settings.broker_ca_file else None
    context = ssl.create_default_context(cafile=ca_file)
    if settings.broker_cert_file and settings.broker_key_file:
        context.load_cert_chain(str(settings.broker_cert_file), str(settings.broker_key_file))
    return context
