"""Where events go out: the resilient publisher, its circuit breaker and the confirmed outbound connection."""
