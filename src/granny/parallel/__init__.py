"""Fork-join parallel regions over shared arrays (granny's OpenMP for numpy); see api.py.

``granny.parallel`` is this package *and* the context manager: ``with granny.parallel(num_threads=4)
as team:`` calls the module, which makes a :class:`parallel` (a module that is callable, since the
subpackage's name and the API's name are the same).
"""

import sys
import types
from typing import Any

from .api import Context, Team, close_teams, parallel, parallel_for, team


class _CallableModule(types.ModuleType):
    def __call__(self, num_threads: int | None = None) -> Any:
        return parallel(num_threads)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["Context", "Team", "close_teams", "parallel", "parallel_for", "team"]
