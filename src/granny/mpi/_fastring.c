/* granny.mpi._fastring: the shared-memory ring of shm.py, in C, for the small-message fast path.
 *
 * Optional: shm.py falls back to its pure-Python Producer/Consumer when this module is missing (it
 * did not compile) or GRANNY_MPI_PURE=1. The ring format is exactly the Python one (see shm.py):
 *
 *   ring  = head u64 (own cache line, written by the producer) | tail u64 (own line, consumer)
 *           | data area of `size` bytes (a power of two)
 *   record = 32-byte header "<BBxxiiiQQ" (kind, flags, ctx, src, tag, arg, payload length) + payload,
 *            64-byte aligned; a PAD record (kind 0xFF, length = gap) fills the end of the data area
 *            when the next record would not fit before it.
 *
 * Producer and Consumer are base classes of shm.FastProducer/FastConsumer. They keep the ring state
 * (head, tail_cache / tail) as members, so the Python code that still handles the general cases
 * (fabric.progress, Engine) reads and writes the same counters. The fast methods:
 *
 *   Producer.send_buf(array, ctx, tag) -> 1 sent, 0 ring full, -1 not handled (not a plain ndarray,
 *        too large ...): the caller takes the general path.
 *   Producer.send_obj(pickle, ctx, tag) -> the same for a pickled object (a K_OBJ record).
 *   Consumer.recv_buf(array, ctx, tag, spin_ns) -> payload length (>= 0) when the next record of the
 *        ring was the simple match and went straight into the array; -1 the array is not a plain
 *        writable ndarray; -2 nothing arrived within spin_ns, or the next record needs the general
 *        path (another context or tag, a PAD, a rendezvous, a synchronous send, truncation ...).
 *   Consumer.recv_obj(ctx, tag, spin_ns, max_bytes) -> the pickle of the next record (a bytearray)
 *        when it is the simple match; False when it is but is larger than max_bytes (the caller
 *        unpickles it in place, Engine.recv_direct); None for the general path, as recv_buf's -2.
 *
 * Both ring the peer's doorbell (a datagram to an abstract unix socket) when its sleeping flag is set:
 * the producer after publishing a record, the consumer after freeing room. Counters are published with
 * sequentially consistent stores, so together with set_flag (the sleeper's flag, also seq_cst) a wake-up
 * between two C sides cannot be lost; Python sides keep the millisecond safety timeout of fabric.py.
 *
 * The GIL is held throughout, as the Python spin held it: a spin is bounded (spin_ns, 30 us from p2p.py),
 * so another thread of the process waits at most that long.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>

#define K_BUF 1
#define K_OBJ 2
#define K_RTS_BUF 3
#define K_ACK 5
#define K_PAD 0xFF
#define RTS_SIZE 20 /* struct "<iQQ": pid, address, length (p2p.RTS) */
#define HEADER 32
#define ANY_TAG (-1)

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() __asm__ __volatile__("" ::: "memory")
#endif

typedef struct {
    uint8_t kind;
    uint8_t flags;
    uint8_t pad[2];
    int32_t ctx;
    int32_t src;
    int32_t tag;
    uint64_t arg;
    uint64_t plen;
} Header;

_Static_assert(sizeof(Header) == HEADER, "record header is 32 bytes");
_Static_assert(offsetof(Header, ctx) == 4 && offsetof(Header, arg) == 16 && offsetof(Header, plen) == 24,
               "record header layout is struct '<BBxxiiiQQ'");

static PyTypeObject *ndarray_type = NULL; /* numpy.ndarray, looked up on first use */

/* ------------------------------------------------------------------------------------------ helpers */

typedef struct {
    int fd; /* -1: no doorbell */
    struct sockaddr_un addr;
    socklen_t len;
} Bell;

static void bell_ring(Bell *b) {
    if (b->fd >= 0) {
        /* errors are ignored as in shm.Doorbell.ring: a full queue means it wakes anyway, a missing
           socket means it has gone */
        (void)sendto(b->fd, "!", 1, MSG_DONTWAIT, (struct sockaddr *)&b->addr, b->len);
    }
}

