"""granny's stand-in for the mpi4py package (see granny.mpi)."""

from __future__ import annotations

from typing import Any

__granny__ = True
__version__ = "4.1.2"
__author__ = "granny"


class _RC:
    initialize = True
    threads = True
    thread_level = "multiple"
    finalize = None
    fast_reduce = True
    recv_mprobe = True
    irecv_bufsz = 32768
    errors = "exception"

    def __call__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)


rc = _RC()


def get_include() -> str:
    raise NotImplementedError("mpi4py.get_include: granny has no C API")


def get_config() -> dict[str, str]:
    return {"mpicc": "", "vendor": "granny"}


def profile(name: str, **kwargs: Any) -> None:
    raise NotImplementedError("mpi4py.profile is not implemented by granny")
