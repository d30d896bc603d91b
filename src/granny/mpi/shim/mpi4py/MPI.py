"""``mpi4py.MPI`` in a granny granule: granny's MPI namespace (granny.mpi.api)."""

import sys

from granny.mpi import api as _api

_api.__granny__ = True
sys.modules[__name__] = _api
