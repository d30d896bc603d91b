"""Modules the zygote imports before forking, so that granules do not pay for them.

The MPI layer is imported (not initialised: ``granny.mpi.api``, which builds the world, is not in
the list), as are parallel regions and shared memory: a rank then starts in milliseconds.
"""

from __future__ import annotations

import importlib

WARM = (
    "granny.mpi.shim", "granny.mpi.comm", "granny.mpi.collectives", "granny.mpi.topo", "granny.mpi.group",
    "granny.mpi.request", "granny.mpi.tcp", "granny.mpi.runtime", "granny.mpi.constants",
    "granny.parallel.member", "granny.parallel.remote", "granny.memory.segments",
    "granny.migration.point", "granny.migration.ship", "granny.worker.migrate_ctl",
)


def warm_imports() -> None:
    for name in WARM:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional part that cannot load here must not stop the zygote
            pass