static int bell_set(Bell *b, PyObject *args) {
    int fd;
    const char *name;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "iy#", &fd, &name, &n))
        return -1;
    if (fd < 0) { /* no doorbell (any more): the fabric closed its socket, whose number may be reused */
        b->fd = -1;
        return 0;
    }
    if (n <= 0 || (size_t)n > sizeof(b->addr.sun_path)) {
        PyErr_SetString(PyExc_ValueError, "doorbell name must be 1..108 bytes");
        return -1;
    }
    memset(&b->addr, 0, sizeof(b->addr));
    b->addr.sun_family = AF_UNIX;
    memcpy(b->addr.sun_path, name, (size_t)n);
    b->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n);
    b->fd = fd;
    return 0;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A plain C-contiguous ndarray (what buffer_bytes takes without parse_buffer): 1 with the view
   acquired, 0 not eligible (no exception left set). */
static int get_plain_array(PyObject *obj, Py_buffer *view, int writable) {
    if (ndarray_type == NULL) {
        PyObject *np = PyImport_ImportModule("numpy");
        if (np == NULL) {
            PyErr_Clear();
            return 0;
        }
        PyObject *t = PyObject_GetAttrString(np, "ndarray");
        Py_DECREF(np);
        if (t == NULL || !PyType_Check(t)) {
            Py_XDECREF(t);
            PyErr_Clear();
            return 0;
        }
        ndarray_type = (PyTypeObject *)t; /* kept for the life of the process */
    }
    if (Py_TYPE(obj) != ndarray_type)
        return 0;
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0) {
        PyErr_Clear(); /* not contiguous, read-only, no buffer export: the general path says why */
        return 0;
    }
    if (view->ndim == 0 || (view->format != NULL && view->format[0] == 'O' && view->format[1] == '\0')) {
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

static int as_int32(PyObject *o, int32_t *out) {
    if (!PyLong_CheckExact(o))
        return 0;
    int overflow;
    long v = PyLong_AsLongAndOverflow(o, &overflow);
    if (overflow || v < INT32_MIN || v > INT32_MAX)
        return 0;
    *out = (int32_t)v;
    return 1;
}

/* The ring inside an inbox mapping: `buffer` is the whole mapping, `offset` where the ring (its head
   line) starts, `size` the bytes of its data area. */
typedef struct {
    Py_buffer view;
    char *data;
    uint64_t *head_p;
    uint64_t *tail_p;
    uint64_t size;
    uint64_t mask;
} Ring;

static int ring_open(Ring *r, PyObject *buffer, Py_ssize_t offset, Py_ssize_t size) {
    if (size <= 0 || (size & (size - 1)) != 0 || offset < 0 || (offset & 63) != 0) {
        PyErr_SetString(PyExc_ValueError, "ring: size must be a power of two and offset 64-byte aligned");
        return -1;
    }
    if (PyObject_GetBuffer(buffer, &r->view, PyBUF_WRITABLE) < 0)
        return -1;
    if (offset + 128 + size > r->view.len || ((uintptr_t)r->view.buf & 63) != 0) {
        PyBuffer_Release(&r->view);
        PyErr_SetString(PyExc_ValueError, "ring: out of the buffer, or the buffer is not 64-byte aligned");
        return -1;
    }
    char *base = (char *)r->view.buf + offset;
    r->head_p = (uint64_t *)base;
    r->tail_p = (uint64_t *)(base + 64);
    r->data = base + 128;
    r->size = (uint64_t)size;
    r->mask = (uint64_t)size - 1;
    return 0;
}

static void ring_close(Ring *r) {
    if (r->view.obj != NULL)
        PyBuffer_Release(&r->view);
    r->data = NULL;
}

/* A flag word (a sleeping flag) somewhere in a buffer; NULL until set. */
static int flag_at(PyObject *buffer, Py_ssize_t index, Py_buffer *view, uint64_t **out) {
    if (PyObject_GetBuffer(buffer, view, PyBUF_WRITABLE) < 0)
        return -1;
    if (index < 0 || (index + 1) * 8 > view->len || ((uintptr_t)view->buf & 7) != 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "flag index out of the buffer");
        return -1;
    }
    *out = (uint64_t *)view->buf + index;
    return 0;
}

/* ----------------------------------------------------------------------------------------- Producer */

typedef struct {
    PyObject_HEAD Ring ring;
    unsigned long long head;
    unsigned long long tail_cache;
    int src; /* this rank: the src field of its records */
    Py_buffer peer_view;
    uint64_t *peer_sleeping; /* the consumer's sleeping flag (words[0] of the inbox the ring is in) */
    Bell bell;
    Py_ssize_t eager;
    Py_ssize_t buf_eager; /* send_buf's limit (<= eager): larger arrays go by send_rndv */
    long long rndv_spin_max; /* send_rndv's cap on the spin it adds for the copy's expected time (ns) */
} Producer;

