"""Fixtures shared with the engine tests, re-exported for this folder."""

from tests.engine.conftest import recorders  # noqa: F401 - a fixture
