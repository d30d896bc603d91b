"""One frozen Config, built from environment variables and flags and passed explicitly.

Every port, timeout and size default of granny lives here or in :mod:`granny.tunables` (the internal
tunables' named defaults, a module without imports so that the pure core can read them too; re-exported
here as ``config.tunables``), so nothing else hard-codes one.
"""

from __future__ import annotations

import ipaddress
import math
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import tunables as tunables  # re-exported: the internal tunables belong to the one configuration
from .durations import format_duration as format_duration  # re-exported: callers read it from config
from .durations import parse_duration as parse_duration
from .errors import ConfigError
from .tunables import COMPILE_TIMEOUT, MIGRATION_TIMEOUT
from .tunables import DEFAULT_FUSION_CAP as DEFAULT_FUSION_CAP

DEFAULT_RPC_PORT = 7400
DEFAULT_HTTP_PORT = 7401
MAX_FRAME_BYTES = 1 << 31  # a frame larger than 2 GiB is refused before any allocation
MAX_HEADER_BYTES = 1 << 20
# HTTP API limits (see docs/security.md, "The HTTP API"): a request body, the Python source of one
# registered function (compiling costs up to ~600x its size in memory), and the bytes of recent
# HTTP call results the planner keeps in memory (larger ones are read back from the journal).
DEFAULT_HTTP_MAX_BODY = 64 << 20
DEFAULT_HTTP_MAX_SOURCE = 1 << 20
DEFAULT_RECENT_BYTES = 64 << 20
# Before a peer authenticates its frames must be tiny (a Hello is a few hundred bytes), and its
# connection holds only a small read buffer: an unauthenticated peer costs a few KiB.
MAX_PREAUTH_FRAME_BYTES = 4096
PREAUTH_BUFFER_BYTES = 8192
DIAL_HANDSHAKE_TIMEOUT = 15.0  # a dialling peer gives up on a planner that does not finish the handshake

DEFAULT_HEARTBEAT_TIMEOUT = 5.0  # seconds without a heartbeat before the planner declares a worker dead
DEFAULT_RECONNECT_TIMEOUT = 30.0  # a peer that lost the planner keeps trying this long (Config.reconnect_timeout)
# A result or call input up to this size is also copied into the planner's journal: a granule sends a
# result it delivered over a lane (transport/lane.py) to the planner too, and the planner keeps a
# payload inline in its journal. Both ends must use the same bound, hence one constant.
JOURNAL_COPY_MAX = 256 << 10