static int Producer_init(Producer *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"buffer", "offset", "size", "src", "eager", NULL};
    PyObject *buffer;
    Py_ssize_t offset, size, eager;
    int src;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Onnin", kwlist, &buffer, &offset, &size, &src, &eager))
        return -1;
    if (self->ring.data != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Producer is already initialised");
        return -1;
    }
    if (ring_open(&self->ring, buffer, offset, size) < 0)
        return -1;
    if (flag_at(buffer, 0, &self->peer_view, &self->peer_sleeping) < 0) {
        ring_close(&self->ring);
        return -1;
    }
    self->head = __atomic_load_n(self->ring.head_p, __ATOMIC_RELAXED);
    self->tail_cache = __atomic_load_n(self->ring.tail_p, __ATOMIC_ACQUIRE);
    self->src = src;
    self->eager = eager;
    self->buf_eager = eager;
    self->rndv_spin_max = 1000000;
    self->bell.fd = -1;
    return 0;
}

static void Producer_dealloc(Producer *self) {
    ring_close(&self->ring);
    if (self->peer_view.obj != NULL)
        PyBuffer_Release(&self->peer_view);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Room for a record of `size` bytes (header + payload, aligned): its position, the gap to pad first
   (0 or the rest of the data area), or -1 when the ring is full now. */
static inline int64_t reserve(Producer *p, uint64_t size, uint64_t *gap_out) {
    Ring *r = &p->ring;
    uint64_t head = p->head;
    uint64_t pos = head & r->mask;
    uint64_t room = r->size - pos;
    uint64_t gap = room < size ? room : 0;
    if (head + gap + size - p->tail_cache > r->size) {
        p->tail_cache = __atomic_load_n(r->tail_p, __ATOMIC_ACQUIRE);
        if (head + gap + size - p->tail_cache > r->size)
            return -1;
    }
    *gap_out = gap;
    return (int64_t)pos;
}

static inline void put_record(Producer *p, uint8_t kind, uint8_t flags, int32_t ctx, int32_t src, int32_t tag,
                              uint64_t arg, const void *payload, uint64_t plen, uint64_t size, uint64_t gap,
                              uint64_t pos) {
    Ring *r = &p->ring;
    uint64_t head = p->head;
    if (gap) {
        Header *pad = (Header *)(r->data + pos);
        memset(pad, 0, HEADER);
        pad->kind = K_PAD;
        pad->plen = gap;
        head += gap;
        pos = 0;
    }
    Header *h = (Header *)(r->data + pos);
    h->kind = kind;
    h->flags = flags;
    h->pad[0] = h->pad[1] = 0;
    h->ctx = ctx;
    h->src = src;
    h->tag = tag;
    h->arg = arg;
    h->plen = plen;
    if (plen)
        memcpy(r->data + pos + HEADER, payload, plen);
    p->head = head + size;
    /* publish: the record is complete before head moves; seq_cst so that the peer_sleeping load after
       it is not ordered before it (see the module comment) */
    __atomic_store_n(r->head_p, p->head, __ATOMIC_SEQ_CST);
}

/* One eager record of `kind` from this rank, then the doorbell: 1 sent, 0 ring full. */
static inline long send_record(Producer *self, uint8_t kind, int32_t ctx, int32_t tag, const void *buf,
                               uint64_t plen) {
    uint64_t size = (plen + HEADER + 63) & ~(uint64_t)63, gap;
    int64_t pos = reserve(self, size, &gap);
    if (pos < 0)
        return 0;
    put_record(self, kind, 0, ctx, self->src, tag, 0, buf, plen, size, gap, (uint64_t)pos);
    if (__atomic_load_n(self->peer_sleeping, __ATOMIC_SEQ_CST))
        bell_ring(&self->bell);
    return 1;
}

static PyObject *Producer_send_buf(Producer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "send_buf(array, ctx, tag)");
        return NULL;
    }
    int32_t ctx, tag;
    if (self->ring.data == NULL || !as_int32(args[1], &ctx) || !as_int32(args[2], &tag))
        return PyLong_FromLong(-1);
    Py_buffer view;
    if (!get_plain_array(args[0], &view, 0))
        return PyLong_FromLong(-1);
    long rc = view.len > self->buf_eager ? -1 : send_record(self, K_BUF, ctx, tag, view.buf, (uint64_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromLong(rc);
}

static PyObject *Producer_send_obj(Producer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "send_obj(pickle, ctx, tag)");
        return NULL;
    }
    int32_t ctx, tag;
    if (self->ring.data == NULL || !as_int32(args[1], &ctx) || !as_int32(args[2], &tag))
        return PyLong_FromLong(-1);
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return PyLong_FromLong(-1);
    }
    long rc = view.len > self->eager ? -1 : send_record(self, K_OBJ, ctx, tag, view.buf, (uint64_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromLong(rc);
}

static PyObject *Producer_try_put(Producer *self, PyObject *const *args, Py_ssize_t nargs) {
    /* try_put(kind, flags, ctx, src, tag, arg, payload, plen) -> bool, as shm.Producer.try_put */
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "try_put(kind, flags, ctx, src, tag, arg, payload, plen)");
        return NULL;
    }
    if (self->ring.data == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Producer is not initialised");
        return NULL;
    }
    long kind = PyLong_AsLong(args[0]);
    long flags = PyLong_AsLong(args[1]);
    long ctx = PyLong_AsLong(args[2]);
    long src = PyLong_AsLong(args[3]);
    long tag = PyLong_AsLong(args[4]);
    unsigned long long arg = PyLong_AsUnsignedLongLongMask(args[5]);
    Py_ssize_t plen = PyLong_AsSsize_t(args[7]);
    if (PyErr_Occurred())
        return NULL;
    if (kind < 0 || kind > 255 || flags < 0 || flags > 255 || ctx < INT32_MIN || ctx > INT32_MAX ||
        src < INT32_MIN || src > INT32_MAX || tag < INT32_MIN || tag > INT32_MAX || plen < 0) {
        PyErr_SetString(PyExc_OverflowError, "try_put: a header field is out of range");
        return NULL;
    }
    uint64_t size = ((uint64_t)plen + HEADER + 63) & ~(uint64_t)63, gap;
    int64_t pos = reserve(self, size, &gap);
    if (pos < 0)
        Py_RETURN_FALSE;
    Py_buffer view;
    view.obj = NULL;
    const void *src_bytes = NULL;
    if (plen) {
        if (PyObject_GetBuffer(args[6], &view, PyBUF_SIMPLE) < 0)
            return NULL;
        if (view.len != plen) {
            PyBuffer_Release(&view);
            PyErr_Format(PyExc_ValueError, "try_put: payload has %zd bytes, plen says %zd", view.len, plen);
            return NULL;
        }
        src_bytes = view.buf;
    }
    put_record(self, (uint8_t)kind, (uint8_t)flags, (int32_t)ctx, (int32_t)src, (int32_t)tag, (uint64_t)arg,
               src_bytes, (uint64_t)plen, size, gap, (uint64_t)pos);
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    Py_RETURN_TRUE;
}

