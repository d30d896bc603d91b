"""Typed schemas of every internal message.

A frame is a small msgpack *header* (one of the Structs below, tagged by ``t``) followed by raw
*segments*: the pickled function, the pickled arguments and their out-of-band buffers. The planner
routes frames by header only and never unpickles a segment, so a peer's pickles are only ever
loaded by granules and clients, and only after the handshake authenticated the peer.
"""

from __future__ import annotations

import enum

import msgspec

from ..errors import ErrorKind, ProtocolError


class Role(enum.StrEnum):
    WORKER = "worker"
    GRANULE = "granule"
    CLIENT = "client"


class Kind(enum.StrEnum):
    """What a granule runs."""

    PICKLED = "pickled"  # cloudpickled fn + args (Python client)
    NAMED = "named"  # a registered function called with JSON input (HTTP API)
    SCRIPT = "script"  # a script run as __main__ (granny run)


class Status(enum.StrEnum):
    OK = "ok"
    ERROR = "error"


class _Msg(msgspec.Struct, tag_field="t", omit_defaults=True, forbid_unknown_fields=False):
    pass


# --- handshake -------------------------------------------------------------------------------
class Challenge(_Msg, tag="challenge"):
    nonce: bytes


class Hello(_Msg, tag="hello"):
    """First frame from a connecting peer: proves knowledge of the key without sending it."""

    role: Role
    mac: bytes  # HMAC(key, server nonce + role)
    nonce: bytes  # the peer's own challenge to the server
    name: str = ""  # host id for workers, granule id for granules, client name for clients
    host_id: str = ""
    pid: int = 0
    slots: int = 0  # workers only
    boot: str = ""  # workers: random per worker process, so that a restart is told from a reconnect
    busy_task: str = ""  # granules: the task still running across a planner restart
    busy_grant: bytes = b""  # ... and the planner's grant for it (Run.grant)
    app_id: str = ""  # clients: the app this connection submits into
    # Clients: their result lane, a Unix socket that granules on the same machine (and network
    # namespace: ``local_id``) may dial to hand a function's result over directly, with the key
    # they must prove they know before the client unpickles anything from them.
    reply_path: str = ""
    reply_key: bytes = b""
    local_id: str = ""


class Welcome(_Msg, tag="welcome"):
    mac: bytes  # HMAC(key, peer nonce): the server proves it knows the key too
    app_id: str = ""
    # A peer on the same machine *and* in the same network namespace may switch to this Unix
    # socket, which costs half of a loopback TCP round trip. Namespaced test hosts never match.
    local_path: str = ""
    local_id: str = ""


class Reject(_Msg, tag="reject"):
    reason: str


# --- clients -> planner ------------------------------------------------------------------------
class Submit(_Msg, tag="submit"):
    """A request for ``n`` granules running the same payload (n > 1: gang-placed, index 0..n-1)."""

    req_id: str
    app_id: str
    kind: Kind
    # The body is one pickle frame (granny.serde: the GOB1 head with the part count and lengths, then the
    # parts): PICKLED the function, then the (args, kwargs) pickle and its buffers; SCRIPT the source;
    # NAMED the function spec and the input JSON.
    fn_key: str = ""  # content hash of the pickled function (part 0), so granules cache it
    n: int = 1
    name: str = ""  # NAMED: registered function; SCRIPT: script path (display only)
    memory_limit: int = 0  # bytes per granule, 0 = none
    stream_logs: bool = False
    argv: list[str] = []
    mpi: bool = False  # the n granules form one MPI world: gang-placed, and one failure ends them all
    gang: bool = False  # not MPI, but one failure ends them all too (a parallel team's lease)
    lease: bool = False  # an elastic team: the planner may ask for granules back (Revoke)
    team: int = 0  # granules this app leases next (an OpenMP-style job's team): held for it (planner/holds.py)
    keyed: bool = False  # req_id comes from an idempotency key: a finished call of that id is not run again
    retries: int = 0  # an idempotent call: run it again elsewhere (this many times at most) if its host dies
    delay_tolerance: float = 0.0  # 0: run now; t > 0: the result is due within t s; < 0: whenever (planner/batch.py)
    restartable: bool = False  # a delay-tolerant call that may be stopped and started again (preemption)
    fuse: bool = False  # an ``async def`` function: delay-tolerant, it may share a granule (planner/fusion.py)
    resent: bool = False  # sent again after a reconnect: it may have run already (see planner/orphans.py)
    tenant: str = ""  # apps of different tenants never share a host under the compact policy
    hosts: list[tuple[str, int]] = []  # a pinned placement, as ``mpirun --host h1:4,h2:4``; sums to n
    migrate: bool = True  # False: the app stays where it was placed (no migration decision moves it)
    checkpoint: str = ""  # an MPI world saves its state at migration points: "N" every N points, "Ts" every T s


class Cancel(_Msg, tag="cancel"):
    req_id: str = ""
    app_id: str = ""
    close: bool = False  # the client is closing: cancel what is pending and close its app