# Every GRANNY_* environment variable granny reads, with its default (as text). Config reads those that
# have a field; the others are read through env() (below) by processes that have no Config: granules
# and the user code in them, and the hot paths of MPI, parallel regions and result lanes.
# docs/configuration.md lists them all (tests/unit/test_config_env.py checks that it does).
ENV_ADDRESS = "GRANNY_ADDRESS"  # clients: the planner to dial
ENV_TOKEN = "GRANNY_TOKEN"  # clients: the API token
ENV_SECRET = "GRANNY_SECRET"  # workers: the cluster secret (never on a command line)
ENV_SLOTS = "GRANNY_SLOTS"
ENV_DATA_DIR = "GRANNY_DATA_DIR"
ENV_HEARTBEAT_TIMEOUT = "GRANNY_HEARTBEAT_TIMEOUT"
ENV_TLS_CA = "GRANNY_TLS_CA"  # CA file: dial the planner over TLS and verify its certificate with it
ENV_TLS_SERVER_NAME = "GRANNY_TLS_SERVER_NAME"  # name to verify in the certificate, if not the address's host
ENV_RETAIN = "GRANNY_RETAIN"
ENV_EVICTION_GRACE = "GRANNY_EVICTION_GRACE"  # the grace of an eviction notice that names none
ENV_BATCH_SHARE = "GRANNY_BATCH_SHARE"  # the share of the slots delay-tolerant calls may take (planner/batch.py)
ENV_FUSION_CAP = "GRANNY_FUSION_CAP"  # delay-tolerant async calls in flight on one granule (planner/fusion.py)
ENV_MIGRATION_TIMEOUT = "GRANNY_MIGRATION_TIMEOUT"  # a moving rank's state waits this long to be pulled
ENV_COMPILE_TIMEOUT = "GRANNY_COMPILE_TIMEOUT"  # a registered function's source may take this long to compile
ENV_BATCH_NICE = "GRANNY_BATCH_NICE"  # delay-tolerant calls' CPU priority (worker/niceness.py): idle, or a nice; 0: as others
NICE_IDLE = 20  # batch_nice / Run.nice "idle": SCHED_IDLE, the kernel's idle class, a step below nice 19
DEFAULT_EVICTION_GRACE = 60.0  # seconds, about what clouds give a spot VM (AWS 2 min, GCP 30 s, Azure 30 s)
# Set by a worker for itself and its granules (and inherited by their children): the tag that marks
# the shared-memory segments they create as this worker's, so its sweep removes only those.
ENV_SHM_OWNER = "GRANNY_SHM_OWNER"
DEFAULT_EVENTS_MAX = 100_000  # planner events kept in the journal (the oldest go first)
DEFAULT_RETAIN = 3600.0  # finished work is kept this long (seconds) before the planner prunes it
ENV_GRANULE_USER = "GRANNY_GRANULE_USER"
DEFAULT_GRANULE_USER = "auto"  # nobody under a root worker, else the worker's own user (worker/granule_user.py)
ENV_LOG_LEVEL = "GRANNY_LOG_LEVEL"  # planner and worker logging: DEBUG, INFO, WARNING, ERROR
ENV_WATCH_FD = "GRANNY_WATCH_FD"  # set by LocalCluster: its children exit when this pipe closes (cluster.py)
# Set by a worker for its zygote and granules: whom to dial, and which host they run on.
ENV_PLANNER = "GRANNY_PLANNER"
ENV_HOST_ID = "GRANNY_HOST_ID"
# Set in a granule for the user code it runs (worker/zygote.py, worker/granule.py).
ENV_GRANULE_ID = "GRANNY_GRANULE_ID"
# Tests only (worker/finishing.py): while this file exists, a granule holds each call between handing its
# result to the client's lane and sending its Done, until a pause has stopped and continued it.
ENV_TEST_HOLD_DONE = "GRANNY_TEST_HOLD_DONE"
ENV_APP_ID = "GRANNY_APP_ID"
ENV_INDEX = "GRANNY_INDEX"
ENV_SIZE = "GRANNY_SIZE"
ENV_RESULT_LANE = "GRANNY_RESULT_LANE"  # "0" turns result lanes off (both ends honour it)
ENV_SPIN_US = "GRANNY_SPIN_US"  # longest spin of a caller waiting for a result, in µs ("0": never spin)
ENV_PARALLEL_SPIN_US = "GRANNY_PARALLEL_SPIN_US"  # a team thread spins this long before it sleeps
ENV_MPI_SPIN_US = "GRANNY_MPI_SPIN_US"  # an MPI rank spins this long before it sleeps or yields
ENV_MPI_BIND = "GRANNY_MPI_BIND"  # "1": always bind ranks to cores, "0": never, "": when a world fills its host
ENV_MPI_RNDV_FROM = "GRANNY_MPI_RNDV_FROM"  # bytes from which a blocking Send goes by rendezvous (mpi/shm.py)
ENV_MPI_PURE = "GRANNY_MPI_PURE"  # "1": use the pure-Python rings even where the C extension built
ENV_MPI_SHMCOLL = "GRANNY_MPI_SHMCOLL"  # "0" (or ""): collectives go point-to-point, not through shared memory
ENV_TESTBED_DIR = "GRANNY_TESTBED_DIR"  # where the testbed keeps its state file
ENV_TESTBED = "GRANNY_TESTBED"  # set in every testbed process: the mark its clean-up finds them by
ENV_CACHE_DIR = "GRANNY_CACHE_DIR"  # where the testbed builds its C delay stage

