"""`python -m agenthost` runs the CLI."""

from agenthost.cli import app

app()
