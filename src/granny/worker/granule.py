"""A granule process: runs one task at a time for the planner, on a connection of its own.

Theory of operation: the granule connects straight to the planner (not through its worker), so a
task costs one network hop each way. It reads a Run, executes it with stdout and stderr captured
into Log frames on the same connection (so output is ordered before the result), and replies Done.
A plain call's result goes first to the submitting client's result lane when it is on this machine
(:mod:`granny.transport.lane`); the Done then only tells the planner it was delivered.

Across a planner restart (see :mod:`granny.worker.outbox` and docs/functions.md, "Delivery"): output
and results are kept until the planner's journal holds them, and sent again after a reconnect, which
happens as soon as any thread finds the connection dead, announcing the running task. So a task that
started is not started again, and its output arrives once, as long as the granule reconnects within
the new planner's restart grace. What stays at-least-once: a task whose granule died with the planner
(or reconnected after the grace) is run again, and so may be a call the old planner dispatched less
than one journal batch (a few milliseconds) after accepting it, if its client resubmits it before the
granule's report reaches the new planner (see planner/orphans.py for the other order).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import sys
import time
import traceback
import types
from collections import deque
from collections.abc import Callable
from typing import Any

import cloudpickle
import msgspec

from .. import serde
from ..config import (
    DEFAULT_RECONNECT_TIMEOUT,
    ENV_APP_ID,
    ENV_HOST_ID,
    ENV_INDEX,
    ENV_PLANNER,
    ENV_SIZE,
    env,
    parse_address,
)
from ..errors import ConnectionLostError, ErrorKind, GrannyError
from ..migration.control import MigratedAway
from ..mpi.world import route_ip
from ..transport import BlockingConn, dial, lane_policy
from ..transport.identity import GranuleIdentity, set_current
from ..transport.lane import LaneDialer
from ..transport.redial import redial
from ..wire import Done, Kind, Result, Role, Run, Status, Stdin
from ..wire import Skip as SkipMsg
from ..wire.framing import Buffer
from . import call_ctl, finishing, fused, niceness, task_end
from .capture import FdCapture
from .granule_user import set_dumpable
from .outbox import Link
from .outcome import error_done as _error_done
from .outcome import user_tb as _user_tb


class LogWriter(io.TextIOBase):
    """A text stream that ships what is written as Log frames, a line (or a flush) at a time."""

    def __init__(self, link: Link, stream: str) -> None:
        self.link, self.stream = link, stream
        self._buf: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._buf.append(text)
        if "\n" in text:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._buf:
            data, self._buf = "".join(self._buf), []
            self.link.send_log(self.stream, data)  # kept, and sent again after a reconnect (see outbox)


class Granule:
    def __init__(self, granule_id: str, credential: bytes, unix: str = "") -> None:
        self.granule_id = granule_id
        self.host_id = env(ENV_HOST_ID)
        planner = env(ENV_PLANNER)
        self.address = parse_address(planner, ENV_PLANNER)
        # Its own credential (docs/security.md), never the cluster secret, and never in os.environ.
        self._credential = credential
        set_current(GranuleIdentity(planner, self.host_id, granule_id, unix, credential))
        self.functions: dict[str, Callable[..., Any]] = {}
        self.unix = unix
        self._env: tuple[str, int, int] = ("", -1, -1)
        self.capture = FdCapture()
        self.stdin_frames: deque[Stdin] = deque()
        self.deferred: deque[tuple[Any, memoryview, int]] = deque()  # frames a call's migration point read (call_ctl)
        self.exited_cleanly = False  # the last script ended by sys.exit() (not MPI.Abort, not a crash)
        self.lanes = LaneDialer(granule_id)
        self.link = Link(self._connect, granule_id)

    @property
    def conn(self) -> BlockingConn:
        return self.link.conn

    def _connect(self, busy_task: str, busy_grant: bytes) -> BlockingConn:
        def once() -> BlockingConn:
            conn, _, self.unix = dial(self.address, Role.GRANULE, self._credential, self.unix, name=self.granule_id,
                                      host_id=self.host_id, pid=os.getpid(), busy_task=busy_task, busy_grant=busy_grant)
            return conn

        try:  # a refusal may be a planner that restarted and does not know this granule's task yet
            return redial(once, time.monotonic() + DEFAULT_RECONNECT_TIMEOUT, "the planner", retry_auth=True)
        except GrannyError as exc:
            # Any thread may be the one that reconnects (a print in user code, say): end here.
            print(f"granule {self.granule_id}: giving up on the planner: {exc}", file=sys.__stderr__, flush=True)
            os._exit(0)

    def serve(self) -> None:
        link = self.link
        runs: deque[tuple[Run, memoryview, int]] = deque()
        skipped: set[tuple[str, int]] = set()
        while True:
            # Block only when there is nothing to run; otherwise just take what already arrived,
            # so a Skip for a prefetched task is seen before that task starts. (A task sent to
            # an idle granule cannot be skipped: no need for the syscall that looks.)
            while not runs or runs[0][0].prefetched:
                frame = self.deferred.popleft() if self.deferred else link.poll(wait=not runs)
                if frame is None:
                    break
                msg, body, gen = frame
                if isinstance(msg, Run):
                    runs.append((msg, body, gen))
                elif isinstance(msg, SkipMsg):
                    skipped.add((msg.req_id, msg.index))
                elif isinstance(msg, Stdin):
                    self.stdin_frames.append(msg)
            run, body, gen = runs.popleft()
            if (run.req_id, run.index) in skipped:
                skipped.discard((run.req_id, run.index))
                continue
            if run.fused:  # a delay-tolerant async call: others may join it on an event loop
                fused.serve(self, run, body, gen, runs, skipped)
                continue
            if not link.start_task(run.req_id, run.index, gen, run.grant):
                continue  # sent by a planner that went away: the new one dispatches it again
            before = niceness.enter(run.nice)  # a delay-tolerant call may yield the cores (niceness.py)
            done, segments = self.execute(run, body)
            finishing.finishing()  # a pause that lands from here to the Done does not hold (finishing.py)
            done.retiring = not niceness.leave(before) or done.retiring
            if lane_policy.hand_over(run, bool(runs), done.moved) and self._hand_over(run, done, segments):
                done.delivered = True
                if not lane_policy.copy_to_planner(done.size):
                    segments = []  # the client has it; the planner journals only the record
            finishing.hold()  # (tests only)
            link.send_done(done, segments)
            finishing.done()
            link.end_task()
            if done.retiring:
                link.await_close()  # the planner closes once the Done is in its journal
                return  # a script or MPI rank may leave any state behind: the next task gets a fresh fork

    def _hand_over(self, run: Run, done: Done, segments: list[Buffer]) -> bool:
        """Give the result straight to the client's lane; False: the planner must forward it."""
        res = Result(req_id=done.req_id, index=done.index, status=done.status, size=done.size,
                     error_kind=done.error_kind, message=done.message, traceback=done.traceback,
                     exit_code=done.exit_code, host_id=self.host_id, attempts=run.attempts)
        return self.lanes.send(run.reply_to, run.reply_key, run.reply_local, res, segments)

    def execute(self, run: Run, body: memoryview) -> tuple[Done, list[Buffer]]:
        segs = serde.unframe(body) if body.nbytes else []  # a resumed rank's Run has no body
        env = (run.app_id, run.index, run.n)
        if env != self._env:  # putenv is a syscall-priced call: skip it when nothing changed
            self._env = env
            os.environ.update({ENV_APP_ID: run.app_id, ENV_INDEX: str(run.index), ENV_SIZE: str(run.n)})
        out = LogWriter(self.link, "stdout")
        err = LogWriter(self.link, "stderr")
        saved = sys.stdout, sys.stderr, sys.argv
        sys.stdout, sys.stderr = out, err
        self.capture.begin(self.link.send_log)
        # A task without a limit runs with none: the task that set one lifted it when it ended.
        limited = run.memory_limit > 0 and _limit_memory(run.memory_limit)
        try:
            return self._run_kind(run, segs)
        finally:
            _release_task_memory()
            if limited:
                _limit_memory(0)
            out.flush()
            err.flush()
            with contextlib.suppress(GrannyError):
                self.capture.end()
            self.link.report_lost()
            sys.stdout, sys.stderr, sys.argv = saved

    def _run_kind(self, run: Run, segs: list[memoryview]) -> tuple[Done, list[Buffer]]:
        if not run.mpi:
            return self._run_call(run, segs) if run.kind is not Kind.SCRIPT else self._run_plain(run, segs)
        from ..migration import control
        from ..mpi import runtime, shim
        from .migrate_ctl import GranuleControl

        shim.install()
        set_dumpable(True)  # same-host ranks copy from each other's memory (see granule_user); it retires after
        ctl = GranuleControl(self, run, route_ip(*self.address))
        runtime.configure(ctl.world_id(run.gen), run.index, run.n, ctl.exchange(run.gen), self.host_id, ctl.ip,
                          run.gen)
        control.set_current(ctl)
        try:
            self.exited_cleanly = False
            done, payload = self._run_resumed(run) if run.resume_from else self._run_plain(run, segs)
            if done.status is Status.OK or self.exited_cleanly:
                # mpi4py finalises at exit, a barrier: a rank that ends early must not end the job
                # under its peers. After a failure there is no barrier: the world is aborted at once.
                try:
                    runtime.finalize()
                except GrannyError as exc:  # the rank's outcome, not the granule's end (it reports it)
                    done, payload = _error_done(run, exc, limit=run.memory_limit)
        except MigratedAway:
            # The rank goes on in another granule: this is not the task's end, and there is no finalize.
            done, payload = Done(req_id=run.req_id, index=run.index, status=Status.OK, moved=True), []
        finally:
            control.set_current(None)
            runtime.shutdown()
        done.retiring = True  # its MPI state (world, shim, module globals) must not leak into other work
        return done, payload

    def _run_call(self, run: Run, segs: list[memoryview]) -> tuple[Done, list[Buffer]]:
        """A function call, with a control for its migration points: the planner may freeze it at one
        (worker/call_ctl.py); a frozen call (``run.resume_from``) runs ``resume(*args)`` from the store."""
        from ..migration import control

        ctl = call_ctl.PlainControl(self, run)
        control.set_current(ctl)
        try:
            if not run.resume_from:
                return self._run_plain(run, segs)
            try:
                resume, args = call_ctl.thaw(self, run)
            except BaseException as exc:  # a call that cannot resume fails, with the reason
                return _error_done(run, exc, limit=run.memory_limit)
            return self._call(run, lambda: resume(*args))
        except MigratedAway:
            # Frozen: it goes on from the planner's store. A fresh fork takes the next task (the call's
            # stack was unwound by an exception its code may have seen in ``finally`` blocks).
            return Done(req_id=run.req_id, index=run.index, status=Status.OK, moved=True, retiring=True), []
        finally:
            control.set_current(None)

    def _run_resumed(self, run: Run) -> tuple[Done, list[Buffer]]:
        """A rank that migrated here: pull its state, join the world's new generation, run ``resume(*args)``.

        Its outcome is the rank's, as the program's would have been: for a script, an exit code (an
        exception prints its traceback), for a function, the return value."""
        from ..migration import ship
        from ..mpi import runtime

        try:
            source = run.resume_from
            if source.startswith(":"):  # a frozen rank's state, in the planner's store
                source = f"{self.address[0]}{source}"
            data, buffers = ship.pull(source, run.resume_key)
            from ..mpi import api  # joins generation run.gen of the world (with the ranks that stayed)

            resume, args, extra = ship.unpack(data, buffers)
            rt = runtime.get()
            rt.next_cid, rt.gen = max(rt.next_cid, int(extra.get("next_cid", 2))), run.gen
            del api
        except BaseException as exc:  # a rank that cannot resume fails, with the reason
            return _error_done(run, exc, limit=run.memory_limit)
        if run.kind is not Kind.SCRIPT:
            return self._call(run, lambda: resume(*args))
        return self._as_script(run, lambda _main: resume(*args))

    def _run_plain(self, run: Run, segs: list[memoryview]) -> tuple[Done, list[Buffer]]:
        if run.kind is Kind.SCRIPT:
            source = bytes(segs[0])
            path = run.name or "<script>"
            return self._as_script(run, lambda main: exec(compile(source, path, "exec"), main))

        def call() -> Any:
            if run.kind is Kind.NAMED:
                fn = self._function(run.fn_key, lambda: _load_named(json.loads(bytes(segs[0]))))
                return fn(json.loads(bytes(segs[1])) if segs[1].nbytes else None)
            fn = self._function(run.fn_key, lambda: cloudpickle.loads(segs[0]))
            args, kwargs = serde.loads(segs[1:])
            if run.mpi:
                from ..mpi import api

                args = (api.COMM_WORLD, *args)
            return fn(*args, **kwargs)

        return self._call(run, call)

    def _call(self, run: Run, call: Callable[[], Any]) -> tuple[Done, list[Buffer]]:
        """Run a function task: its return value (or its exception) is the result."""
        ok = Done(req_id=run.req_id, index=run.index, status=Status.OK)
        try:
            value = fused.settle(call())  # an async def function's coroutine runs to its end
        except MigratedAway:
            raise
        except BaseException as exc:  # the user's failure is the result
            return _error_done(run, exc, limit=run.memory_limit)
        try:
            payload: list[Buffer] = [msgspec.json.encode(value)] if run.kind is Kind.NAMED else serde.dumps(value)
        except BaseException as exc:
            msg = f"the return value of type {type(value).__name__} could not be serialised: {exc}"
            return Done(req_id=run.req_id, index=run.index, status=Status.ERROR, error_kind=ErrorKind.UNPICKLABLE_RESULT,
                        message=msg), []
        body = serde.framed(payload)
        ok.size = serde.body_size(body)
        return ok, body

    def _function(self, key: str, load: Callable[[], Any]) -> Callable[..., Any]:
        fn = self.functions.get(key) if key else None
        if fn is None:
            fn = load()
            if key:
                self.functions[key] = fn
        assert fn is not None
        return fn

    def _as_script(self, run: Run, body: Callable[[dict[str, Any]], Any]) -> tuple[Done, list[Buffer]]:
        """Run ``body`` (the script, or a moved rank's resume) as ``python prog.py`` would: its exit code is the result."""
        path = run.name or "<script>"
        sys.argv = [path, *run.argv]
        # As mpirun: granule 0 reads what `granny run` forwards of its stdin; the others read nothing.
        saved_stdin = sys.stdin
        sys.stdin = PlannerStdin(self) if run.index == 0 else io.StringIO("")
        script_dir = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(script_dir) and script_dir not in sys.path:
            sys.path.insert(0, script_dir)
        code = 0
        # A real __main__ module, as `python prog.py` has: unittest.main(), pickle and multiprocessing
        # look the script's names up in sys.modules["__main__"].
        main = types.ModuleType("__main__")
        main.__file__ = path
        main.__builtins__ = __builtins__  # type: ignore[attr-defined]
        saved_main = sys.modules.get("__main__")
        sys.modules["__main__"] = main
        try:
            body(main.__dict__)
        except MigratedAway:
            raise
        except SystemExit as exc:
            # sys.exit() still finalises MPI (a barrier), as mpi4py's exit hook does; MPI.Abort does not.
            self.exited_cleanly = type(exc).__name__ != "AbortExit"
            if isinstance(exc.code, int):
                code = int(exc.code)  # sys.exit(False), as unittest.main() does, is a bool
            elif exc.code is not None:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # print it the way python itself would
            etype, value, tb = sys.exc_info()
            traceback.print_exception(etype, value, _user_tb(tb))
            code = 1
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            sys.stdin = saved_stdin
            self.stdin_frames.clear()
            if saved_main is not None:
                sys.modules["__main__"] = saved_main
        status = Status.OK if code == 0 else Status.ERROR
        return Done(req_id=run.req_id, index=run.index, status=status, exit_code=code, retiring=True, error_kind=ErrorKind.NONE if code == 0
                    else ErrorKind.EXIT, message="" if code == 0 else f"granule {run.index} exited with code {code}"), []


