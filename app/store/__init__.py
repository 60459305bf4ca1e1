"""Where events wait while the broker is away: the SQLite fallback store, its replay, and the offline drain."""