class Stdin(_Msg, tag="stdin"):
    """Input for granule 0 of a script (``granny run`` forwards its stdin, as mpirun does)."""

    req_id: str
    data: bytes = b""
    eof: bool = False


class Waiting(_Msg, tag="waiting"):
    """From the client inside a granule: the granule blocks on (or resumes from) its own sub-calls."""

    granule_id: str
    waiting: bool


class Query(_Msg, tag="query"):
    """A question for the planner: hosts, apps, queue, waiting (how many requests are queued), app, logs, policy, migration (arg: an app id); or ``set-policy`` (arg: a policy name)."""

    what: str
    arg: str = ""
    qid: int = 0


class Reply(_Msg, tag="reply"):
    qid: int
    data: bytes  # JSON
    error: str = ""


# --- planner -> clients ------------------------------------------------------------------------
class Result(_Msg, tag="result"):
    req_id: str
    index: int
    status: Status
    # Bytes of the body, a pickle frame (granny.serde) of the value (OK) or of the exception (ERROR); 0: none.
    # Set also when the body does not come with this message (a result the client took from its lane).
    size: int = 0
    error_kind: ErrorKind = ErrorKind.NONE  # a str on the wire
    message: str = ""
    traceback: str = ""
    exit_code: int = 0
    host_id: str = ""
    attempts: int = 0  # how many times the call ran, when more than once (Submit.retries)


class Revoke(_Msg, tag="revoke"):
    """To a lease's owner: others wait for slots; give ``count`` of this request's granules back."""

    req_id: str
    count: int


class Log(_Msg, tag="log"):
    req_id: str
    index: int
    stream: str  # "stdout" | "stderr"
    data: str
    # Exactly-once output across reconnects (see granny.worker.outbox): ``seq`` numbers every frame
    # a granule must not lose (Log and Done) for the planner's cumulative Ack; ``run`` (the granule
    # id) and ``part`` (1, 2, ... within that run of the task) let the planner and the client drop
    # a frame that is sent again.
    seq: int = 0
    run: str = ""
    part: int = 0
    grant: bytes = b""  # Run.grant of the task: lets a restarted planner check the claim


# --- planner <-> granules ----------------------------------------------------------------------
class Run(_Msg, tag="run"):
    req_id: str
    index: int
    n: int
    app_id: str
    kind: Kind  # the body: the Submit's pickle frame, as the client sent it
    fn_key: str = ""
    name: str = ""
    memory_limit: int = 0
    argv: list[str] = []
    mpi: bool = False
    prefetched: bool = False  # sent while the granule is busy: a Skip may still cancel it
    grant: bytes = b""  # the planner's signature on this assignment (transport.auth.task_grant)
    # The submitting client's result lane (see Hello), for a granule on the same machine.
    reply_to: str = ""
    reply_key: bytes = b""
    reply_local: str = ""
    # A rank that migrated here: pull its state (``resume``, its args) from the old process at
    # ``resume_from`` ("ip:port") with ``resume_key``, and join generation ``gen`` of its world.
    resume_from: str = ""
    resume_key: bytes = b""
    gen: int = 0
    checkpoint: str = ""  # see Submit.checkpoint
    attempts: int = 0  # a call run again after its host died: this is its attempt number (see Result.attempts)
    fused: bool = False  # run it on the granule's event loop, beside the other fused calls (worker/fused.py)
    nice: int = 0  # a delay-tolerant call: run it at this nice value (planner's --batch-nice, worker/niceness.py)


class Skip(_Msg, tag="skip"):
    """Do not start this prefetched task: it was cancelled before it began."""

    req_id: str
    index: int


class Done(_Msg, tag="done"):
    req_id: str
    index: int
    status: Status
    size: int = 0  # see Result.size
    error_kind: ErrorKind = ErrorKind.NONE
    message: str = ""
    traceback: str = ""
    exit_code: int = 0
    retiring: bool = False  # the granule exits after this task (scripts get a fresh fork)
    # The result already went to the client over its lane; the planner records it but does not
    # forward it. A large value (``size`` set, no body) was not sent here at all.
    delivered: bool = False
    seq: int = 0  # see Log.seq
    grant: bytes = b""  # see Log.grant
    moved: bool = False  # not the task's end: the rank moved to another granule (see MigrateOut)


class Ack(_Msg, tag="ack"):
    """To a granule: every frame it numbered up to ``seq`` is in the journal; it may forget them."""

    seq: int


# --- MPI rendezvous (granules <-> planner) ----------------------------------------------------
class MpiJoin(_Msg, tag="mpi_join"):
    """A rank has created its inbox and listener and asks for the addresses of the whole world."""

    req_id: str
    index: int
    host_id: str
    pid: int
    ip: str = ""
    port: int = 0
    gen: int = 0  # the world's generation: it is rebuilt after every migration


class MpiRank(msgspec.Struct, omit_defaults=True):
    host_id: str
    pid: int
    ip: str = ""
    port: int = 0


