"""The named defaults of granny's internal tunables: timeouts, intervals, spin lengths, caps and sizes.

Part of the one configuration (issue 17): :mod:`granny.config` re-exports this module as
``config.tunables`` and builds the settings an operator may change (``Config`` fields, ``GRANNY_*``
variables) from the defaults here. It is a module of its own, with no imports at all, because the
planner's pure core (state.py and its helpers, the policies, mpi/algorithms.py, memory/) may not reach
``os`` through config.py (see the purity contract in pyproject.toml), and these are its tunables too.

Each module imports the ones it uses (``from ..tunables import X``), so a benchmark or a test still
patches ``module.X``. Protocol constants (magic numbers, wire and shared-memory layouts, MPI's values,
tags, error codes) are not tunables: they stay beside their one user. docs/configuration.md lists
both ("Internal constants"), and tests/unit/test_config_env.py fails on a numeric module-level
constant anywhere else that is not a listed protocol constant.
"""

# --- the client --------------------------------------------------------------------------------------
# Submissions closer together than this go out together (see BlockingConn.send_soon): a burst of calls
# costs the planner one wake-up per write, not per call. A lone call is never delayed.
BURST_WINDOW = 0.0001
BURST_FRAMES = 64  # at most this many frames in one such write
EVENTS_PAGE = 1000  # events the planner answers per query, and `granny events` asks for

# --- links and framing -------------------------------------------------------------------------------
FIRST_DELAY = 0.02  # a redial's first back-off, seconds; doubled after each failure (transport/redial.py)
TLS_COALESCE = 64 << 10  # over TLS, parts below this are joined into one write; larger ones go as they are
SMALL_BODY = 1 << 16  # a frame whose body exceeds this gets its own buffer (wire/framing.py)
LAZY_BODY = 16 << 20  # bodies above this land in an anonymous mapping, filled as data arrives
LANE_SEND_TIMEOUT = 30.0  # a client that stops reading its lane for this long loses it, not the result
MAX_LANES = 64  # lanes a granule keeps open (one per client it recently served)
LANE_WAIT_MAX = 64 << 10  # calls with larger payloads wait on their future, not on the lane

# --- the planner -------------------------------------------------------------------------------------
DEFAULT_FUSION_CAP = 32  # delay-tolerant async calls in flight on one granule (Config.fusion_cap)
COMPILE_TIMEOUT = 30.0  # seconds a registered function's source may take to compile (Config.compile_timeout)
COMPILE_MEMORY = 2 << 30  # address-space limit of the compiling child
RECYCLE_ABOVE = 64 << 10  # a compiling child that compiled a source larger than this is replaced
FLUSH_INTERVAL = 0.005  # seconds the journal gathers writes before one commit
VACUUM_INTERVAL = 5.0  # seconds between two incremental vacuums (and WAL truncations) after prunes
TRIM_INTERVAL = 5.0  # seconds between two malloc_trim calls after prunes
RUNTIME_CHANGE = 0.1  # a runtime estimate is journaled again when it (or its spread) moved by more than this fraction
EVENTS_WAIT = 20.0  # seconds an ``events`` query with ``:wait`` is held open before an empty answer
EVENTS_KEEP = 5000  # events kept in memory (older ones are read from the journal)
EVENTS_PRUNE_EVERY = 1000  # events between two retention passes over the journal
SAMPLE_EVERY = 5.0  # seconds between two timeline samples
EVENTS_QUEUE_MAX = 10_000  # events waiting for one slow subscriber before it is dropped
EVENTS_KEEPALIVE = 15.0  # seconds between two keep-alive comments on an idle event stream
EVENTS_MAX_LIMIT = 10_000  # the most events one GET /v1/events may ask for
TRACKED_MAX = 100_000  # (task, run) pairs whose output the planner remembers; the oldest go first
ORPHAN_FRAMES_MAX = 10_000  # frames kept for a task no planner knows yet (a restart grace is seconds long)
ENDED_MAX = 100_000  # exited granules remembered; ids never repeat, so old ones age out
MIGRATION_HISTORY = 50  # completed migrations kept per world (for `granny status`)
GATE_LOG_EVERY = 10.0  # seconds between two "cap reached" log lines (a flood must not flood the log)
APP_TOMBSTONE_FACTOR = 24  # a pruned app's final state answers `granny status` this many retention windows longer
ABANDON_FACTOR = 24  # an undelivered result waits this many retention windows for its client, then is pruned
MAX_WAIT_TIMEOUT = 3600.0  # the longest ``timeout`` an HTTP call may ask to be waited on
MAX_EVICTION_GRACE = 7 * 86400.0  # seconds; no cloud gives a week's notice
# Migration points and freezing (planner/freezing.py) and the spot policies (planner/policies/spot.py).
POINT_SOON = 1.0  # seconds: a call whose points come at most this far apart reaches one soon
POINT_WAIT = 3.0  # a hinted call that has not asked within this many of its intervals is passed over
FREEZE_MARGIN = 0.05  # seconds kept for the freeze itself when judging a deadline
SPOT_MARGIN = 2.0  # seconds to spare after the last point: a freeze or a move must be over by the deadline
MAKE_ROOM_HOSTS = 8  # a split world's search for a world to move out of its way reads this many roomiest hosts
SPOT_LATE_MARGIN = 1.0  # the same for ``spot-late`` (a world there waits for its last point more often)
# Delay-tolerant calls (planner/batch_queue.py): the runtime estimate and the deadline guard.
RESUME_SAFETY = 2.0  # a resumed call is given this many times its remaining runtime before its deadline
DEADLINE_MARGIN = 0.05  # seconds kept for dispatch and the result's way back when guarding a deadline
ESTIMATE_ALPHA = 0.3  # weight of the newest observation in a function's runtime estimate
ESTIMATE_BETA = 0.25  # weight of the newest deviation in its spread (as TCP's RTT variance, RFC 6298)
ESTIMATE_DEVS = 4.0  # the guard allows this many mean deviations above the mean (as TCP's retransmission timeout)
MIN_IDLE = 0.5  # seconds: a call whose raise time is nearer runs at normal priority from the start (planner/idle.py)
# The dashboard (planner/ui.py, ui_views.py).
SESSION_TTL = 12 * 3600.0  # seconds a dashboard session lasts
MAX_SESSIONS = 1000  # dashboard sessions kept at once (the oldest go first)
MIN_GAP = 0.1  # seconds between two state pushes on one stream
PUSH_EVERY = 2.0  # seconds between two pushes of an idle stream
APPS_EVERY = 1.0  # seconds between two rebuilds of the app list when no event came
FRESH = 0.05  # a state built this recently is shared by every open dashboard
UI_MAX_APPS = 2000  # apps the dashboard lists at most
UI_MAX_ENDED = 200  # ended apps only the journal still knows, newest first
UI_MAX_QUEUE = 500  # queued calls the dashboard lists at most

