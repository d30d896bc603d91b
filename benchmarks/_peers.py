"""The peer task runtimes behind one small adapter interface, each with 2 worker processes.

Methodology follows /work/shared/peer-bench/task_bench.py (the BASELINES.md numbers), so figures are
comparable with it: Ray tasks via ``ray.get(f.remote(...))``, Dask ``client.submit(..., pure=False)`` on
a ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``, and ``multiprocessing.Pool(2)``
with the platform's default start method (fork on Linux/CPython 3.11).

An adapter is created *after* its package is imported (the import is timed separately), and
``start()`` brings the cluster up; the caller times ``start()`` plus the first ``call()``.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Sequence
from typing import Any

NW = 2  # worker processes for every system


class TaskSystem:
    """Adapter interface. ``submit_all``+``wait_all`` is the timed part of the throughput test;
    ``results`` (untimed) fetches the values for verification."""

    name = "?"
    meta: dict[str, Any]

    def __init__(self) -> None:
        self.meta = {}
        self.details: dict[str, float] = {}  # extra one-shot timings, e.g. "up_ready_s"

    def start(self) -> None:
        raise NotImplementedError

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def submit_all(self, fn: Callable[..., Any], args: Sequence[Any]) -> Any:
        raise NotImplementedError

    def wait_all(self, handle: Any) -> None:
        raise NotImplementedError

    def results(self, handle: Any) -> list[Any]:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class RaySystem(TaskSystem):
    name = "ray"

    def __init__(self) -> None:
        super().__init__()
        import ray

        self.ray = ray
        self.meta["ray"] = ray.__version__
        self._remote: dict[Any, Any] = {}

    def start(self) -> None:
        self.ray.init(
            num_cpus=NW,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=False,
        )

    def _r(self, fn: Callable[..., Any]) -> Any:
        r = self._remote.get(fn)
        if r is None:
            r = self._remote[fn] = self.ray.remote(fn)
        return r

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.ray.get(self._r(fn).remote(*args))

    def submit_all(self, fn: Callable[..., Any], args: Sequence[Any]) -> Any:
        r = self._r(fn)
        return {"refs": [r.remote(a) for a in args]}

    def wait_all(self, handle: Any) -> None:
        handle["values"] = self.ray.get(handle["refs"])

    def results(self, handle: Any) -> list[Any]:
        return list(handle["values"])

    def stop(self) -> None:
        self.ray.shutdown()


class DaskSystem(TaskSystem):
    name = "dask"

    def __init__(self) -> None:
        super().__init__()
        import distributed

        self.distributed = distributed
        v = importlib.metadata.version
        self.meta.update(dask=v("dask"), distributed=v("distributed"))

    def start(self) -> None:
        d = self.distributed
        self.cluster = d.LocalCluster(
            n_workers=NW, threads_per_worker=1, processes=True, dashboard_address=None
        )
        self.client = d.Client(self.cluster)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(fn, *args, pure=False).result()

    def submit_all(self, fn: Callable[..., Any], args: Sequence[Any]) -> Any:
        return [self.client.submit(fn, a, pure=False) for a in args]

    def wait_all(self, handle: Any) -> None:
        self.distributed.wait(handle)  # type: ignore[no-untyped-call]

    def results(self, handle: Any) -> list[Any]:
        return list(self.client.gather(handle))

    def stop(self) -> None:
        self.client.close()
        self.cluster.close()


class PoolSystem(TaskSystem):
    name = "pool"

    def __init__(self) -> None:
        super().__init__()
        import multiprocessing as mp

        self.mp = mp
        self.meta["start_method"] = mp.get_start_method()

    def start(self) -> None:
        self.pool = self.mp.Pool(NW)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.apply_async(fn, args).get()

    def submit_all(self, fn: Callable[..., Any], args: Sequence[Any]) -> Any:
        return {"rs": [self.pool.apply_async(fn, (a,)) for a in args]}

    def wait_all(self, handle: Any) -> None:
        handle["values"] = [r.get() for r in handle["rs"]]

    def results(self, handle: Any) -> list[Any]:
        return list(handle["values"])

    def stop(self) -> None:
        self.pool.close()
        self.pool.join()


PEERS: dict[str, tuple[str, Callable[[], TaskSystem]]] = {
    # system name -> (module that must be importable, factory)
    "ray": ("ray", RaySystem),
    "dask": ("distributed", DaskSystem),
    "pool": ("multiprocessing", PoolSystem),
}