static PyObject *Producer_set_bell(Producer *self, PyObject *args) {
    if (bell_set(&self->bell, args) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Producer_send_rndv(Producer *self, PyObject *const *args, Py_ssize_t nargs);

static PyMethodDef Producer_methods[] = {
    {"send_rndv", (PyCFunction)(void (*)(void))Producer_send_rndv, METH_FASTCALL,
     "send_rndv(array, ctx, tag, mid, pid, consumer, spin_ns) -> 1 sent and acknowledged, 2 sent (the ACK "
     "is still to come: the general wait), 0 ring full, -1 not handled here"},
    {"send_buf", (PyCFunction)(void (*)(void))Producer_send_buf, METH_FASTCALL,
     "send_buf(array, ctx, tag) -> 1 sent, 0 ring full, -1 not handled here"},
    {"send_obj", (PyCFunction)(void (*)(void))Producer_send_obj, METH_FASTCALL,
     "send_obj(pickle, ctx, tag) -> 1 sent, 0 ring full, -1 not handled here (too large)"},
    {"try_put", (PyCFunction)(void (*)(void))Producer_try_put, METH_FASTCALL,
     "try_put(kind, flags, ctx, src, tag, arg, payload, plen) -> False if the ring has no room now"},
    {"set_bell", (PyCFunction)Producer_set_bell, METH_VARARGS,
     "set_bell(fd, name): ring the consumer's doorbell (abstract socket name) from datagram socket fd; "
     "fd -1: never"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Producer_members[] = {
    {"head", T_ULONGLONG, offsetof(Producer, head), 0, "next write position (a byte counter)"},
    {"tail_cache", T_ULONGLONG, offsetof(Producer, tail_cache), 0, "the consumer's tail, as last read"},
    {"src", T_INT, offsetof(Producer, src), READONLY, "this rank"},
    {"buf_eager", T_PYSSIZET, offsetof(Producer, buf_eager), 0,
     "send_buf moves arrays up to this many bytes through the ring; larger ones go by send_rndv"},
    {"rndv_spin_max", T_LONGLONG, offsetof(Producer, rndv_spin_max), 0,
     "the most send_rndv spins (ns) beyond its spin_ns for the copy's expected time"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ProducerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "granny.mpi._fastring.Producer",
    .tp_basicsize = sizeof(Producer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Producer(buffer, offset, size, src, eager): this rank's ring in a peer's inbox",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Producer_init,
    .tp_dealloc = (destructor)Producer_dealloc,
    .tp_methods = Producer_methods,
    .tp_members = Producer_members,
};

/* ----------------------------------------------------------------------------------------- Consumer */

typedef struct {
    PyObject_HEAD Ring ring;
    unsigned long long tail;
    int src;      /* the sender */
    int last_tag; /* tag of the last record recv_buf took */
    Py_buffer peer_view;
    uint64_t *peer_sleeping; /* the producer's sleeping flag (words[0] of its own inbox), or NULL */
    Bell bell;
    Producer *ack;          /* this rank's ring to the sender: where recv_buf acknowledges a rendezvous */
    unsigned long long last_arg; /* the message id whose ACK found no room (recv_buf returned -3) */
    unsigned long long last_len; /* the length of that message */
} Consumer;

static int Consumer_init(Consumer *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"buffer", "offset", "size", "src", NULL};
    PyObject *buffer;
    Py_ssize_t offset, size;
    int src;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Onni", kwlist, &buffer, &offset, &size, &src))
        return -1;
    if (self->ring.data != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Consumer is already initialised");
        return -1;
    }
    if (ring_open(&self->ring, buffer, offset, size) < 0)
        return -1;
    self->tail = __atomic_load_n(self->ring.tail_p, __ATOMIC_RELAXED);
    self->src = src;
    self->bell.fd = -1;
    return 0;
}

static void Consumer_dealloc(Consumer *self) {
    Py_CLEAR(self->ack);
    ring_close(&self->ring);
    if (self->peer_view.obj != NULL)
        PyBuffer_Release(&self->peer_view);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Consumer_set_peer(Consumer *self, PyObject *buffer) {
    /* set_peer(buffer): the producer's own inbox; its sleeping flag is word 0 */
    if (self->peer_view.obj != NULL) {
        PyBuffer_Release(&self->peer_view);
        self->peer_sleeping = NULL;
    }
    if (flag_at(buffer, 0, &self->peer_view, &self->peer_sleeping) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Consumer_set_ack(Consumer *self, PyObject *producer) {
    /* set_ack(producer | None): this rank's Producer into the sender's inbox, for rendezvous ACKs */
    if (producer != Py_None && !PyObject_TypeCheck(producer, &ProducerType)) {
        PyErr_SetString(PyExc_TypeError, "set_ack(Producer or None)");
        return NULL;
    }
    Py_CLEAR(self->ack);
    if (producer != Py_None) {
        Py_INCREF(producer);
        self->ack = (Producer *)producer;
    }
    Py_RETURN_NONE;
}

/* process_vm_readv of n bytes at address of process pid into buf, the GIL released: 0 or an errno */
static int cma_copy(long pid, uint64_t address, char *buf, size_t n) {
    size_t done = 0;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    while (done < n) {
        struct iovec local = {buf + done, n - done};
        struct iovec remote = {(void *)(uintptr_t)(address + done), n - done};
        ssize_t got = process_vm_readv((pid_t)pid, &local, 1, &remote, 1, 0);
        if (got <= 0) {
            err = got < 0 ? errno : EIO;
            break;
        }
        done += (size_t)got;
    }
    Py_END_ALLOW_THREADS
    return err;
}

static PyObject *Consumer_set_bell(Consumer *self, PyObject *args) {
    if (bell_set(&self->bell, args) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Spin up to spin_ns for a record in the ring: 1 there is one at tail, 0 none came. */
static inline int wait_record(Consumer *self, long long spin_ns) {
    const uint64_t *head_p = self->ring.head_p;
    uint64_t tail = self->tail;
    if (__atomic_load_n(head_p, __ATOMIC_ACQUIRE) != tail)
        return 1;
    int64_t deadline = now_ns() + spin_ns;
    for (unsigned i = 1;; i++) {
        cpu_relax();
        if (__atomic_load_n(head_p, __ATOMIC_ACQUIRE) != tail)
            return 1;
        if ((i & 63) == 0 && now_ns() > deadline)
            return 0;
    }
}

/* The record at tail (payload plen) has been taken: free it, and wake a producer waiting for room. */
static inline void consumed(Consumer *self, uint64_t plen, int32_t rtag) {
    self->tail += (plen + HEADER + 63) & ~(uint64_t)63;
    __atomic_store_n(self->ring.tail_p, self->tail, __ATOMIC_SEQ_CST);
    self->last_tag = rtag;
    if (self->peer_sleeping != NULL && __atomic_load_n(self->peer_sleeping, __ATOMIC_SEQ_CST))
        bell_ring(&self->bell); /* it may sleep waiting for room in this ring */
}

static PyObject *Consumer_recv_buf(Consumer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "recv_buf(array, ctx, tag, spin_ns)");
        return NULL;
    }
    int32_t ctx, tag;
    long long spin_ns = PyLong_AsLongLong(args[3]);
    if (spin_ns == -1 && PyErr_Occurred())
        return NULL;
    if (self->ring.data == NULL || !as_int32(args[1], &ctx) || !as_int32(args[2], &tag))
        return PyLong_FromLong(-1);
    Py_buffer view;
    if (!get_plain_array(args[0], &view, 1))
        return PyLong_FromLong(-1);
    Ring *r = &self->ring;
    uint64_t tail = self->tail;
    if (!wait_record(self, spin_ns)) {
        PyBuffer_Release(&view);
        return PyLong_FromLong(-2);
    }
    const Header *h = (const Header *)(r->data + (tail & r->mask));
    int32_t rtag = h->tag;
    uint64_t plen = h->plen;
    if (h->kind == K_RTS_BUF && h->flags == 0 && h->ctx == ctx && plen == RTS_SIZE && self->ack != NULL &&
        (rtag == tag || (tag == ANY_TAG && rtag >= 0))) {
        /* a rendezvous (p2p.py): copy straight out of the sender's buffer, then acknowledge it here, so
           the sender (spinning in send_rndv) returns without a detour through the Python engine */
        const char *rts = (const char *)h + HEADER;
        int32_t pid;
        uint64_t address, n, mid = h->arg;
        memcpy(&pid, rts, 4);
        memcpy(&address, rts + 4, 8);
        memcpy(&n, rts + 12, 8);
        if (n > (uint64_t)view.len || (n && cma_copy(pid, address, view.buf, (size_t)n) != 0)) {
            PyBuffer_Release(&view); /* truncation or a failed read: the general path reports it */
            return PyLong_FromLong(-2);
        }
        PyBuffer_Release(&view);
        consumed(self, RTS_SIZE, rtag);
        Producer *a = self->ack;
        uint64_t gap;
        int64_t pos = reserve(a, 64, &gap);
        if (pos < 0) { /* no room for the ACK now: the caller defers it (Engine.deferred) */
            self->last_arg = mid;
            self->last_len = n;
            return PyLong_FromLong(-3);
        }
        put_record(a, K_ACK, 0, 0, a->src, 0, mid, NULL, 0, 64, gap, (uint64_t)pos);
        if (__atomic_load_n(a->peer_sleeping, __ATOMIC_SEQ_CST))
            bell_ring(&a->bell);
        return PyLong_FromUnsignedLongLong(n);
    }
    if (h->kind != K_BUF || h->flags != 0 || h->ctx != ctx || plen > (uint64_t)view.len ||
        !(rtag == tag || (tag == ANY_TAG && rtag >= 0))) {
        PyBuffer_Release(&view); /* a PAD, a rendezvous, another context or tag: the general path sorts it out */
        return PyLong_FromLong(-2);
    }
    if (plen)
        memcpy(view.buf, (const char *)h + HEADER, plen);
    PyBuffer_Release(&view);
    consumed(self, plen, rtag);
    return PyLong_FromUnsignedLongLong(plen);
}

static PyObject *Consumer_recv_obj(Consumer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "recv_obj(ctx, tag, spin_ns, max_bytes)");
        return NULL;
    }
    int32_t ctx, tag;
    long long spin_ns = PyLong_AsLongLong(args[2]);
    Py_ssize_t max_bytes = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred())
        return NULL;
    if (self->ring.data == NULL || !as_int32(args[0], &ctx) || !as_int32(args[1], &tag))
        Py_RETURN_NONE;
    if (!wait_record(self, spin_ns))
        Py_RETURN_NONE;
    const Header *h = (const Header *)(self->ring.data + (self->tail & self->ring.mask));
    int32_t rtag = h->tag;
    uint64_t plen = h->plen;
    if (h->kind != K_OBJ || h->flags != 0 || h->ctx != ctx || !(rtag == tag || (tag == ANY_TAG && rtag >= 0)))
        Py_RETURN_NONE;
    if (plen > (uint64_t)max_bytes)
        Py_RETURN_FALSE; /* the match, but large: recv_direct unpickles it in place */
    PyObject *out = PyByteArray_FromStringAndSize((const char *)h + HEADER, (Py_ssize_t)plen);
    if (out == NULL)
        return NULL;
    consumed(self, plen, rtag);
    return out;
}

static PyMethodDef Consumer_methods[] = {
    {"recv_buf", (PyCFunction)(void (*)(void))Consumer_recv_buf, METH_FASTCALL,
     "recv_buf(array, ctx, tag, spin_ns) -> length received, -1 array not handled here, -2 general path"},
    {"recv_obj", (PyCFunction)(void (*)(void))Consumer_recv_obj, METH_FASTCALL,
     "recv_obj(ctx, tag, spin_ns, max_bytes) -> the pickle (a bytearray), None general path, False recv_direct"},
    {"set_peer", (PyCFunction)Consumer_set_peer, METH_O,
     "set_peer(buffer): the producer's own inbox (its sleeping flag is word 0)"},
    {"set_ack", (PyCFunction)Consumer_set_ack, METH_O,
     "set_ack(producer | None): this rank's ring to the sender, where recv_buf acknowledges rendezvous"},
    {"set_bell", (PyCFunction)Consumer_set_bell, METH_VARARGS,
     "set_bell(fd, name): ring the producer's doorbell (abstract socket name) from datagram socket fd; "
     "fd -1: never"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Consumer_members[] = {
    {"tail", T_ULONGLONG, offsetof(Consumer, tail), 0, "next read position (a byte counter)"},
    {"src", T_INT, offsetof(Consumer, src), READONLY, "the sender"},
    {"last_tag", T_INT, offsetof(Consumer, last_tag), READONLY, "tag of the last record recv_buf took"},
    {"last_arg", T_ULONGLONG, offsetof(Consumer, last_arg), READONLY,
     "after recv_buf returned -3: the id of the message whose ACK is still to be sent"},
    {"last_len", T_ULONGLONG, offsetof(Consumer, last_len), READONLY, "after recv_buf returned -3: its length"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ConsumerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "granny.mpi._fastring.Consumer",
    .tp_basicsize = sizeof(Consumer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Consumer(buffer, offset, size, src): the ring of one sender in this rank's inbox",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Consumer_init,
    .tp_dealloc = (destructor)Consumer_dealloc,
    .tp_methods = Consumer_methods,
    .tp_members = Consumer_members,
};

/* send_rndv(array, ctx, tag, mid, pid, consumer, spin_ns): a rendezvous send of a plain ndarray larger
   than buf_eager (p2p.py: an RTS record with this process's pid and the array's address), then a spin,
   the GIL released, for the ACK, which the receiver sends once it has copied the array (recv_buf). The
   spin lasts spin_ns plus the time the copy should take at 2 bytes/ns, at most rndv_spin_max (1 ms; a
   longer spin measured worse for 16 MiB on a loaded host: it holds a core the copy could use): the sender
   would otherwise sleep, and pay a wake-up, on every message that takes longer than its 100 us spin.
   Returns 1 sent and acknowledged (the ACK taken off the consumer's ring); 2 sent, but the next record
   from that peer is not yet this ACK (the caller registers the send and waits, the general path);
   0 no room for the RTS; -1 not handled here (not a plain ndarray, or small enough for send_buf). */
static PyObject *Producer_send_rndv(Producer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7 || !PyObject_TypeCheck(args[5], &ConsumerType)) {
        PyErr_SetString(PyExc_TypeError, "send_rndv(array, ctx, tag, mid, pid, consumer, spin_ns)");
        return NULL;
    }
    int32_t ctx, tag, pid;
    unsigned long long mid = PyLong_AsUnsignedLongLong(args[3]);
    long long spin_ns = PyLong_AsLongLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    if (self->ring.data == NULL || !as_int32(args[1], &ctx) || !as_int32(args[2], &tag) || !as_int32(args[4], &pid))
        return PyLong_FromLong(-1);
    Py_buffer view;
    if (!get_plain_array(args[0], &view, 0))
        return PyLong_FromLong(-1);
    if (view.len <= self->buf_eager) {
        PyBuffer_Release(&view);
        return PyLong_FromLong(-1);
    }
    char rts[RTS_SIZE];
    uint64_t address = (uint64_t)(uintptr_t)view.buf, n = (uint64_t)view.len;
    PyBuffer_Release(&view); /* the caller keeps the array alive until the ACK */
    memcpy(rts, &pid, 4);
    memcpy(rts + 4, &address, 8);
    memcpy(rts + 12, &n, 8);
    uint64_t size = (RTS_SIZE + HEADER + 63) & ~(uint64_t)63, gap;
    int64_t pos = reserve(self, size, &gap);
    if (pos < 0)
        return PyLong_FromLong(0);
    put_record(self, K_RTS_BUF, 0, ctx, self->src, tag, mid, rts, RTS_SIZE, size, gap, (uint64_t)pos);
    if (__atomic_load_n(self->peer_sleeping, __ATOMIC_SEQ_CST))
        bell_ring(&self->bell);
    Consumer *c = (Consumer *)args[5];
    if (c->ring.data == NULL)
        return PyLong_FromLong(2);
    long long extra = (long long)(n / 2);
    spin_ns += extra < self->rndv_spin_max ? extra : self->rndv_spin_max;
    const uint64_t *head_p = c->ring.head_p;
    uint64_t tail = c->tail;
    int arrived = 0;
    if (spin_ns > 0) {
        Py_BEGIN_ALLOW_THREADS
        int64_t deadline = now_ns() + spin_ns;
        for (unsigned i = 1;; i++) {
            if (__atomic_load_n(head_p, __ATOMIC_ACQUIRE) != tail) {
                arrived = 1;
                break;
            }
            cpu_relax();
            if ((i & 63) == 0 && now_ns() > deadline)
                break;
        }
        Py_END_ALLOW_THREADS
    }
    if (!arrived || c->tail != tail)
        return PyLong_FromLong(2);
    const Header *h = (const Header *)(c->ring.data + (tail & c->ring.mask));
    if (h->kind != K_ACK || h->arg != mid)
        return PyLong_FromLong(2);
    int32_t last = c->last_tag;
    consumed(c, 0, 0);
    c->last_tag = last; /* an ACK is no message: keep what the last receive saw */
    return PyLong_FromLong(1);
}

/* ------------------------------------------------------------------------------------------- module */

static PyObject *set_flag(PyObject *mod, PyObject *args) {
    /* set_flag(buffer, index, value): a sequentially consistent store of u64 word `index` */
    (void)mod;
    PyObject *buffer;
    Py_ssize_t index;
    unsigned long long value;
    if (!PyArg_ParseTuple(args, "OnK", &buffer, &index, &value))
        return NULL;
    Py_buffer view;
    uint64_t *p;
    if (flag_at(buffer, index, &view, &p) < 0)
        return NULL;
    __atomic_store_n(p, (uint64_t)value, __ATOMIC_SEQ_CST);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_flag", set_flag, METH_VARARGS, "set_flag(buffer, index, value): seq_cst store of a u64 word"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "granny.mpi._fastring", "The shared-memory ring of shm.py in C (optional).", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

int fastcoll_add_types(PyObject *m); /* _fastcoll.c: the collective region of shmcoll.py */

PyMODINIT_FUNC PyInit__fastring(void) {
    if (PyType_Ready(&ProducerType) < 0 || PyType_Ready(&ConsumerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ProducerType);
    Py_INCREF(&ConsumerType);
    if (PyModule_AddObject(m, "Producer", (PyObject *)&ProducerType) < 0 ||
        PyModule_AddObject(m, "Consumer", (PyObject *)&ConsumerType) < 0 ||
        PyModule_AddIntConstant(m, "K_BUF", K_BUF) < 0 || PyModule_AddIntConstant(m, "K_OBJ", K_OBJ) < 0 || PyModule_AddIntConstant(m, "PAD", K_PAD) < 0 ||
        PyModule_AddIntConstant(m, "HEADER", HEADER) < 0 || fastcoll_add_types(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