class PlannerStdin(io.TextIOBase):
    """sys.stdin of granule 0: lines forwarded by `granny run`, read from the planner connection."""

    def __init__(self, granule: Granule) -> None:
        self._granule = granule
        self._buf = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def _more(self) -> bool:
        frames = self._granule.stdin_frames
        while not frames:
            msg, _, _ = self._granule.link.recv()
            if isinstance(msg, Stdin):
                frames.append(msg)
        frame = frames.popleft()
        self._buf += frame.data
        self._eof = self._eof or frame.eof
        return bool(frame.data) or not frame.eof

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        while b"\n" not in self._buf and not self._eof and self._more():
            pass
        cut = self._buf.find(b"\n") + 1 or len(self._buf)
        line, self._buf = self._buf[:cut], self._buf[cut:]
        return line.decode(errors="replace")

    def read(self, size: int | None = -1) -> str:
        while not self._eof and self._more():
            pass
        data, self._buf = self._buf, b""
        return data.decode(errors="replace")


def _release_task_memory() -> None:
    """A task's parallel teams (a task-end hook) and shared arrays end with it (the granule lives on for other apps).

    Cheap when the task made none (the usual case): no /dev/shm scan. The arrays are looked up, not
    imported: segments imports numpy, which a granule that never made one need not load."""
    task_end.task_ended()
    segments = sys.modules.get("granny.memory.segments")
    if segments is not None and segments.CREATED:
        segments.remove_created()