ENV_DEFAULTS: dict[str, str] = {
    ENV_ADDRESS: "", ENV_TOKEN: "", ENV_SECRET: "", ENV_SLOTS: "", ENV_DATA_DIR: ".granny",
    ENV_HEARTBEAT_TIMEOUT: f"{DEFAULT_HEARTBEAT_TIMEOUT:g}", ENV_TLS_CA: "", ENV_TLS_SERVER_NAME: "",
    ENV_RETAIN: f"{DEFAULT_RETAIN:g}", ENV_EVICTION_GRACE: f"{DEFAULT_EVICTION_GRACE:g}", ENV_BATCH_SHARE: "1", ENV_FUSION_CAP: str(DEFAULT_FUSION_CAP), ENV_BATCH_NICE: "0",
    ENV_MIGRATION_TIMEOUT: f"{MIGRATION_TIMEOUT:g}", ENV_COMPILE_TIMEOUT: f"{COMPILE_TIMEOUT:g}",
    ENV_SHM_OWNER: "", ENV_GRANULE_USER: DEFAULT_GRANULE_USER, ENV_LOG_LEVEL: "INFO", ENV_WATCH_FD: "",
    ENV_PLANNER: "", ENV_HOST_ID: "", ENV_GRANULE_ID: "", ENV_APP_ID: "", ENV_INDEX: "0", ENV_SIZE: "",
    ENV_RESULT_LANE: "1", ENV_SPIN_US: "500", ENV_PARALLEL_SPIN_US: "200", ENV_MPI_SPIN_US: "100",
    ENV_MPI_BIND: "", ENV_MPI_RNDV_FROM: str(12 * 1024), ENV_MPI_PURE: "", ENV_MPI_SHMCOLL: "1",
    ENV_TESTBED_DIR: "/run/granny-testbed", ENV_TESTBED: "", ENV_CACHE_DIR: "", ENV_TEST_HOLD_DONE: "",
}


def env(name: str, default: str | None = None, *, pop: bool = False) -> str:
    """The text of the GRANNY_* variable ``name`` in this process's environment, else ``default``, else
    its default in ENV_DEFAULTS.

    For reads that happen where no Config exists: in granules (before and while they run user code), in
    clients, and on hot paths that look a setting up per use so that a test can switch it. ``pop``
    also removes it, so children do not inherit it. A name not listed in ENV_DEFAULTS raises KeyError:
    every variable is declared here. tests/unit/test_config_env.py fails on a GRANNY_* read elsewhere."""
    if default is None:
        default = ENV_DEFAULTS[name]
    elif name not in ENV_DEFAULTS:
        raise KeyError(name)
    return os.environ.pop(name, default) if pop else os.environ.get(name, default)


def _env_float(name: str) -> float:
    raw = env(name) or ENV_DEFAULTS[name]
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be positive (a finite number of seconds), got {raw!r}")
    return value


def migration_timeout() -> float:
    """Seconds a moving rank's state waits to be pulled (and a transfer may stall), for the granules'
    side of a migration, which has no Config (the planner's is ``Config.migration_timeout``)."""
    return _env_duration(ENV_MIGRATION_TIMEOUT)


def env_slots(default: int | None = None) -> int:
    raw = env(ENV_SLOTS)
    if raw == "":
        return default if default is not None else (os.cpu_count() or 1)
    return parse_slots(raw, ENV_SLOTS)


def parse_slots(raw: str | int, what: str = "--slots") -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{what}={raw!r} is not a whole number") from None
    if value < 1:
        raise ConfigError(f"{what} must be at least 1, got {value}")
    return value


