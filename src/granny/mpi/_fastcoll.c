/* granny.mpi._fastring.Region: the shared-memory collective region of shmcoll.py, in C.
 *
 * Compiled into the optional _fastring extension (setup.py); shmregion.PyRegion is the pure-Python
 * twin with the same layout and methods (GRANNY_MPI_PURE=1, or no compiler). Layout (all offsets in
 * bytes, the mapping is 64-byte aligned):
 *
 *   0                 bell u32 (futex word, bumped by a publisher when someone sleeps) | sleepers u32 @8
 *   64*(1+i)          rank i's flag line: post u64 @0, done u64 @8 (written only by rank i)
 *   64*(1+n) + (2*i+p)*stride   rank i's slot p (p = seq & 1): length i64 @0, aux i64 @8, data @16
 *
 * Protocol (shmcoll.py): every collective of the communicator has a sequence number s (1, 2, ...), the
 * same on every local rank. A rank that publishes data for s writes its slot s & 1 and then post = s;
 * readers wait for post >= s; every rank ends every collective with done = s. Before writing slot
 * s & 1 again (at s + 2), a rank waits until done >= s on every rank: nobody still reads it.
 *
 * Waiting: spin for spin_ns (pause for 3 us, then sched_yield at every check; at once when the host is
 * oversubscribed), then sleep on the
 * bell futex with a timeout, calling the `progress` callable (the p2p engine) after each timeout so
 * that point-to-point traffic keeps moving while a rank waits here. Stores of post/done and the
 * sleepers count are sequentially consistent, so a sleeper cannot miss a wake-up from a C publisher;
 * a Python publisher may miss one only until the timeout.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define coll_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define coll_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define coll_relax() __asm__ __volatile__("" ::: "memory")
#endif

#define LINE 64
#define PURE_SPIN_NS 3000
#define DATA_OFF 16

typedef struct {
    PyObject_HEAD Py_buffer view;
    char *base;
    int n, me;
    Py_ssize_t slot, stride;
    long long spin_ns;
    int yield;
    PyObject *progress;
    uint64_t known_done; /* every rank's done >= this */
} Region;

static inline int64_t coll_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline uint32_t *bell_p(Region *r) { return (uint32_t *)r->base; }
static inline uint32_t *sleepers_p(Region *r) { return (uint32_t *)(r->base + 8); }
static inline uint64_t *post_p(Region *r, int i) { return (uint64_t *)(r->base + LINE * (1 + i)); }
static inline uint64_t *done_p(Region *r, int i) { return post_p(r, i) + 1; }
static inline char *slot_p(Region *r, int i, uint64_t s) {
    return r->base + LINE * (1 + r->n) + (2 * (Py_ssize_t)i + (Py_ssize_t)(s & 1)) * r->stride;
}

