"""Where events come in: HTTP and AMQP ingress, and the idempotency window in front of the publisher."""