def parse_address(raw: str, what: str = "address") -> tuple[str, int]:
    """Parse ``host:port`` (the scheme ``tcp://`` is accepted and dropped)."""
    text = raw.strip()
    if text.startswith("tcp://"):
        text = text[len("tcp://") :]
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [IPv6]:PORT
    elif ":" in host and _is_ip(text):
        raise ConfigError(f"{what} {raw!r} has no port: write [{text}]:PORT")
    if not sep or not host:
        raise ConfigError(f"{what} {raw!r} must look like HOST:PORT")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"{what} {raw!r} has a port that is not a number") from None
    if not 0 <= number < 65536:
        raise ConfigError(f"{what} {raw!r} has a port out of range")
    return host, number


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_hosts(raw: str | Iterable[tuple[str, int]] | None, what: str = "hosts") -> tuple[tuple[str, int], ...]:
    """A pinned placement, as ``mpirun --host``: ``"h1:4,h2:4"`` or ``[("h1", 4), ("h2", 4)]``.

    A host named twice gets the sum (granules 0.. go to the hosts in the order first named)."""
    if raw is None or raw == "":
        return ()
    if isinstance(raw, str):
        pairs: list[tuple[str, Any]] = []
        for part in raw.split(","):
            host, sep, count = part.strip().rpartition(":")
            if not sep or not host.strip():
                raise ConfigError(f"{what}: expected HOST:COUNT[,HOST:COUNT...] (e.g. h1:4,h2:4), got {raw!r}")
            pairs.append((host.strip(), count.strip()))
    else:
        try:
            pairs = [(h, c) for h, c in raw]
        except (TypeError, ValueError):
            raise ConfigError(f"{what}: expected a list of (host, count) pairs, got {raw!r}") from None
    out: dict[str, int] = {}
    for host, count in pairs:
        if not isinstance(host, str) or not host:
            raise ConfigError(f"{what}: a host must be a non-empty name, got {host!r}")
        if isinstance(count, bool) or not (isinstance(count, int) or (isinstance(count, str) and count.isdigit())):
            raise ConfigError(f"{what}: the count for host {host!r} must be a whole number, got {count!r}")
        if int(count) < 1:
            raise ConfigError(f"{what}: the count for host {host!r} must be at least 1, got {count!r}")
        out[host] = out.get(host, 0) + int(count)
    return tuple(out.items())


def parse_bytes(raw: str | int | None) -> int:
    """Parse a memory size such as ``512MiB``, ``2G`` or ``1048576``; 0 or None means no limit."""
    if raw is None:
        return 0
    if isinstance(raw, int):
        if raw < 0:
            raise ConfigError(f"memory size {raw} must not be negative")
        return raw
    text = raw.strip().lower().replace(" ", "")
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "k": 1000, "m": 10**6, "g": 10**9,
             "kb": 1000, "mb": 10**6, "gb": 10**9, "b": 1}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            number, scale = text[: -len(suffix)], units[suffix]
            break
    else:
        number, scale = text, 1
    try:
        value = float(number) * scale
    except ValueError:
        raise ConfigError(f"memory size {raw!r} is not understood (try 512MiB)") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"memory size {raw!r} must be a finite, non-negative size (try 512MiB)")
    return int(value)


def _env_duration(name: str) -> float:
    return parse_duration(env(name) or ENV_DEFAULTS[name], name)


def worker_shm_tag(host_id: str, planner: str) -> str:
    """A worker's shared-memory tag: the same for a restarted worker of the same host and cluster
    (so it cleans up after its predecessor), different for two workers or two clusters on one machine."""
    import hashlib

    return hashlib.blake2b(f"{host_id}\0{planner}".encode(), digest_size=5).hexdigest()


def shm_owner_suffix(pid: int | None = None) -> str:
    """The end of every granny shared-memory name: ``-w{tag}-p{pid}`` under a worker, else ``-p{pid}``.

    The pid says whether the creator is alive; the tag says which worker's sweep may remove it."""
    tag = env(ENV_SHM_OWNER)
    owner = os.getpid() if pid is None else pid
    return f"-w{tag}-p{owner}" if tag.isalnum() and tag.isascii() and len(tag) <= 16 else f"-p{owner}"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def parse_cap(raw: object, what: str = "cap") -> int:
    """A whole number of calls, 1 <= cap <= 10000 (ConfigError otherwise)."""
    try:
        value = int(str(raw))
    except ValueError:
        raise ConfigError(f"{what} must be a whole number of calls, got {raw!r}") from None
    if not 1 <= value <= 10_000:
        raise ConfigError(f"{what} must be between 1 and 10000, got {value}")
    return value


def parse_nice(raw: object, what: str = "batch nice") -> int:
    """The CPU priority of delay-tolerant calls: a nice value, 0 (none) to 19, or "idle" (``NICE_IDLE``: the
    kernel's idle class, SCHED_IDLE). ConfigError otherwise."""
    if str(raw).strip().lower() == "idle":
        return NICE_IDLE
    try:
        value = int(str(raw))
    except ValueError:
        raise ConfigError(f"{what} must be a whole number from 0 to 19 or 'idle', got {raw!r}") from None
    if not 0 <= value <= 19 and value != NICE_IDLE:
        raise ConfigError(f"{what} must be from 0 to 19 or 'idle', got {value}")
    return value


