"""``MPI.Win`` attribute keyvals, user error handlers and integer handles, as mpi4py 4 on Open MPI behaves
(``window_handles`` also runs there unchanged: ``mpirun -n 2 python -c "from tests.integration.test_win_keyvals
import window_handles as w; from mpi4py import MPI; print(w(MPI.COMM_WORLD))"``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the module runs under the real mpi4py too, where granny is not installed
    import granny


def window_handles(comm: Any) -> dict[str, Any]:
    import numpy as np
    from mpi4py import MPI

    out: dict[str, Any] = {}
    win = MPI.Win.Allocate(64, 8, comm=comm)
    log: list[Any] = []
    k = MPI.Win.Create_keyval(None, lambda w, key, val: log.append((w == win, key == k, val)))
    k2 = MPI.Win.Create_keyval()
    out["keyvals"] = [type(k).__name__, k != k2, win.Get_attr(k)]
    win.Set_attr(k, "A")
    win.Set_attr(k, "B")  # replacing calls delete_fn on the old value
    win.Set_attr(k2, [1, 2])
    out["get"] = [win.Get_attr(k), win.Get_attr(k2), MPI.Win(win).Get_attr(k)]
    win.Delete_attr(k2)
    out["deleted"] = win.Get_attr(k2)
    errors = []
    for call in (lambda: win.Delete_attr(k2), lambda: win.Set_attr(123457, 1)):
        try:
            call()
        except MPI.Exception:
            errors.append("MPI.Exception")
    out["errors"] = errors
    out["free_keyval"] = MPI.Win.Free_keyval(k2) == MPI.KEYVAL_INVALID
    # error handlers: a user one hears of Call_errhandler and of a failing operation, which still raises
    calls: list[Any] = []
    eh = MPI.Win.Create_errhandler(lambda w, code: calls.append((w == win, code)))
    out["default_eh"] = win.Get_errhandler() == MPI.ERRORS_RETURN
    win.Call_errhandler(MPI.ERR_OTHER)  # ERRORS_RETURN: nothing happens
    win.Set_errhandler(eh)
    got = win.Get_errhandler()
    out["eh_equal"] = [got == eh, got != MPI.ERRORS_RETURN]
    got.Free()
    win.Call_errhandler(MPI.ERR_ARG)
    out["calls"] = [(same, code == MPI.ERR_ARG) for same, code in calls]
    win.Set_errhandler(MPI.ERRORS_RETURN)
    eh.Free()
    out["eh_freed"] = eh == MPI.ERRHANDLER_NULL
    # integer handles
    h, f = win.toint(), win.py2f()
    out["handles"] = [type(h).__name__, type(f).__name__, MPI.Win.fromhandle(win.handle) == win,
                      MPI.Win.f2py(f) == win, MPI.Win.fromint(h) == win,
                      MPI.Win.fromhandle(MPI.WIN_NULL.handle) == MPI.WIN_NULL, MPI.WIN_NULL.py2f() == 0]
    np.frombuffer(win.tomemory(), np.float64)[:] = comm.rank
    win.Free()  # delete_fn for what is still set
    out["log"] = log
    return out


def test_win_keyvals_errhandlers_and_handles(client: granny.Client) -> None:
    for r in client.run_mpi(window_handles, n=2, timeout=120):
        assert r["keyvals"] == ["int", True, None]
        assert r["get"] == ["B", [1, 2], "B"]
        assert r["deleted"] is None
        assert r["errors"] == ["MPI.Exception", "MPI.Exception"]
        assert r["free_keyval"] and r["default_eh"] and r["eh_freed"]
        assert r["eh_equal"] == [True, True]
        assert r["calls"] == [(True, True)]
        assert r["handles"] == ["int", "int", True, True, True, True, True]
        assert r["log"] == [(True, True, "A"), (True, True, "B")]


def failing_put(comm: Any) -> list[Any]:
    """A Put outside the target's window (which Open MPI does not check) calls the user handler, then raises."""
    import numpy as np
    from mpi4py import MPI

    win = MPI.Win.Allocate(64, 8, comm=comm)
    calls: list[Any] = []
    win.Set_errhandler(MPI.Win.Create_errhandler(lambda w, code: calls.append(code)))
    win.Fence()
    try:
        win.Put(np.zeros(100), (comm.rank + 1) % comm.size, [0, 100, MPI.DOUBLE])
        raised = False
    except MPI.Exception as exc:
        raised = exc.Get_error_class() == calls[0]
    win.Fence()
    win.Free()
    return [raised, len(calls)]


def test_a_failing_operation_calls_the_user_errhandler_then_raises(client: granny.Client) -> None:
    assert client.run_mpi(failing_put, n=2, timeout=120) == [[True, 1], [True, 1]]
