"""The MPI namespace: what ``from mpi4py import MPI`` gives a program running on granny.

Importing this module initialises MPI, as importing ``mpi4py.MPI`` does: inside a granule of an MPI
app the rank joins its world (see runtime.py); elsewhere it is a world of one.
"""

from __future__ import annotations

import pickle as _pickle
import socket as _socket
import time as _time
from typing import Any

from ..errors import MpiError, NotImplementedMpi
from . import comm as _comm
from . import constants as _c
from . import datatypes as _dt
from . import ops as _ops
from . import rma_apply as _rma_apply
from . import runtime as _runtime
from .buffers import BOTTOM, IN_PLACE
from .comm import COMM_NULL, Comm, Intracomm
from .constants import *  # noqa: F403 - mpi4py's flat namespace of constants
from .datatypes import Datatype
from .group import INFO_ENV, INFO_NULL, Group, Info
from .ops import Op
from .request import REQUEST_NULL, Request, Status
from .rma_constants import *  # noqa: F403 - one-sided constants (WIN_*, LOCK_*, MODE_* ...)
from .shm import buffer_address as _buffer_address
from .topo import Cartcomm, Distgraphcomm, Graphcomm, compute_dims
from .win import WIN_NULL, Win

Exception = MpiError  # mpi4py's name for its error class
Errhandler = type(_c.ERRORS_RETURN)
Topocomm = Cartcomm
GROUP_NULL = Group([])
GROUP_EMPTY = Group([])
DATATYPE_NULL = _dt.DATATYPE_NULL

for _name in dir(_dt):
    if _name.isupper() and isinstance(getattr(_dt, _name), Datatype):
        globals()[_name] = getattr(_dt, _name)
for _name in dir(_ops):
    if _name.isupper() and isinstance(getattr(_ops, _name), Op):
        globals()[_name] = getattr(_ops, _name)

_rt = _runtime.get()
COMM_WORLD: Intracomm = Intracomm(list(range(_rt.world.size)), 0, "MPI_COMM_WORLD")
COMM_SELF: Intracomm = Intracomm([_rt.world.rank], 1, "MPI_COMM_SELF")
if _rt.world.size > 1:
    COMM_WORLD.Barrier()  # every same-host peer has now mapped this rank's inbox ...
_rt.world.fabric.unlink()  # ... so its name can go: the memory now lives exactly as long as the ranks


def _restore_comm(cid: int, same: bool, cls: type[Comm]) -> Comm:
    """Unpickles COMM_WORLD or COMM_SELF (``same``) or another handle to one: importing this module made them."""
    comm = COMM_WORLD if cid == 0 else COMM_SELF
    return comm if same else cls(comm)


_comm.register_predefined(COMM_WORLD, COMM_SELF, _restore_comm)
_typedict = getattr(_dt, "TYPECODES", {})


def _typecode(datatype: Datatype) -> str | None:
    return _dt.typecode(datatype)


def Wtime() -> float:
    return _time.perf_counter()


def Wtick() -> float:
    return 1e-9


def Get_processor_name() -> str:
    return _socket.gethostname()


def Get_version() -> tuple[int, int]:
    return (_c.VERSION, _c.SUBVERSION)


def Get_library_version() -> str:
    return "granny MPI 0.1 (mpi4py-compatible, on granules)"


def get_vendor() -> tuple[str, tuple[int, int, int]]:
    return ("granny", (0, 1, 0))


def Init() -> None:
    """MPI is initialised on import, as with mpi4py's default ``rc.initialize``."""


def Init_thread(required: int = _c.THREAD_MULTIPLE) -> int:
    return _c.THREAD_SERIALIZED if required > _c.THREAD_SERIALIZED else required


def Query_thread() -> int:
    return _c.THREAD_SERIALIZED


def Is_thread_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def Is_initialized() -> bool:
    return _rt.initialized


def Finalize() -> None:
    """Marks MPI finalised; the world's resources are released when the rank's task ends."""
    if not _rt.finalized:
        COMM_WORLD.Barrier()
        _rt.finalized = True


_runtime.at_finalize(Finalize)  # the granule finalises (runtime.finalize) a program that ended without it


def Is_finalized() -> bool:
    return _rt.finalized


def Abort(errorcode: int = 0) -> None:  # not a Comm method here: MPI_Abort(COMM_WORLD, code)
    COMM_WORLD.Abort(errorcode)


def Compute_dims(nnodes: int, dims: int | list[int]) -> list[int]:
    return compute_dims(nnodes, dims)


def Get_error_class(errorcode: int) -> int:
    return errorcode


def Get_error_string(errorcode: int) -> str:
    return f"MPI error {errorcode}"


def Alloc_mem(size: int, info: Any = None) -> Any:
    """Zeroed memory as mpi4py's ``MPI.buffer`` (``m[:] = 0`` works, ``len`` is in bytes)."""
    return _rma_apply.as_buffer(memoryview(bytearray(size)))


def Free_mem(mem: Any) -> None:
    pass


def Get_address(location: Any) -> int:
    return _buffer_address(memoryview(location).cast("B"))


class Pickle:
    """mpi4py's ``MPI.pickle``: the serializer of the lowercase methods (protocol 5)."""

    def __init__(self, dumps: Any = _pickle.dumps, loads: Any = _pickle.loads, protocol: int = 5) -> None:
        self.dumps, self.loads, self.PROTOCOL = dumps, loads, protocol


pickle = Pickle()


def __getattr__(name: str) -> Any:
    if name in {"File", "Intercomm", "Message", "Grequest", "Prequest",
                "Session", "Register_datarep", "Open_port", "Lookup_name", "Publish_name", "Add_error_class",
                "Attach_buffer", "Detach_buffer", "Pcontrol", "Get_hw_resource_info"}:
        raise NotImplementedMpi(f"MPI.{name} is not implemented by granny")
    raise AttributeError(f"module 'mpi4py.MPI' has no attribute {name!r}")


__all__ = ["BOTTOM", "COMM_NULL", "COMM_SELF", "COMM_WORLD", "IN_PLACE", "INFO_ENV", "INFO_NULL", "REQUEST_NULL",
           "Cartcomm", "Comm", "Datatype", "Distgraphcomm", "Graphcomm", "Group", "Info", "Intracomm", "Op", "Request", "Status",
           "WIN_NULL", "Win"]



# --- communicators, persistent requests, buffered sends (comm.py) ------------------------------------
Prequest = _comm.Prequest
Grequest = _comm.Grequest
Attach_buffer = _comm.attach_buffer
Detach_buffer = _comm.detach_buffer
_comm_lock = _comm.comm_lock
_comm_lock_table = _comm.comm_lock_table
Intercomm = _comm.Intercomm
GROUP_NULL = Group()  # a null handle, unlike GROUP_EMPTY


def Pcontrol(level: int) -> None:
    """MPI_Pcontrol: a hook for profiling libraries; granny has none, so it only checks its argument."""
    if not isinstance(level, int):
        raise TypeError(f"Pcontrol: level must be an int, got {type(level).__name__}")
