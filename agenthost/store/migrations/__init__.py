"""Alembic migrations of the store; run by ``Store.migrate`` at start and by ``agenthost db upgrade``."""