def _load_named(spec: dict[str, Any]) -> Callable[..., Any]:
    entry = spec.get("entry", "main")
    if spec.get("source"):
        namespace: dict[str, Any] = {"__name__": f"granny_fn_{spec.get('name', 'anon')}"}
        exec(compile(spec["source"], f"<function {spec.get('name', '')}>", "exec"), namespace)
        fn = namespace[entry]
    else:
        import importlib

        fn = getattr(importlib.import_module(spec["module"]), entry)
    if not callable(fn):
        raise TypeError(f"entry point {entry!r} is not callable")
    return fn  # type: ignore[no-any-return]


def _limit_memory(limit: int) -> bool:
    """Cap the address space at its current size plus ``limit`` bytes (0 lifts the cap)."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if limit <= 0:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        return False
    with open("/proc/self/statm") as fh:
        vm_bytes = int(fh.read().split()[0]) * resource.getpagesize()
    soft = vm_bytes + limit
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return True


def granule_main(granule_id: str, credential: bytes, unix: str = "") -> None:
    try:
        Granule(granule_id, credential, unix).serve()
    except (ConnectionLostError, OSError, GrannyError) as exc:
        print(f"granule {granule_id}: giving up on the planner: {exc}", file=sys.__stderr__)
    sys.__stderr__.flush() if sys.__stderr__ else None
    os._exit(0)

