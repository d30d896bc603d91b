"""The testbed's one exception type."""

from __future__ import annotations

from ..errors import GrannyError


class TestbedError(GrannyError):
    """A testbed could not be built, changed or torn down; the message says what to do."""

    __test__ = False  # not a pytest test class