static void publish(Region *r, uint64_t *word, uint64_t s) {
    __atomic_store_n(word, s, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(sleepers_p(r), __ATOMIC_SEQ_CST)) {
        __atomic_fetch_add(bell_p(r), 1, __ATOMIC_SEQ_CST);
        syscall(SYS_futex, bell_p(r), FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    }
}

/* who >= 0: that rank's word; who < 0: every rank's. kind 0: post, 1: done */
static inline int ready(Region *r, int kind, int who, uint64_t s) {
    if (who >= 0)
        return __atomic_load_n(kind ? done_p(r, who) : post_p(r, who), __ATOMIC_ACQUIRE) >= s;
    for (int i = 0; i < r->n; i++)
        if (__atomic_load_n(kind ? done_p(r, i) : post_p(r, i), __ATOMIC_ACQUIRE) < s)
            return 0;
    return 1;
}

/* 0 when the condition holds, -1 with an exception set (a signal handler or progress() raised). */
static int wait_for(Region *r, int kind, int who, uint64_t s) {
    if (ready(r, kind, who, s))
        return 0;
    /* A few microseconds of pure spinning catch a peer that is running; after that each check yields,
       so a peer waiting for this core (other processes share the machine, or more ranks than cores)
       gets it at once instead of after this rank's time slice. */
    int64_t start = coll_now(), deadline = start + r->spin_ns, pure = r->yield ? start : start + PURE_SPIN_NS;
    int past_pure = 0;
    for (unsigned i = 1;; i++) {
        int yielding = r->yield || ((i & 15) == 0 && coll_now() > pure) || past_pure;
        past_pure = yielding;
        if (yielding)
            sched_yield();
        else
            coll_relax();
        if (ready(r, kind, who, s))
            return 0;
        if ((yielding || (i & 63) == 0) && coll_now() > deadline)
            break;
    }
    long timeout_ns = 1000000; /* 1 ms, doubling to 20 ms: progress() runs at least that often */
    for (;;) {
        uint32_t bell = __atomic_load_n(bell_p(r), __ATOMIC_SEQ_CST);
        __atomic_fetch_add(sleepers_p(r), 1, __ATOMIC_SEQ_CST);
        if (ready(r, kind, who, s)) {
            __atomic_fetch_sub(sleepers_p(r), 1, __ATOMIC_SEQ_CST);
            return 0;
        }
        struct timespec ts = {timeout_ns / 1000000000, timeout_ns % 1000000000};
        Py_BEGIN_ALLOW_THREADS
        syscall(SYS_futex, bell_p(r), FUTEX_WAIT, bell, &ts, NULL, 0);
        Py_END_ALLOW_THREADS
        __atomic_fetch_sub(sleepers_p(r), 1, __ATOMIC_SEQ_CST);
        if (ready(r, kind, who, s))
            return 0;
        if (PyErr_CheckSignals() < 0)
            return -1;
        if (r->progress != NULL && r->progress != Py_None) {
            PyObject *res = PyObject_CallNoArgs(r->progress);
            if (res == NULL)
                return -1;
            Py_DECREF(res);
        }
        if (timeout_ns < 20000000)
            timeout_ns *= 2;
    }
}

/* Before writing slot s & 1: nobody still reads what it held at s - 2. */
static int wait_slot_free(Region *r, uint64_t s) {
    if (s < 3 || r->known_done >= s - 2)
        return 0;
    if (wait_for(r, 1, -1, s - 2) < 0)
        return -1;
    r->known_done = s - 2;
    return 0;
}

static int as_seq(PyObject *o, uint64_t *s) {
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *s = v;
    return 0;
}

static int Region_init(Region *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"buffer", "n", "me", "slot", "spin_ns", "yield_", "progress", NULL};
    PyObject *buffer, *progress;
    int n, me, yield;
    Py_ssize_t slot;
    long long spin_ns;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OiinLpO", kwlist, &buffer, &n, &me, &slot, &spin_ns, &yield,
                                     &progress))
        return -1;
    if (self->base != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Region is already initialised");
        return -1;
    }
    if (n < 1 || me < 0 || me >= n || slot < 0) {
        PyErr_SetString(PyExc_ValueError, "Region: bad n, me or slot");
        return -1;
    }
    if (PyObject_GetBuffer(buffer, &self->view, PyBUF_WRITABLE) < 0)
        return -1;
    self->stride = (DATA_OFF + slot + LINE - 1) / LINE * LINE;
    if (((uintptr_t)self->view.buf & 63) != 0 || LINE * (1 + n) + 2 * n * self->stride > self->view.len) {
        PyBuffer_Release(&self->view);
        PyErr_SetString(PyExc_ValueError, "Region: the buffer is too small or not 64-byte aligned");
        return -1;
    }
    self->base = self->view.buf;
    self->n = n;
    self->me = me;
    self->slot = slot;
    self->spin_ns = spin_ns;
    self->yield = yield;
    Py_INCREF(progress);
    self->progress = progress;
    self->known_done = 0;
    return 0;
}

