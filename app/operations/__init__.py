"""Around the event's path: metrics, logs, the status page, the command line and the server that runs the gateway."""
