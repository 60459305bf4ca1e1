"""The channel catalog: the one list of event types that the HTTP routes, the AMQP queues and the
AsyncAPI document are all built from."""