static void Region_dealloc(Region *self) {
    if (self->view.obj != NULL)
        PyBuffer_Release(&self->view);
    Py_CLEAR(self->progress);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define CHECK_OPEN(self)                                                                                   \
    if ((self)->base == NULL) {                                                                            \
        PyErr_SetString(PyExc_RuntimeError, "Region is closed");                                           \
        return NULL;                                                                                       \
    }

static PyObject *Region_release(Region *self, PyObject *unused) {
    (void)unused;
    if (self->view.obj != NULL)
        PyBuffer_Release(&self->view);
    self->base = NULL;
    Py_CLEAR(self->progress);
    Py_RETURN_NONE;
}

/* post(s) / done(s) */
static PyObject *Region_post(Region *self, PyObject *arg) {
    uint64_t s;
    CHECK_OPEN(self);
    if (as_seq(arg, &s) < 0)
        return NULL;
    publish(self, post_p(self, self->me), s);
    Py_RETURN_NONE;
}

static PyObject *Region_done(Region *self, PyObject *arg) {
    uint64_t s;
    CHECK_OPEN(self);
    if (as_seq(arg, &s) < 0)
        return NULL;
    publish(self, done_p(self, self->me), s);
    Py_RETURN_NONE;
}

/* wait_post(s, who): who -1 = every rank */
static PyObject *Region_wait_post(Region *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t s;
    CHECK_OPEN(self);
    if (nargs != 2 || as_seq(args[0], &s) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "wait_post(s, who)");
        return NULL;
    }
    long who = PyLong_AsLong(args[1]);
    if (who == -1 && PyErr_Occurred())
        return NULL;
    if (who >= self->n) {
        PyErr_SetString(PyExc_ValueError, "wait_post: no such rank");
        return NULL;
    }
    if (wait_for(self, 0, (int)who, s) < 0)
        return NULL;
    if (who < 0 && s > 0 && self->known_done < s - 1)
        self->known_done = s - 1; /* everyone posted s, so everyone finished s - 1 */
    Py_RETURN_NONE;
}

/* put(s, length, data): wait until slot s & 1 is free, copy data (a buffer or None) in, set length */
static PyObject *Region_put(Region *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t s;
    CHECK_OPEN(self);
    if (nargs != 3 || as_seq(args[0], &s) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "put(s, length, data)");
        return NULL;
    }
    long long length = PyLong_AsLongLong(args[1]);
    if (length == -1 && PyErr_Occurred())
        return NULL;
    if (wait_slot_free(self, s) < 0)
        return NULL;
    char *slot = slot_p(self, self->me, s);
    if (args[2] != Py_None) {
        Py_buffer v;
        if (PyObject_GetBuffer(args[2], &v, PyBUF_C_CONTIGUOUS) < 0)
            return NULL;
        if (v.len > self->slot) {
            PyBuffer_Release(&v);
            PyErr_SetString(PyExc_ValueError, "put: data larger than the slot");
            return NULL;
        }
        memcpy(slot + DATA_OFF, v.buf, (size_t)v.len);
        PyBuffer_Release(&v);
    }
    *(int64_t *)slot = (int64_t)length;
    Py_RETURN_NONE;
}

/* header(s, who) -> the length field of who's slot s & 1 */
static PyObject *Region_header(Region *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t s;
    CHECK_OPEN(self);
    if (nargs != 2 || as_seq(args[0], &s) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "header(s, who)");
        return NULL;
    }
    long who = PyLong_AsLong(args[1]);
    if (who < 0 || who >= self->n) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "header: no such rank");
        return NULL;
    }
    return PyLong_FromLongLong(*(int64_t *)slot_p(self, (int)who, s));
}

/* barrier(s): post, wait for everyone's post, done */
static PyObject *Region_barrier(Region *self, PyObject *arg) {
    uint64_t s;
    CHECK_OPEN(self);
    if (as_seq(arg, &s) < 0)
        return NULL;
    publish(self, post_p(self, self->me), s);
    if (wait_for(self, 0, -1, s) < 0)
        return NULL;
    if (s > 0 && self->known_done < s - 1)
        self->known_done = s - 1;
    publish(self, done_p(self, self->me), s);
    Py_RETURN_NONE;
}

/* A writable/readable plain contiguous buffer; 0 (no exception) when the object is not one. */
static int plain(PyObject *o, Py_buffer *v, int writable) {
    if (PyObject_GetBuffer(o, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* bcast(s, buf, root) -> 1 done; 0 not handled here (larger than the slot; nothing happened);
   -2 the root's message was not in the slot (it said so: take the general path); -3 length mismatch */
static PyObject *Region_bcast(Region *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t s;
    CHECK_OPEN(self);
    if (nargs != 3 || as_seq(args[0], &s) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "bcast(s, buf, root)");
        return NULL;
    }
    long root = PyLong_AsLong(args[2]);
    if (root < 0 || root >= self->n) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "bcast: no such root");
        return NULL;
    }
    int me_root = root == self->me;
    Py_buffer v;
    if (!plain(args[1], &v, !me_root))
        return PyLong_FromLong(0);
    if (v.len > self->slot) {
        PyBuffer_Release(&v);
        return PyLong_FromLong(0);
    }
    long rc = 1;
    if (me_root) {
        if (wait_slot_free(self, s) < 0)
            goto fail;
        char *slot = slot_p(self, self->me, s);
        memcpy(slot + DATA_OFF, v.buf, (size_t)v.len);
        *(int64_t *)slot = (int64_t)v.len;
        publish(self, post_p(self, self->me), s);
    } else {
        if (wait_for(self, 0, (int)root, s) < 0)
            goto fail;
        const char *slot = slot_p(self, (int)root, s);
        int64_t len = *(const int64_t *)slot;
        if (len < 0)
            rc = -2;
        else if (len != v.len)
            rc = -3;
        else
            memcpy(v.buf, slot + DATA_OFF, (size_t)len);
    }
    PyBuffer_Release(&v);
    publish(self, done_p(self, self->me), s);
    return PyLong_FromLong(rc);
fail:
    PyBuffer_Release(&v);
    return NULL;
}

