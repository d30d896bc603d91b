"""The Python client: ``connect()``, ``Client.submit/map/run_script``, and ``Executor``.

Theory of operation: one TCP connection to the planner per client. ``submit`` pickles on the
caller's thread and writes the frame straight to the socket (no hand-off to another thread, which
would cost a cross-core wake-up); one reader thread resolves futures. Granules on the same machine
hand function results straight to the client's result lane (:mod:`granny.transport.lane`), whose
thread resolves those futures without the planner hop. Every payload is kept until
its result arrives: if the planner connection drops, the client reconnects and resubmits all of
them under the same request ids, and the planner (which deduplicates by id and keeps finished
results in its journal) answers each exactly once.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import serde
from .config import ENV_ADDRESS, ENV_APP_ID, ENV_TOKEN, Config, env, parse_address, parse_bytes, parse_hosts
from .errors import (
    ConfigError,
    ConnectionLostError,
    GrannyError,
    RemoteError,
)
from .hostinfo import HostInfo as HostInfo  # re-exported: granny.client.HostInfo, as before
from .outcomes import keyed_id, map_calls, rebuild_error, world_outcome
from .pending import Pending
from .placing import NOWHERE_IN_PARTICULAR, Placing, parse_checkpoint, parse_tolerance
from .transport import BlockingConn, dial, lane_policy
from .transport.identity import current as granule_identity
from .transport.lane import LaneServer, lanes_enabled
from .transport.redial import redial
from .tunables import BURST_FRAMES, BURST_WINDOW
from .wire import (
    Cancel,
    Kind,
    Log,
    Query,
    Reply,
    Result,
    Revoke,
    Role,
    Status,
    Stdin,
    Submit,
    Waiting,
)

if TYPE_CHECKING:
    from .futures import GrannyFuture



class Client:
    """A connection to a granny cluster. Thread-safe: any thread may submit."""

    def __init__(self, address: str, token: str | bytes, *, app_id: str = "", config: Config | None = None,
                 memory_limit: int = 0, granule_id: str = "", _owner: Any = None, _granule_host: str = "",
                 _unix: str = "") -> None:
        """``token`` is the API token; inside a granule, :func:`connect` passes the granule's own
        credential instead, with ``granule_id`` and ``_granule_host`` naming whose it is."""
        self.address = address
        self._addr = parse_address(address)
        self._token = token
        self.config = config or Config()
        self.app_id = app_id or f"app-{os.urandom(6).hex()}"
        self.memory_limit = memory_limit
        self._owner = _owner  # keeps an embedded cluster alive as long as its client
        self._pending: dict[str, Pending] = {}
        self._revoked: dict[str, int] = {}  # lease req_id -> granules the planner asked back
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._prefix = os.urandom(5).hex()
        self._queries: dict[int, tuple[threading.Event, list[Reply]]] = {}
        self._closed = False
        self._unix = _unix
        self._granule_id = granule_id
        self._granule_host = _granule_host
        self._waiters = 0
        self._flush_cv = threading.Condition()  # wakes the flusher: a burst's last frames must go out
        self._flush_at: float | None = None
        self._flusher: threading.Thread | None = None
        self._result_lock = threading.Lock()  # results arrive on two threads: the planner's and the lane's
        self._lane = LaneServer(self._on_result) if lanes_enabled() else None

        self._conn = self._connect(deadline=time.monotonic() + 10.0)
        self._reader = threading.Thread(target=self._read_loop, name="granny-client", daemon=True)
        self._reader.start()

    # --- connection ---------------------------------------------------------------------------
    def _connect(self, deadline: float) -> BlockingConn:
        def once() -> BlockingConn:
            lane = self._lane
            conn, _, self._unix = dial(self._addr, Role.CLIENT, self._token, self._unix, app_id=self.app_id,
                                       pid=os.getpid(), reply_path=lane.path if lane else "",
                                       reply_key=lane.key if lane else b"", local_id=lane.local_id if lane else "",
                                       name=self._granule_id if self._granule_host else "", host_id=self._granule_host)
            return conn

        # A granule's credential is right by construction; a refusal means the planner does not (yet,
        # after its restart) see this granule running a task of this app.
        return redial(once, deadline, f"the granny planner at {self.address}", retry_auth=bool(self._granule_host))

    def _read_loop(self) -> None:
        while not self._closed:
            try:
                msg, body = self._conn.recv()
            except ConnectionLostError:
                if self._closed or not self._reconnect():
                    return
                continue
            self._handle(msg, body)

    def _handle(self, msg: object, body: memoryview) -> None:
        if isinstance(msg, Result):
            self._on_result(msg, body)
        elif isinstance(msg, Log):
            pending = self._pending.get(msg.req_id)
            if pending is not None and pending.on_log is not None:
                if msg.part:  # after a reconnect the planner replays output: print each part once
                    key = (msg.index, msg.run)
                    if msg.part <= pending.parts.get(key, 0):
                        return
                    pending.parts[key] = msg.part
                pending.on_log(msg)
        elif isinstance(msg, Revoke):
            with self._lock:
                self._revoked[msg.req_id] = self._revoked.get(msg.req_id, 0) + msg.count
        elif isinstance(msg, Reply):
            waiter = self._queries.pop(msg.qid, None)
            if waiter is not None:
                waiter[1].append(msg)
                waiter[0].set()

    def _reconnect(self) -> bool:
        try:
            conn = self._connect(deadline=time.monotonic() + self.config.reconnect_timeout)
        except GrannyError as exc:
            self._fail_all(ConnectionLostError(f"lost the planner at {self.address} and could not reconnect: {exc}"))
            return False
        with self._lock:
            self._conn = conn
            pending = list(self._pending.values())
        for p in pending:  # idempotent: the planner knows these ids if it journaled them
            p.submit.resent = True
            conn.send(p.submit, p.segments)
        for event, _ in list(self._queries.values()):
            event.set()  # queries are not resent; their callers see a lost-connection error
        return True

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for p in pending:
            if p.future is not None and not p.future.done():
                p.future.set_exception(exc)
                if self._lane is not None:
                    self._lane.kick(p.future)
            if p.done is not None:
                p.done.set()

    @property
    def results_via_lane(self) -> int:
        """How many results granules handed straight to this client, skipping the planner hop."""
        return self._lane.received if self._lane is not None else 0

    # --- results ------------------------------------------------------------------------------
    def _on_result(self, res: Result, body: memoryview) -> None:
        with self._result_lock:  # the first copy of a result wins (lane, or planner after a restart)
            pending = self._pending.get(res.req_id)
            if pending is None or res.index in pending.results:
                return
            pending.results[res.index] = res
        try:
            value = serde.loads(serde.unframe(body)) if res.status is Status.OK else None
            error = None if res.status is Status.OK else rebuild_error(res, body)
        except Exception as exc:  # e.g. a module missing on this side
            value, error = None, RemoteError(f"could not load the result: {exc}")
        with self._result_lock:
            pending.values[res.index] = error if error is not None else value
            if len(pending.values) < pending.submit.n:
                return
        with self._lock:
            self._pending.pop(res.req_id, None)
        fut = pending.future
        if fut is not None and (pending.submit.mpi or pending.submit.gang):
            value, error = world_outcome(pending.results, pending.values, pending.submit.n)
        if fut is not None and res.attempts > 1:
            fut.attempts = res.attempts  # run again after its host died (options(retries=...))
        if fut is not None and not fut.done():
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(value)
            if self._lane is not None:
                self._lane.kick(fut)  # its waiter may be reading the lane, not waiting on the future
        if pending.done is not None:
            pending.done.set()

    # --- submitting -----------------------------------------------------------------------------
    def _next_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    def _send(self, pending: Pending) -> None:
        if self._closed:
            raise GrannyError("this client is closed")
        with self._lock:
            self._pending[pending.submit.req_id] = pending
            conn = self._conn
        try:
            deadline = conn.send_soon(pending.submit, pending.segments, BURST_WINDOW, BURST_FRAMES)
        except ConnectionLostError:
            return  # the reader thread reconnects and resubmits everything pending, this included
        if deadline is not None:
            self._arm_flush(deadline)

    def flush(self) -> None:
        """Send submissions held back to go out with a burst now (waiting on a future does this)."""
        with contextlib.suppress(ConnectionLostError):
            self._conn.flush()

    def _arm_flush(self, deadline: float) -> None:
        with self._flush_cv:
            if self._flush_at is not None:
                return  # armed for this burst already
            self._flush_at = deadline
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_loop, name="granny-flush", daemon=True)
                self._flusher.start()
            self._flush_cv.notify()

    def _flush_loop(self) -> None:
        while not self._closed:
            with self._flush_cv:
                while self._flush_at is None or self._flush_at > time.monotonic():
                    if self._closed:
                        return
                    self._flush_cv.wait(None if self._flush_at is None else self._flush_at - time.monotonic())
                self._flush_at = None
            self.flush()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> GrannyFuture:
        """Run ``fn(*args, **kwargs)`` in a granule. Returns at once; never blocks on the cluster."""
        return self._submit_call(fn, args, kwargs, self.memory_limit)

    def _submit_call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                     memory_limit: int, idempotency_key: str = "", placing: Placing | None = None) -> GrannyFuture:
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {type(fn).__name__}")
        where = placing.fields(1) if placing is not None and placing != NOWHERE_IN_PARTICULAR else {}
        if idempotency_key:
            req_id = keyed_id(idempotency_key)
            with self._lock:
                known = self._pending.get(req_id)
            if known is not None and known.future is not None:
                return known.future  # this client already waits on that key
        else:
            req_id = self._next_id()
        return self._pickled(fn, args, kwargs, 1, memory_limit, req_id, keyed=bool(idempotency_key), fuse=_is_async(fn),
                             **where)

    def _pickled(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], n: int,
                 memory_limit: int | None, req_id: str = "", **flags: Any) -> GrannyFuture:
        """The one builder of a pickled function's Submit (a call, a world, a gang): sent; its future."""
        key, fn_bytes = serde.dump_function(fn)
        body = serde.framed([fn_bytes, *serde.dumps((args, kwargs))])
        sub = Submit(req_id=req_id or self._next_id(), app_id=self.app_id, kind=Kind.PICKLED, fn_key=key, n=n,
                     name=getattr(fn, "__name__", ""),
                     memory_limit=self.memory_limit if memory_limit is None else memory_limit, **flags)
        future = _future(self, sub.req_id)
        future.lane_wait = lane_policy.waiter_reads_lane(sub, serde.body_size(body))
        self._send(Pending(sub, body, future))
        return future

    def submit_mpi(self, fn: Callable[..., Any], n: int, args: Iterable[Any] = (),
                   kwargs: dict[str, Any] | None = None, *, placing: Placing = NOWHERE_IN_PARTICULAR,
                   memory_limit: int | None = None) -> GrannyFuture:
        """Start ``fn(comm, *args, **kwargs)`` on ``n`` MPI ranks (gang-placed granules).

        The future's result is the list of the ranks' return values, in rank order. If a rank raises
        or dies, the whole world is aborted (as with mpirun) and the future raises that rank's error."""
        if not callable(fn):
            raise TypeError(f"run_mpi() needs a callable, got {type(fn).__name__}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"run_mpi() needs n >= 1 ranks, got {n!r}")
        return self._pickled(fn, tuple(args), dict(kwargs or {}), n, memory_limit, mpi=True, **placing.fields(n))

    def take_revoked(self, req_id: str) -> int:
        """How many granules of lease ``req_id`` the planner asked back since the last call."""
        with self._lock:
            return self._revoked.pop(req_id, 0)

    def submit_gang(self, fn: Callable[..., Any], n: int, args: Iterable[Any] = (), lease: bool = False,
                    team: int = 0) -> GrannyFuture:
        """Start ``fn(*args)`` on ``n`` gang-placed granules (all at once, and one failure stops them all).

        The future's result is the list of their return values; granule ``i`` finds ``i`` in
        ``GRANNY_INDEX``. Parallel teams lease their members this way. ``team``: ``fn`` opens a parallel
        region of ``n + team`` threads (``granny.parallel``): it starts only where that team fits, and the
        planner holds those slots for the team's lease (as ``OMP_NUM_THREADS`` in a batch job's allocation)."""
        if isinstance(team, bool) or not isinstance(team, int) or team < 0:
            raise ValueError(f"submit_gang() needs team >= 0, got {team!r}")
        return self._pickled(fn, tuple(args), {}, n, None, gang=True, lease=lease, team=team)

    def run_mpi(self, fn: Callable[..., Any], n: int, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
                timeout: float | None = None) -> list[Any]:
        """Run ``fn(comm, *args)`` on ``n`` ranks and return the per-rank results (blocks)."""
        return self.submit_mpi(fn, n, args, kwargs).result(timeout)  # type: ignore[no-any-return]

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None) -> Iterator[Any]:
        """Submit ``fn`` over zipped iterables at once; yield results in order (like ``Executor.map``)."""
        return map_calls(self.submit, fn, iterables, timeout)

    def options(self, *, memory_limit: str | int | None = None, key: str | None = None, tenant: str | None = None,
                hosts: str | Iterable[tuple[str, int]] | None = None, migrate: bool | None = None,
                checkpoint: int | str | None = None, retries: int | None = None,
                delay_tolerance: float | None = None, restartable: bool | None = None) -> ClientOptions:
        """A view of this client whose submissions carry the given per-granule options.

        ``tenant`` names who the work runs for (the compact policy never lets two tenants share a
        host); ``hosts`` pins the placement, as ``mpirun --host``: ``"h1:4,h2:4"`` or
        ``[("h1", 4), ("h2", 4)]``, adding up to the request's granules (ConfigError otherwise, before
        anything is sent); ``migrate=False`` keeps the app where it was placed. ``checkpoint`` (MPI
        worlds with migration points): save the world's state every N points (``3``) or every T
        seconds (``"10s"``), so that it restarts from there if a host dies (docs/migration.md).
        ``retries=N`` marks a call idempotent: if its host dies, it runs again elsewhere, at most N
        times, as Ray does for tasks; ``future.attempts`` then says how many times it ran.
        ``delay_tolerance``: 0 runs a call now; ``t > 0`` lets the planner run it whenever it likes as
        long as the result is ready within t seconds (a deadline it cannot meet fails the call at once
        with ``DeadlineError``); ``-1``: whenever. Delayed calls use the slots other work leaves free.
        ``restartable=True`` (with a tolerance): latency-sensitive work that finds no free slot may stop
        the call and take its slot; it runs again from the start later, still by its deadline.
        Delay-tolerant calls of an ``async def`` function are *fused*: up to the planner's
        ``--fusion-cap`` of them share one granule (one slot) while they await I/O.

        ``key`` is an idempotency key for one call (``submit`` only): a call submitted with a key
        that was used before, by any client, is not run again; its future gets the first call's
        outcome (see docs/functions.md, "Delivery guarantee")."""
        limit = self.memory_limit if memory_limit is None else parse_bytes(memory_limit)
        if tenant is not None and not isinstance(tenant, str):
            raise ConfigError(f"tenant must be a string, got {type(tenant).__name__}")
        if migrate is not None and not isinstance(migrate, bool):
            raise ConfigError(f"migrate must be True or False, got {migrate!r}")
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
            raise ConfigError(f"retries must be a whole number >= 0, got {retries!r}")
        placing = Placing(tenant or "", parse_hosts(hosts), True if migrate is None else migrate,
                          parse_checkpoint(checkpoint), retries or 0, parse_tolerance(delay_tolerance),
                          bool(restartable))
        return ClientOptions(self, limit, key or "", placing)

    def run_script(self, path: str, n: int = 1, argv: Iterable[str] = (), source: bytes | None = None,
                   on_log: Callable[[Log], None] | None = None, app_id: str = "",
                   memory_limit: int | None = None, mpi: bool = False, forward_stdin: bool = False,
                   placing: Placing = NOWHERE_IN_PARTICULAR) -> list[Result]:
        """Run a script as ``n`` gang-placed granules of a new app; block until all finish.

        With ``mpi`` the granules form an MPI world (``granny run``): ``import mpi4py`` gives granny's MPI."""
        where = placing.fields(n)
        if source is None:
            with open(path, "rb") as fh:
                source = fh.read()
        sub = Submit(req_id=self._next_id(), app_id=app_id or f"run-{os.urandom(6).hex()}", kind=Kind.SCRIPT,
                     n=n, name=path, argv=list(argv), stream_logs=True, mpi=mpi,
                     memory_limit=self.memory_limit if memory_limit is None else memory_limit, **where)
        pending = Pending(sub, serde.framed([source]), on_log=on_log)
        assert pending.done is not None
        self._send(pending)
        if forward_stdin:
            threading.Thread(target=self._forward_stdin, args=(sub.req_id,), name="granny-stdin", daemon=True).start()
        try:
            while not pending.done.wait(0.5):
                pass
        except KeyboardInterrupt:
            self.cancel(app_id=sub.app_id)
            raise
        return [pending.results[i] for i in sorted(pending.results)]

    def _forward_stdin(self, req_id: str) -> None:
        """Ship this process's stdin to granule 0 as it arrives (a daemon thread: it may block forever)."""
        while not self._closed:
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            try:
                self._conn.send(Stdin(req_id=req_id, data=data, eof=not data))
            except GrannyError:
                return
            if not data:
                return

    # --- what its futures use (futures.FutureOwner) -------------------------------------------------
    @property
    def in_granule(self) -> bool:
        return bool(self._granule_id)

    def wait_on_lane(self, future: GrannyFuture, timeout: float | None) -> bool:
        lane = self._lane  # not inside a granule: waiting there must lend the slot (lend_slot)
        return lane is not None and not self._granule_id and lane.wait(future, timeout, spin=len(self._pending) <= 2)

    def lend_slot(self, lend: bool) -> None:
        with self._lock:
            self._waiters += 1 if lend else -1
            edge = self._waiters == (1 if lend else 0)
        if edge:
            with contextlib.suppress(GrannyError):
                self._conn.send(Waiting(granule_id=self._granule_id, waiting=self._waiters > 0))

    def cancel_request(self, req_id: str) -> None:
        with contextlib.suppress(GrannyError):
            self._conn.send(Cancel(req_id=req_id))

    def cancel(self, app_id: str) -> None:
        self._conn.send(Cancel(app_id=app_id))

    # --- queries ------------------------------------------------------------------------------
    def query(self, what: str, arg: str = "", timeout: float = 10.0) -> Any:
        """Ask the planner. A query changes nothing, so it is asked again on a new connection if it drops."""
        deadline = time.monotonic() + timeout
        while (reply := self._ask(Query(what=what, arg=arg, qid=next(self._ids)), deadline)) is None:
            if self._closed or time.monotonic() >= deadline:
                raise ConnectionLostError(f"no answer from the planner to {what!r}")
            time.sleep(0.05)  # the reader thread is reconnecting
        if reply.error:
            raise GrannyError(reply.error)
        import json  # only queries need it: `granny run` starts faster without

        return json.loads(reply.data)

    def _ask(self, query: Query, deadline: float) -> Reply | None:
        waiter: tuple[threading.Event, list[Reply]] = (threading.Event(), [])
        self._queries[query.qid] = waiter
        with contextlib.suppress(ConnectionLostError):
            self._conn.send(query)
            waiter[0].wait(max(0.0, deadline - time.monotonic()))  # set by the reply, or by a reconnect
        self._queries.pop(query.qid, None)
        return waiter[1][0] if waiter[1] else None

    def hosts(self) -> list[HostInfo]:
        return [HostInfo(**h) for h in self.query("hosts")]

    def apps(self) -> list[dict[str, Any]]:
        return list(self.query("apps"))

    # --- life cycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Cancel what is still pending, close this client's app and the connection."""
        if self._closed:
            return
        # Fail what is pending first: the planner's "cancelled" answers to the Cancel below would
        # otherwise race this, and a caller would get either error.
        self._fail_all(GrannyError("the client was closed"))
        try:
            self._conn.send(Cancel(app_id=self.app_id, close=True))
        except GrannyError:
            pass
        self._closed = True
        with self._flush_cv:
            self._flush_cv.notify()  # the flusher exits
        self._conn.close()
        if self._lane is not None:
            self._lane.close()
        if self._owner is not None and hasattr(self._owner, "release"):
            self._owner.release()

    def _detach(self) -> None:
        """Close the connection without cancelling anything of the app (see :func:`shared_client`)."""
        self._closed = True
        self._fail_all(GrannyError("the client was closed"))
        with self._flush_cv:
            self._flush_cv.notify()
        self._conn.close()
        if self._lane is not None:
            self._lane.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ClientOptions:
    """``client.options(...)``: the same client and connection, with per-granule options applied."""

    def __init__(self, client: Client, memory_limit: int, key: str = "", placing: Placing = NOWHERE_IN_PARTICULAR) -> None:
        self._client = client
        self.memory_limit = memory_limit
        self.key = key
        self.placing = placing

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> GrannyFuture:
        return self._client._submit_call(fn, args, kwargs, self.memory_limit, self.key, self.placing)

    def submit_mpi(self, fn: Callable[..., Any], n: int, args: Iterable[Any] = (),
                   kwargs: dict[str, Any] | None = None, *, placing: Placing = NOWHERE_IN_PARTICULAR,
                   memory_limit: int | None = None) -> GrannyFuture:
        return self._client.submit_mpi(fn, n, args, kwargs, placing=self.placing, memory_limit=self.memory_limit)

    def run_mpi(self, fn: Callable[..., Any], n: int, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None,
                timeout: float | None = None) -> list[Any]:
        return self.submit_mpi(fn, n, args, kwargs).result(timeout)  # type: ignore[no-any-return]

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None) -> Iterator[Any]:
        if self.key:
            raise ValueError("an idempotency key names one call: use submit(), one key per call")
        return map_calls(self.submit, fn, iterables, timeout)

    def run_script(self, path: str, n: int = 1, argv: Iterable[str] = (), **kwargs: Any) -> list[Result]:
        return self._client.run_script(path, n, argv, memory_limit=self.memory_limit, placing=self.placing, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _future(client: Client, req_id: str) -> GrannyFuture:
    from .futures import GrannyFuture

    return GrannyFuture(client, req_id)


def connect(address: str | None = None, token: str | None = None, **kwargs: Any) -> Client:
    """Connect to a cluster; with no address anywhere, start (or reuse) an embedded local one.

    The address and token come from the arguments, else ``GRANNY_ADDRESS``/``GRANNY_TOKEN``. Inside
    a granule, the granule's own planner and credential are used, so functions can submit (chaining):
    into the app of the task the granule runs, and nowhere else (docs/security.md).
    """
    address = address or env(ENV_ADDRESS)
    token = token or env(ENV_TOKEN)
    me = granule_identity()
    if not address and me is not None:
        return Client(me.planner, me.credential, app_id=env(ENV_APP_ID),
                      granule_id=me.granule_id, _granule_host=me.host_id, _unix=me.unix, **kwargs)
    if address:
        if not token:
            raise ConfigError(f"no token for {address}: pass token= or set {ENV_TOKEN}")
        return Client(address, token, **kwargs)
    from .cluster import embedded_cluster  # started on demand only: it spawns processes

    cluster = embedded_cluster()
    return Client(cluster.address, cluster.token, _owner=cluster.acquire(), **kwargs)


_shared: Client | None = None  # see shared_client (tests may set it: regions then lease from their cluster)


def shared_client() -> Client:
    """The process's default client, made by :func:`connect` on first use: what ``granny.submit`` and
    parallel regions use.

    A granule runs tasks of many apps in turn, and its client is good for one app only: when the app
    changes, the old one is closed (without cancelling that app's work) and a new one made."""
    global _shared
    cached = _shared
    if cached is not None and not cached._closed:
        if not cached._granule_host or cached.app_id == env(ENV_APP_ID):
            return cached
        cached._detach()
    _shared = connect()
    return _shared


def _is_async(fn: Callable[..., Any]) -> bool:
    """``fn`` is an ``async def`` function (inspect.iscoroutinefunction, without importing inspect): its
    delay-tolerant calls may share a granule while they wait (planner/fusion.py)."""
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    return code is not None and bool(code.co_flags & 0x80)  # CO_COROUTINE
