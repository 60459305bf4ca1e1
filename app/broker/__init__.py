"""The broker itself, shared by the way in and the way out: the first broker that answers, TLS, and what is declared on it."""