class MpiWorld(_Msg, tag="mpi_world"):
    """Every rank's address, sent to each rank once all have joined (or an error: the world failed)."""

    req_id: str
    key: bytes = b""
    ranks: list[MpiRank] = []
    error: str = ""
    gen: int = 0


# --- migration points (granules <-> planner; see granny.migration) -----------------------------------
class MigrateAsk(_Msg, tag="migrate_ask"):
    """Rank 0 of a world at a migration point: should the world move now? ``ready`` is False when some
    rank has nonblocking requests or unreceived messages pending (``why`` says which): it cannot move."""

    req_id: str
    gen: int = 0
    ready: bool = True
    why: str = ""
    checkpoint: bool = False  # a checkpoint is due: save the world's state unless it moves
    interval: float = 0.0  # seconds since rank 0's previous migration point (0: not known yet)


class MigrateMove(msgspec.Struct, omit_defaults=True):
    index: int
    source: str
    target: str


# MigrateOrder.reason to a plain call the planner will never freeze (not delay-tolerant): it stops asking.
NOT_PREEMPTIBLE = "not a delay-tolerant call: never frozen"


class MigrateOrder(_Msg, tag="migrate_order"):
    """The planner's answer to a MigrateAsk: ``moves`` (none: stay), into world generation ``gen``."""

    req_id: str
    gen: int = 0
    moves: list[MigrateMove] = []
    reason: str = ""
    freeze: bool = False  # every rank saves its state to the planner and ends; the world thaws when it fits
    checkpoint: int = 0  # every rank saves its state to the planner as checkpoint number ``checkpoint`` and goes on


class MigrateHint(_Msg, tag="migrate_hint"):
    """To rank 0: the world would gain from moving, so its next migration point asks (see MigrateAsk)."""

    req_id: str


class MigrateOut(_Msg, tag="migrate_out"):
    """A moving rank has packed its state and serves it at ``ip:port`` to whoever shows ``key``."""

    req_id: str
    index: int
    gen: int
    ip: str
    port: int
    key: bytes
    nbytes: int = 0
    checkpoint: int = 0  # the state is that checkpoint's (the rank goes on), not a move's or a freeze's


# --- planner <-> workers -----------------------------------------------------------------------
class Heartbeat(_Msg, tag="heartbeat"):
    load: float = 0.0
    granules: int = 0


class Spawn(_Msg, tag="spawn"):
    count: int


class KillGranule(_Msg, tag="kill"):
    granule_id: str
    reason: str = ""
    signal: str = ""  # "STOP" / "CONT": pause or continue the granule's process instead of killing it; "NORMAL": out of the idle class


class Registered(_Msg, tag="registered"):
    """To a worker, after its Welcome: the host is registered, as this incarnation (1, then one more
    each time it comes back after being declared dead), and must heartbeat this often."""

    incarnation: int
    heartbeat_interval: float
    heartbeat_timeout: float


class Rejoin(_Msg, tag="rejoin"):
    """To a worker: the planner declared its host dead (or never knew it) and closes this connection.
    The worker registers again; its granules of the old incarnation are killed and replaced."""

    reason: str


class StopWorker(_Msg, tag="stop_worker"):
    """To a worker: its host was evicted (a spot VM taken back). It kills its granules and exits (code 0),
    without registering again; the planner closes the connection after this."""

    reason: str


class GranuleExit(_Msg, tag="granule_exit"):
    granule_id: str
    cause: str  # human readable: "exit code 3", "killed by SIGSEGV", "out of memory"
    exit_code: int = 0


Message = (
    Challenge | Hello | Welcome | Reject | Ack | Submit | Cancel | Stdin | Waiting | Query | Reply | Result | Revoke | Log | Run | Skip | Done | Heartbeat
    | Spawn | KillGranule | Registered | Rejoin | StopWorker | GranuleExit | MpiJoin | MpiWorld
    | MigrateAsk | MigrateOrder | MigrateHint | MigrateOut
)

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def encode_header(msg: Message) -> bytes:
    return _encoder.encode(msg)


def decode_header(data: bytes | memoryview) -> Message:
    """Decode and validate one header; anything malformed raises ProtocolError, never crashes."""
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(f"malformed frame header: {exc}") from None
    except RecursionError:
        raise ProtocolError("malformed frame header: nested too deeply") from None


__all__ = [
    "Ack", "Cancel", "Challenge", "Done", "GranuleExit", "Heartbeat", "Hello", "Kind", "KillGranule", "Log",
    "Message", "MigrateAsk", "MigrateHint", "MigrateMove", "MigrateOrder", "MigrateOut", "MpiJoin", "MpiRank", "MpiWorld", "Query", "Registered", "Reject", "Rejoin", "Reply", "Result", "Revoke", "Role", "Run", "Skip", "Spawn", "Status", "Stdin", "StopWorker", "Submit", "Waiting", "Welcome",
    "decode_header", "encode_header",
]