# --- workers and granules ----------------------------------------------------------------------------
UNSENT_MAX = 10_000  # exit reports a worker keeps for a planner that is away
FUSED_POLL_PERIOD = 0.05  # how often a fused granule's loop looks for frames its link's watcher read first
OUTPUT_BUFFER = 8 << 20  # bytes of output a granule keeps while it waits for the planner's Ack
WATCH_PERIOD = 0.05  # how often a running task's connection is checked for Acks and for a dead planner

# --- migration ---------------------------------------------------------------------------------------
MIGRATION_TIMEOUT = 60.0  # seconds a moving rank's state waits to be pulled (GRANNY_MIGRATION_TIMEOUT)
MAX_STATE = 1 << 40  # what a rank state's head may announce (checked before anything is allocated)
STATE_CHUNK = 16 << 20  # bytes of a state received per recv

# --- parallel regions --------------------------------------------------------------------------------
TEAM_SAFETY_TIMEOUT = 0.002  # a team thread's sleep on its doorbell is bounded by this (a lost wake-up)
TEAM_HANDSHAKE_TIMEOUT = 30.0  # a team member's connection that has not proved the key by then is dropped
MAX_TEAM_MESSAGE = 1 << 40  # what one team message may announce (whole shared arrays travel at the first fork)
GROWTH_INTERVAL = 0.05  # an elastic team asks the planner for free slots at most this often

# --- MPI ---------------------------------------------------------------------------------------------
TCP_EVERY = 64  # a rank with TCP peers polls its sockets once every this many passes over its rings
MPI_SAFETY_TIMEOUT = 0.002  # a rank's sleep on its doorbell is bounded by this (a lost wake-up; see shm.py)
PEER_LOSS_GRACE = 10.0  # seconds a rank that lost a peer waits for the planner to stop its world
ALLREDUCE_LARGE_BYTES = 64 * 1024  # Allreduce switches to reduce-scatter + allgather from this size
DIRECT_SPINS = 2000  # ring checks (~30 µs) before a direct receive hands over to the general wait
DIRECT_SPIN_NS = 30_000  # the same budget for the C ring's receive (shm.FastConsumer.recv_buf)
RNDV_SPIN_NS = 50_000  # a C rendezvous send spins this long, plus the copy's expected time, for its ACK
OVERSUBSCRIBED_SPIN = 50e-6  # seconds an oversubscribed rank keeps checking (and yielding) before it sleeps
OOB_MIN = 4096  # buffers at least this large go out of band
OOB_RETRY = 64 * 1024  # a non-array object pickled in-band this large is pickled again, out of band
OBJ_DIRECT_MAX = 4096  # larger pickles are unpickled in place from the ring (Engine.recv_direct), not copied
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024  # a TCP link's socket buffers; 0 keeps Linux autotuning
VIEW_SLOTS = 8  # ndarrays whose memoryview a rank caches (mpi/buffers.py)
VIEW_MAX_BYTES = 64 * 1024  # only arrays up to this size are cached

# --- memory diffs ------------------------------------------------------------------------------------
SCAN_CHUNK_PAGES = 1024  # 4 MiB of each input per step: same speed as one pass, bounded temporary
AUTO_RUNS_MAX_FRACTION = 0.5  # the AUTO encoding sends whole pages once more than this share of their words changed
MERGE_CHUNK_PAGES = 64  # 256 KiB per operand: M, S, V and two temporaries stay in L2/L3
