/* granny.mpi._fastring.cma_read / buffer_address: single-copy reads between rank processes, in C.
 *
 * Compiled into the optional _fastring extension (setup.py); shm.cma_read and shm.buffer_address use
 * them when it is there (and GRANNY_MPI_PURE is unset), else their ctypes/numpy versions, which cost
 * ~4 us and ~2 us of set-up per call: as much as copying 64 KiB.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <sys/uio.h>

/* cma_read(pid, address, buffer): copy len(buffer) bytes from another process's memory at address into
   buffer (process_vm_readv, one copy), without the ctypes set-up of shm.cma_read; the GIL is released
   during the copy. Raises OSError. */
static PyObject *coll_cma_read(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "cma_read(pid, address, buffer)");
        return NULL;
    }
    long pid = PyLong_AsLong(args[0]);
    unsigned long long address = PyLong_AsUnsignedLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer v;
    if (PyObject_GetBuffer(args[2], &v, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    size_t done = 0, total = (size_t)v.len;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    while (done < total) {
        struct iovec local = {(char *)v.buf + done, total - done};
        struct iovec remote = {(void *)(uintptr_t)(address + done), total - done};
        ssize_t got = process_vm_readv((pid_t)pid, &local, 1, &remote, 1, 0);
        if (got <= 0) {
            err = got < 0 ? errno : EIO;
            break;
        }
        done += (size_t)got;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&v);
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* buffer_address(buffer) -> the address of a contiguous buffer (read-only ones too), for a peer's cma_read */
static PyObject *coll_buffer_address(PyObject *mod, PyObject *obj) {
    (void)mod;
    Py_buffer v;
    if (PyObject_GetBuffer(obj, &v, PyBUF_SIMPLE) < 0)
        return NULL;
    uintptr_t address = v.len ? (uintptr_t)v.buf : 0;
    PyBuffer_Release(&v);
    return PyLong_FromUnsignedLongLong((unsigned long long)address);
}

static PyMethodDef cma_functions[] = {
    {"buffer_address", (PyCFunction)coll_buffer_address, METH_O,
     "buffer_address(buffer) -> int: where a contiguous buffer's bytes are (0 when empty)"},
    {"cma_read", (PyCFunction)(void (*)(void))coll_cma_read, METH_FASTCALL,
     "cma_read(pid, address, buffer): process_vm_readv of len(buffer) bytes; OSError on failure"},
    {NULL, NULL, 0, NULL},
};

int fastcma_add_functions(PyObject *m) { return PyModule_AddFunctions(m, cma_functions); }