def parse_share(raw: object, what: str = "share") -> float:
    """A fraction of the cluster's slots, 0 < share <= 1 (ConfigError otherwise)."""
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number in (0, 1], got {raw!r}") from None
    if not 0 < value <= 1:
        raise ConfigError(f"{what} must be in (0, 1] (a share of the slots), got {raw!r}")
    return value


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700, or narrow it to 0700 if it exists.

    The data directory holds the secret, the token and the journal (call inputs, function sources):
    no other local user may list or enter it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != 0o700:
        os.chmod(path, 0o700)
    return path


def create_private_file(path: Path) -> None:
    """Create ``path`` (if missing) and make it 0600: owner only, from the start."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def write_private(path: Path, text: str) -> None:
    """Write a credential readable by its owner only (mode 0600 from the start, never wider)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def read_or_create_credential(path: Path) -> str:
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    value = new_secret()
    write_private(path, value)
    return value


class Config:
    """Settings shared by the planner, workers and clients (immutable; ``with_`` makes a changed copy).

    A plain class rather than a dataclass: ``dataclasses`` (and the ``inspect`` it imports) would add
    ~8 ms to the start of every ``granny`` command."""

    __slots__ = ("data_dir", "handshake_timeout", "heartbeat_interval", "heartbeat_timeout", "max_frame_bytes",
                 "max_unauthenticated", "reconnect_timeout", "restart_grace", "tls_cert", "tls_key",
                 "http_max_body", "http_max_source", "recent_bytes", "retain", "granule_user", "eviction_grace",
                 "batch_share", "events_max", "fusion_cap", "batch_nice", "log_level", "migration_timeout",
                 "compile_timeout")
    _FIELDS = __slots__

    data_dir: Path
    heartbeat_interval: float
    heartbeat_timeout: float
    # After a planner restart, wait this long for granules to report what they are running (and what
    # they finished while it was away) before dispatching journaled work again, so work is not run
    # twice. It must cover the peers' reconnect back-off (granules 0.5 s, workers 1 s at most).
    restart_grace: float
    reconnect_timeout: float
    max_frame_bytes: int
    http_max_body: int
    http_max_source: int
    recent_bytes: int
    # A planner connection that has not authenticated within handshake_timeout seconds is closed,
    # and at most max_unauthenticated such connections are open at once (more are closed at once).
    handshake_timeout: float
    max_unauthenticated: int
    # The planner's TLS certificate chain and private key (PEM files); "" serves plain TCP and HTTP.
    tls_cert: str
    tls_key: str
    # The planner keeps a finished request (its record, result and logs) this long after it finished
    # and was delivered, then prunes it from memory and from the journal (planner/retention.py).
    retain: float
    granule_user: str  # worker: who granules run as ("auto", "same", a user name or uid)
    # Planner: an eviction notice that names no grace period (`granny hosts evict HOST`) ends after this long.
    eviction_grace: float
    batch_share: float
    # Planner: the journal keeps at most this many events (GET /v1/events, the dashboard); older ones go.
    events_max: int
    # Planner: delay-tolerant async calls one granule runs at once on its event loop (1: no fusion).
    fusion_cap: int
    # Planner: delay-tolerant calls run at this nice value (0..19; 0, the default: like any call) or NICE_IDLE
    # (SCHED_IDLE), see planner/idle.py and worker/niceness.py.
    batch_nice: int
    log_level: str  # planner and worker: the logging level (DEBUG, INFO, WARNING, ERROR)
    # Planner: its state store waits this long for a freezing rank's state, and a thawing rank to pull it.
    migration_timeout: float
    compile_timeout: float  # planner: a registered function's source may take this long to compile

    def __init__(self, data_dir: Path | None = None, heartbeat_interval: float = 0.5,
                 heartbeat_timeout: float | None = None, restart_grace: float = 3.0,
                 reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT, max_frame_bytes: int = MAX_FRAME_BYTES,
                 http_max_body: int = DEFAULT_HTTP_MAX_BODY, http_max_source: int = DEFAULT_HTTP_MAX_SOURCE,
                 recent_bytes: int = DEFAULT_RECENT_BYTES,
                 handshake_timeout: float = 5.0, max_unauthenticated: int = 256, tls_cert: str = "",
                 tls_key: str = "", retain: float | None = None,
                 granule_user: str | None = None, eviction_grace: float | None = None,
                 batch_share: float | None = None, events_max: int = DEFAULT_EVENTS_MAX,
                 fusion_cap: int | None = None, batch_nice: int | None = None,
                 log_level: str | None = None, migration_timeout: float | None = None,
                 compile_timeout: float | None = None) -> None:
        for name, size in (("http_max_body", http_max_body), ("http_max_source", http_max_source)):
            if size < 1:
                raise ConfigError(f"{name} must be at least 1 byte, got {size}")
        if recent_bytes < 0:
            raise ConfigError(f"recent_bytes must not be negative, got {recent_bytes}")
        if handshake_timeout <= 0 or not math.isfinite(handshake_timeout):
            raise ConfigError(f"the handshake timeout must be a positive number of seconds, got {handshake_timeout}")
        if max_unauthenticated < 1:
            raise ConfigError(f"max_unauthenticated must be at least 1, got {max_unauthenticated}")
        if events_max < 1:
            raise ConfigError(f"events_max must be at least 1, got {events_max}")
        if bool(tls_cert) != bool(tls_key):
            raise ConfigError("TLS needs both a certificate and its private key (--tls-cert and --tls-key)")
        values = {
            "data_dir": data_dir if data_dir is not None else Path(env(ENV_DATA_DIR)),
            "heartbeat_interval": heartbeat_interval,
            "heartbeat_timeout": heartbeat_timeout if heartbeat_timeout is not None
            else _env_float(ENV_HEARTBEAT_TIMEOUT),
            "restart_grace": restart_grace, "reconnect_timeout": reconnect_timeout, "max_frame_bytes": max_frame_bytes,
            "http_max_body": http_max_body, "http_max_source": http_max_source, "recent_bytes": recent_bytes,
            "handshake_timeout": handshake_timeout, "max_unauthenticated": max_unauthenticated,
            "tls_cert": tls_cert, "tls_key": tls_key,
            "retain": parse_duration(retain, "retain") if retain is not None else _env_duration(ENV_RETAIN),
            "granule_user": granule_user if granule_user is not None
            else env(ENV_GRANULE_USER),
            "eviction_grace": parse_duration(eviction_grace, "eviction grace") if eviction_grace is not None
            else _env_duration(ENV_EVICTION_GRACE),
            "batch_share": parse_share(batch_share if batch_share is not None else env(ENV_BATCH_SHARE),
                                       "batch share"),
            "events_max": events_max,
            "fusion_cap": parse_cap(fusion_cap if fusion_cap is not None
                                    else env(ENV_FUSION_CAP), "fusion cap"),
            "batch_nice": parse_nice(batch_nice if batch_nice is not None else env(ENV_BATCH_NICE)),
            "log_level": (log_level if log_level is not None else env(ENV_LOG_LEVEL)).upper() or "INFO",
            "migration_timeout": parse_duration(migration_timeout, "migration timeout")
            if migration_timeout is not None else _env_duration(ENV_MIGRATION_TIMEOUT),
            "compile_timeout": parse_duration(compile_timeout, "compile timeout")
            if compile_timeout is not None else _env_duration(ENV_COMPILE_TIMEOUT),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Config is immutable: use config.with_({name}=...)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and all(getattr(self, f) == getattr(other, f) for f in self._FIELDS)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f) for f in self._FIELDS))

    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self._FIELDS) + ")"

    def with_(self, **changes: Any) -> Config:
        unknown = set(changes) - set(self._FIELDS)
        if unknown:
            raise TypeError(f"Config has no field(s) {sorted(unknown)}")
        values = {f: getattr(self, f) for f in self._FIELDS} | changes
        return Config(**values)

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "secret"

    @property
    def token_path(self) -> Path:
        return self.data_dir / "token"

    @property
    def journal_path(self) -> Path:
        return self.data_dir / "journal.sqlite"

    @property
    def planner_info_path(self) -> Path:
        return self.data_dir / "planner.json"
