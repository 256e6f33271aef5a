"""The store (layer 1): agents, environments, sessions and the event log, in SQLite or PostgreSQL."""
