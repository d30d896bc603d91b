"""MPI constants with mpi4py's names (values as in Open MPI where a program might print them)."""

from __future__ import annotations

ANY_SOURCE = -1
ANY_TAG = -1
PROC_NULL = -2
ROOT = -4
UNDEFINED = -32766
KEYVAL_INVALID = -1

IDENT, CONGRUENT, SIMILAR, UNEQUAL = 0, 1, 2, 3
CART, GRAPH, DIST_GRAPH = 1, 2, 3

THREAD_SINGLE, THREAD_FUNNELED, THREAD_SERIALIZED, THREAD_MULTIPLE = 0, 1, 2, 3

SUCCESS = 0
ERR_BUFFER, ERR_COUNT, ERR_TYPE, ERR_TAG, ERR_COMM, ERR_RANK, ERR_REQUEST, ERR_ROOT = 1, 2, 3, 4, 5, 6, 7, 8
ERR_GROUP, ERR_OP, ERR_TOPOLOGY, ERR_DIMS, ERR_ARG, ERR_UNKNOWN, ERR_TRUNCATE, ERR_OTHER = 9, 10, 11, 12, 13, 14, 15, 16
ERR_INTERN, ERR_IN_STATUS, ERR_PENDING = 17, 18, 19
ERR_LASTCODE = 92

# attribute keys of a communicator (Comm.Get_attr)
TAG_UB, HOST, IO, WTIME_IS_GLOBAL, UNIVERSE_SIZE, APPNUM, LASTUSEDCODE = 101, 102, 103, 104, 105, 106, 107
TAG_UB_VALUE = 2**31 - 1

VERSION, SUBVERSION = 3, 1
MAX_PROCESSOR_NAME = 256
MAX_ERROR_STRING = 256
MAX_OBJECT_NAME = 64
MAX_LIBRARY_VERSION_STRING = 256
BSEND_OVERHEAD = 0


class _Handler:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"MPI.{self.name}"

    def Free(self) -> None:  # noqa: N802
        pass


ERRORS_RETURN = _Handler("ERRORS_RETURN")
ERRORS_ARE_FATAL = _Handler("ERRORS_ARE_FATAL")
ERRORS_ABORT = _Handler("ERRORS_ABORT")
ERRHANDLER_NULL = _Handler("ERRHANDLER_NULL")