/* bcast_obj(s, data, root): the root publishes a pickle (data) -> True, or, when it is larger than the
   slot, the mark -1 -> False; another rank gets the pickle as bytes, or None for the mark. */
static PyObject *Region_bcast_obj(Region *self, PyObject *const *args, Py_ssize_t nargs) {
    uint64_t s;
    CHECK_OPEN(self);
    if (nargs != 3 || as_seq(args[0], &s) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "bcast_obj(s, data, root)");
        return NULL;
    }
    long root = PyLong_AsLong(args[2]);
    if (root < 0 || root >= self->n) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "bcast_obj: no such root");
        return NULL;
    }
    PyObject *out;
    if (root == self->me) {
        Py_buffer v;
        if (PyObject_GetBuffer(args[1], &v, PyBUF_SIMPLE) < 0)
            return NULL;
        if (wait_slot_free(self, s) < 0) {
            PyBuffer_Release(&v);
            return NULL;
        }
        char *slot = slot_p(self, self->me, s);
        int fits = v.len <= self->slot;
        if (fits)
            memcpy(slot + DATA_OFF, v.buf, (size_t)v.len);
        *(int64_t *)slot = fits ? (int64_t)v.len : -1;
        PyBuffer_Release(&v);
        publish(self, post_p(self, self->me), s);
        out = PyBool_FromLong(fits);
    } else {
        if (wait_for(self, 0, (int)root, s) < 0)
            return NULL;
        const char *slot = slot_p(self, (int)root, s);
        int64_t len = *(const int64_t *)slot;
        if (len < 0) {
            Py_INCREF(Py_None);
            out = Py_None;
        } else {
            out = PyBytes_FromStringAndSize(slot + DATA_OFF, (Py_ssize_t)len);
            if (out == NULL)
                return NULL;
        }
    }
    publish(self, done_p(self, self->me), s);
    return out;
}

#include "_fastfold.h"

/* allreduce(s, src, out, op) / reduce(s, src, out, op, root): 1 done, 0 not handled here (nothing
   happened). src None: in place (out holds this rank's part). Everyone folds the slots in rank order,
   so every rank gets the same bits. */
static PyObject *reduce_common(Region *self, PyObject *const *args, Py_ssize_t nargs, int rooted) {
    uint64_t s;
    CHECK_OPEN(self);
    if (nargs != 4 + rooted || as_seq(args[0], &s) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, rooted ? "reduce(s, src, out, op, root)" : "allreduce(s, src, out, op)");
        return NULL;
    }
    long op = PyLong_AsLong(args[3]);
    long root = rooted ? PyLong_AsLong(args[4]) : -1;
    if (PyErr_Occurred())
        return NULL;
    int receives = !rooted || root == self->me;
    Py_buffer o, in;
    in.obj = NULL;
    o.obj = NULL;
    char fmt = 0;
    if (receives) {
        if (!plain(args[2], &o, 1))
            return PyLong_FromLong(0);
        fmt = (char)supported(&o, (int)op);
    }
    if (args[1] != Py_None) {
        if (!plain(args[1], &in, 0))
            goto unhandled;
        if (receives && (in.len != o.len || strcmp(in.format, o.format) != 0))
            goto unhandled;
        if (!receives)
            fmt = (char)supported(&in, (int)op);
    } else if (!receives) {
        return PyLong_FromLong(0);
    }
    Py_buffer *mine = in.obj != NULL ? &in : &o;
    if (!fmt || mine->len > self->slot || mine->len == 0)
        goto unhandled;
    if (wait_slot_free(self, s) < 0)
        goto fail;
    char *slot = slot_p(self, self->me, s);
    memcpy(slot + DATA_OFF, mine->buf, (size_t)mine->len);
    *(int64_t *)slot = (int64_t)mine->len;
    publish(self, post_p(self, self->me), s);
    if (receives) {
        if (wait_for(self, 0, -1, s) < 0)
            goto fail;
        if (s > 0 && self->known_done < s - 1)
            self->known_done = s - 1;
        Py_ssize_t cnt = o.len / o.itemsize;
        memcpy(o.buf, slot_p(self, 0, s) + DATA_OFF, (size_t)o.len);
        for (int i = 1; i < self->n; i++)
            fold(fmt, (int)op, o.buf, slot_p(self, i, s) + DATA_OFF, cnt);
    }
    if (in.obj != NULL)
        PyBuffer_Release(&in);
    if (o.obj != NULL)
        PyBuffer_Release(&o);
    publish(self, done_p(self, self->me), s);
    return PyLong_FromLong(1);
