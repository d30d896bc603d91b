"""Argument conversions as mpi4py's (Cython) signatures do them, so granny rejects what mpi4py rejects.

- A scalar ``int`` argument (a rank, tag, root, color, direction ...) takes anything with ``__int__``:
  ``nprocs / 2`` (a float) is accepted, a string is not ("an integer is required").
- A sequence of integers (Cartesian dims, periods and coordinates, group ranks) goes through
  ``__index__``, item by item: floats, strings and numpy booleans raise TypeError, numpy integers and
  Python booleans pass.
- A reduction op of a buffer collective must be an ``MPI.Op`` (``None`` is only for the pickled forms).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

from .ops import Op


def as_int(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, (str, bytes, bytearray)) or not hasattr(type(value), "__int__"):
        raise TypeError(f"an integer is required, got {type(value).__name__}")
    return int(value)


def index_list(values: Iterable[Any]) -> list[int]:
    """``[operator.index(v) for v in values]``: TypeError "'float' object cannot be interpreted as an integer"."""
    return [operator.index(v) for v in values]


def check_op(op: Any) -> None:
    if not isinstance(op, Op):
        raise TypeError(f"Argument 'op' has incorrect type (expected MPI.Op, got {type(op).__name__})")


def check_length(values: list[Any], n: int) -> None:
    if len(values) != n:
        raise ValueError(f"expecting {n} items, got {len(values)}")
