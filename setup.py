"""Only the optional C extension lives here; everything else is in pyproject.toml.

granny.mpi._fastring (the shared-memory ring of the MPI layer in C) is optional: when it cannot be
compiled (no compiler, no Python headers) the install still succeeds and granny uses its pure-Python
rings (see docs/mpi.md)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "granny.mpi._fastring",
            sources=["src/granny/mpi/_fastring.c", "src/granny/mpi/_fastcoll.c", "src/granny/mpi/_fastcma.c"],
            depends=["src/granny/mpi/_fastfold.h"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