unhandled:
    if (in.obj != NULL)
        PyBuffer_Release(&in);
    if (o.obj != NULL)
        PyBuffer_Release(&o);
    return PyLong_FromLong(0);
fail:
    if (in.obj != NULL)
        PyBuffer_Release(&in);
    if (o.obj != NULL)
        PyBuffer_Release(&o);
    return NULL;
}

static PyObject *Region_allreduce(Region *self, PyObject *const *args, Py_ssize_t nargs) {
    return reduce_common(self, args, nargs, 0);
}

static PyObject *Region_reduce(Region *self, PyObject *const *args, Py_ssize_t nargs) {
    return reduce_common(self, args, nargs, 1);
}

static PyMethodDef Region_methods[] = {
    {"post", (PyCFunction)Region_post, METH_O, "post(s): this rank published its part of collective s"},
    {"done", (PyCFunction)Region_done, METH_O, "done(s): this rank has finished collective s"},
    {"wait_post", (PyCFunction)(void (*)(void))Region_wait_post, METH_FASTCALL,
     "wait_post(s, who): until rank who (-1: every rank) posted s"},
    {"put", (PyCFunction)(void (*)(void))Region_put, METH_FASTCALL,
     "put(s, length, data): data (a buffer or None) into this rank's slot s & 1, once it is free"},
    {"header", (PyCFunction)(void (*)(void))Region_header, METH_FASTCALL,
     "header(s, who): the length field of who's slot s & 1"},
    {"barrier", (PyCFunction)Region_barrier, METH_O, "barrier(s)"},
    {"bcast", (PyCFunction)(void (*)(void))Region_bcast, METH_FASTCALL,
     "bcast(s, buf, root) -> 1 done, 0 not handled, -2 root sent it elsewhere, -3 length mismatch"},
    {"bcast_obj", (PyCFunction)(void (*)(void))Region_bcast_obj, METH_FASTCALL,
     "bcast_obj(s, data, root) -> root: True published, False too large (marked); others: bytes or None"},
    {"allreduce", (PyCFunction)(void (*)(void))Region_allreduce, METH_FASTCALL,
     "allreduce(s, src, out, op) -> 1 done, 0 not handled (nothing happened)"},
    {"reduce", (PyCFunction)(void (*)(void))Region_reduce, METH_FASTCALL,
     "reduce(s, src, out, op, root) -> 1 done, 0 not handled (nothing happened)"},
    {"release", (PyCFunction)Region_release, METH_NOARGS, "release(): drop the buffer (the mapping may close)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RegionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "granny.mpi._fastring.Region",
    .tp_basicsize = sizeof(Region),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Region(buffer, n, me, slot, spin_ns, yield_, progress): a collective region (shmcoll.py)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Region_init,
    .tp_dealloc = (destructor)Region_dealloc,
    .tp_methods = Region_methods,
};

int fastcma_add_functions(PyObject *m); /* _fastcma.c */

int fastcoll_add_types(PyObject *m) {
    if (fastcma_add_functions(m) < 0)
        return -1;
    if (PyType_Ready(&RegionType) < 0)
        return -1;
    Py_INCREF(&RegionType);
    if (PyModule_AddObject(m, "Region", (PyObject *)&RegionType) < 0) {
        Py_DECREF(&RegionType);
        return -1;
    }
    return 0;
}
