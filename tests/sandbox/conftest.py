"""Fixtures shared with the engine tests, re-exported for this folder."""

from tests.engine.conftest import recorders  # noqa: F401 - a fixture
from tests.engine.test_takeover import processes  # noqa: F401 - a fixture
