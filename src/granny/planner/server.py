"""The planner's I/O edge: the internal RPC port, timers and the journal around PlannerState.

Theory of operation: one asyncio loop (uvloop) owns everything. Each connection speaks the handshake
first (:mod:`granny.transport.auth`); only then are its frames routed by role. Payload segments are
kept as the memoryviews they arrived in and forwarded to granules untouched: the planner never
unpickles them. Every effect the state machine asks for is carried out in :meth:`apply`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
import uuid
from typing import Any

from .. import serde
from ..config import JOURNAL_COPY_MAX, Config
from ..errors import ConflictError, ErrorKind, GrannyError, ProtocolError
from ..transport import acceptor_proof, lane_policy, local_id, task_grant
from ..wire import (
    Cancel,
    Done,
    GranuleExit,
    Heartbeat,
    Hello,
    KillGranule,
    Kind,
    Log,
    Message,
    MigrateAsk,
    MigrateOut,
    MpiJoin,
    MpiRank,
    MpiWorld,
    Query,
    Registered,
    Reject,
    Rejoin,
    Reply,
    Result,
    Revoke,
    Role,
    Run,
    Spawn,
    Status,
    Stdin,
    Submit,
    Waiting,
    Welcome,
    decode_header,
    encode_header,
)
from ..wire import Skip as SkipMsg
from . import admission, deadlines, evicting, migrating, queries, selection, views
from .acks import Acks
from .conn import Conn
from .event_feed import EventFeed
from .gate import HandshakeGate
from .grace import Held
from .journal import Journal
from .keys import KeyedCalls
from .lifecycle import TASK_FINAL, AppKind, AppState
from .metrics import CallStats
from .orphans import Orphans
from .outputs import Outputs
from .pruning import answer_finished, forget, seed_retention
from .recent import RecentResults
from .records import DropState, Hint, MigrateAnswer, MigrationEvent, ResumeRank, StoreState
from .retention import Known, Retention
from .server_protocol import Payload
from .state import (
    Action,
    AppChanged,
    Dispatch,
    Fail,
    ForgetHost,
    GraceEnded,
    HoldFrames,
    JoinRefused,
    Kill,
    PlannerState,
    Pruned,
    RankAddress,
    ReplayFrames,
    Skip,
    SpawnGranules,
    StopWorker,
    WorldReady,
)
from .state import Revoke as RevokeAction
from .store import StateStore
from .ticker import Ticker

log = logging.getLogger("granny.planner")



class PlannerServer:
    def __init__(self, config: Config, secret: str, token: str, policy: str | None = None) -> None:
        """``policy``: the placement policy's name; None runs the journaled choice (default bin-pack)."""
        self.config, self.secret, self.token = config, secret, token
        self.state = PlannerState(config.heartbeat_timeout)
        self.state.batch.share, self.state.batch.fuse_cap = config.batch_share, config.fusion_cap
        self.policy_flag = policy  # the policy itself is chosen in _restore: the journal may name one
        self.loop = asyncio.get_running_loop()
        self.gate = HandshakeGate(self.loop, config.handshake_timeout, config.max_unauthenticated)
        self.journal = Journal(config.journal_path, self.loop)
        self.acks = Acks(self.journal)
        self.outputs = Outputs(self.journal)
        self.orphans: Orphans[Conn] = Orphans()
        self.keys = KeyedCalls(self.journal)
        self.payloads: dict[str, Payload] = {}
        self.workers: dict[str, Conn] = {}
        self.granule_conns: dict[str, Conn] = {}
        self.waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.recent = RecentResults(config.recent_bytes)  # HTTP calls' results (see recent.py)
        self.stdin: dict[str, list[Stdin]] = {}  # input that arrived before granule 0 started
        self.functions: dict[str, dict[str, Any]] = {}
        self._delivered: set[str] = set()
        self.ended = admission.Ended()
        self.unix_path = ""  # set by main once the Unix socket listens
        self.batching = False  # handling one read's frames: sends wait for its end (see Conn.send)
        self.dirty: list[Conn] = []
        self.local_id = local_id()
        self.started = time.time()
        self.retention = self.state.retention = Retention(config.retain)  # its passes run from state.tick
        self.store = StateStore(config.data_dir / "state", self.loop, timeout=config.migration_timeout)  # frozen ranks' state (see store.py)
        self.sent_at: dict[tuple[str, int], float] = {}  # when calls of delay-tolerant functions were sent
        self.call_stats = CallStats()  # what /metrics counts per call (see metrics.py)
        self._restore()
        self.feed = EventFeed(self)  # after the restore: re-queueing journaled work is not news
        self.ticker = Ticker(self.loop)  # events may wake it early (see ticker.py)
        self._ticker = self.loop.create_task(self._tick_forever())

    def flush_dirty(self) -> None:
        dirty, self.dirty = self.dirty, []
        for conn in dirty:
            conn.flush()

    # --- start-up -------------------------------------------------------------------------------
    def _restore(self) -> None:
        restored = self.journal.restore()
        self.set_policy(selection.at_start(self.policy_flag, restored.settings.get(selection.SETTING)))
        self.functions = restored.functions
        kinds = {a[0]: (AppKind(a[1]), a[2]) for a in restored.apps}
        worlds = migrating.JournaledWorlds.read(self.journal, restored.settings)
        evicting.restore_notices(self, restored.settings)
        count = held = 0
        seed_retention(self, restored)
        for req_id, app_id, header, payload in restored.requests:
            sub = decode_header(header)
            assert isinstance(sub, Submit)
            done = restored.finished.get(req_id, set())
            if len(done) >= sub.n:
                continue  # finished: the retention knows it (a resubmission is answered from the journal)
            kind, name = kinds.get(app_id, (AppKind.FUNCTIONS, ""))
            self.outputs.restored(req_id)
            if payload is None:  # a large payload its client keeps: wait for the client to resubmit
                self.state.hold(Held(req_id, app_id, sub.n, frozenset(done), kind, name))
                held += 1
                continue
            self.state.restore(req_id, app_id, sub.n, done, kind, name, sub.kind is not Kind.SCRIPT, sub.tenant,
                               tuple(sub.hosts), sub.migrate, gang=sub.mpi or sub.gang, frozen=worlds.frozen_gen(req_id))
            worlds.restored(self, req_id)  # a frozen world thaws from the store, a recovering one from its checkpoint
            self.payloads[req_id] = Payload(sub, memoryview(payload), None)
            count += 1
        if count or held:
            log.info("restored %d unfinished requests from the journal (%d wait for their client)", count, held)
        deadlines.restore(self, restored.settings)  # delay-tolerant calls keep their deadlines and estimates
        self.state.holds.restore(restored.settings, {r: p.submit.team for r, p in self.payloads.items()}, self.state.requests)
        self.state.start_grace(self.loop.time(), self.config.restart_grace)

    async def _tick_forever(self) -> None:
        interval = min(self.config.heartbeat_interval, self.config.heartbeat_timeout / 4)
        while True:  # ticks from the start: a stall before a second tick must be seen as one too
            stalls = self.state.liveness.stalls
            try:
                self.apply(self.state.tick(self.loop.time()))
            except Exception:  # a bug here must not end the ticker (nor the planner)
                log.exception("internal error in a tick of the planner's state")
            if self.state.liveness.stalls != stalls:
                log.warning("the planner stalled for %.1fs; hosts get a fresh heartbeat grace period",
                            self.state.liveness.last_stall)
            due = self.state.next_deadline()  # e.g. the end of the restart grace, sooner than the next beat
            await self.ticker.sleep(interval if due is None else min(interval, max(0.0, due - self.loop.time())))

    # --- frames -----------------------------------------------------------------------------------
    def on_frame(self, conn: Conn, msg: Message, body: memoryview) -> None:
        if conn.role is None:
            self._handshake(conn, msg)
        elif conn.deferred is not None:
            conn.deferred.append((msg, body))  # a granule whose worker has not re-registered yet
        elif conn.scope is not None and (why := admission.check(self.state, conn.role, conn.scope, msg, self.secret)):
            log.warning("refused %s from %s %s: %s", type(msg).__name__, conn.role, conn.name, why)
            for reply in admission.answers(msg, why):
                conn.send(reply)
            if isinstance(msg, Done) and msg.retiring:
                conn.close()  # the granule waits for this before it exits (see _done)
        elif isinstance(msg, Submit):
            self._submit(conn, msg, body)
        elif isinstance(msg, Done) and conn.role is Role.GRANULE:
            self._done(conn, msg, body)
        elif isinstance(msg, Log) and conn.role is Role.GRANULE:
            self._log(conn, msg)
        elif isinstance(msg, Heartbeat) and conn.role is Role.WORKER:
            self.apply(self.state.heartbeat(conn.name, self.loop.time()))
        elif isinstance(msg, GranuleExit) and conn.role is Role.WORKER:
            self.ended.add(msg.granule_id)
            self.granule_conns.pop(msg.granule_id, None)
            self.apply(self.state.granule_exited(msg.granule_id, msg.cause))
        elif isinstance(msg, Cancel):
            self.cancel(msg.req_id, msg.app_id, close=msg.close)
        elif isinstance(msg, Query):
            self._query(conn, msg)
        elif isinstance(msg, Waiting) and conn.scope is not None:  # a granule's own client (checked above)
            self.apply(self.state.granule_waiting(msg.granule_id, msg.waiting))
        elif isinstance(msg, Stdin) and conn.role is Role.CLIENT:
            self._stdin(msg)
        elif isinstance(msg, MpiJoin) and conn.role is Role.GRANULE:
            address = RankAddress(host_id=msg.host_id, pid=msg.pid, ip=msg.ip, port=msg.port)
            self.apply(self.state.mpi_join(conn.name, msg.req_id, msg.index, address, msg.gen, self.loop.time()))
        elif isinstance(msg, MigrateAsk) and conn.role is Role.GRANULE:
            migrating.on_ask(self, conn, msg)
        elif isinstance(msg, MigrateOut) and conn.role is Role.GRANULE:
            migrating.on_out(self, conn, msg)
        else:
            raise ProtocolError(f"unexpected {type(msg).__name__} frame from a {conn.role.value}")

    def _handshake(self, conn: Conn, msg: Message) -> None:
        if not isinstance(msg, Hello):
            conn.send(Reject(reason="the first frame must be a hello"))
            raise ProtocolError(f"expected hello, got {type(msg).__name__}")
        granted = admission.admit(self.secret, self.token, conn.nonce, msg, self.state, self.ended)
        if isinstance(granted, str):
            conn.send(Reject(reason=f"authentication failed for {msg.role.value}: {granted}"))
            raise ProtocolError(f"authentication failed for a {msg.role.value} from {conn.peer}: {granted}")
        key, conn.scope = granted
        conn.role, conn.name, conn.host_id = msg.role, msg.name, msg.host_id
        conn.app_id = msg.app_id or f"app-{uuid.uuid4().hex[:12]}"
        if msg.role is Role.CLIENT and msg.reply_path and msg.reply_key and msg.local_id:
            conn.lane = (msg.reply_path, msg.reply_key, msg.local_id)
        conn.send(Welcome(mac=acceptor_proof(key, msg.nonce), app_id=conn.app_id, local_path=self.unix_path,
                          local_id=self.local_id if self.unix_path else ""))
        now = self.loop.time()
        if msg.role is Role.WORKER:
            old = self.workers.get(msg.name)
            if old is not None and old is not conn:
                old.close()
            self.workers[msg.name] = conn
            actions = self.state.register_host(msg.name, msg.slots, now, msg.boot)
            incarnation = self.state.hosts[msg.name].incarnation
            log.info("worker %s registered with %d slots from %s (incarnation %d)", msg.name, msg.slots, conn.peer,
                     incarnation)
            conn.send(Registered(incarnation=incarnation, heartbeat_timeout=self.config.heartbeat_timeout,
                                 heartbeat_interval=min(self.config.heartbeat_interval,
                                                        self.config.heartbeat_timeout / 4)))
            self.apply(actions)
        elif msg.role is Role.GRANULE:
            self.granule_conns[msg.name] = conn
            self.apply(self.state.granule_hello(msg.host_id, msg.name, admission.busy_claim(self.secret, msg)))

    def _query(self, conn: Conn, msg: Query) -> None:
        if (answer := queries.ANSWERS.get(msg.what)) is not None:  # they change something, or wait
            return answer(self, conn, msg)
        try:
            data = json.dumps(views.query(self, msg.what, msg.arg)).encode()
            conn.send(Reply(qid=msg.qid, data=data))
        except KeyError as exc:
            conn.send(Reply(qid=msg.qid, data=b"null", error=f"not found: {exc.args[0]}"))
        except GrannyError as exc:
            conn.send(Reply(qid=msg.qid, data=b"null", error=str(exc)))

    def on_lost(self, conn: Conn) -> None:
        if conn.role is Role.GRANULE and self.granule_conns.get(conn.name) is conn:
            del self.granule_conns[conn.name]
            self.state.granule_disconnected(conn.name)
        elif conn.role is Role.WORKER and self.workers.get(conn.name) is conn:
            del self.workers[conn.name]
            log.warning("lost the connection to worker %s", conn.name)

    # --- requests -------------------------------------------------------------------------------
    def _submit(self, conn: Conn | None, msg: Submit, body: memoryview) -> None:
        known = self.payloads.get(msg.req_id)
        if msg.req_id not in self.state.requests and (gone := self.retention.lookup(msg.req_id)) is not None:
            answer_finished(self, conn, msg, gone is Known.PRUNED)  # never run again
            return
        if msg.req_id in self.state.requests:
            if known is not None:
                self.keys.join(msg, known.owner, conn)
                known.owner = conn
                self.outputs.resubscribe(conn, known.submit)
            self.journal.call_after_commit(self._resend_finished, conn, msg.req_id)  # incl. results being written
            return
        if msg.keyed and self.keys.finished_before(msg):
            self._resend_finished(conn, msg.req_id)  # an idempotency key used before: its outcome, not a rerun
            return
        if body.nbytes:
            serde.unframe(body)  # a malformed body is the client's ProtocolError, not a granule's
        if msg.n < 1 or msg.n > 100_000 or not 0 <= msg.team <= 100_000:
            raise ProtocolError(f"request for {msg.n} granules (and a team of {msg.team}) is out of bounds")
        self.payloads[msg.req_id] = Payload(msg, body, conn, self.loop.time())
        self.call_stats.counts["submitted"] += msg.n
        app_kind = AppKind.SCRIPT if msg.kind is Kind.SCRIPT else AppKind.FUNCTIONS
        if msg.app_id not in self.state.apps:
            self.journal.app(msg.app_id, app_kind, msg.name, AppState.RUNNING.value)
        # A Python client keeps every payload until its result arrives and resubmits after a planner
        # restart, so a large payload need not be written to disk here (writing 8 MiB into SQLite
        # costs tens of milliseconds); only the record that it was accepted is.
        held = conn is not None and body.nbytes > JOURNAL_COPY_MAX
        self.journal.request(msg.req_id, msg.app_id, encode_header(msg), None if held else body)
        gang = msg.mpi or msg.gang
        prefetch = msg.kind is not Kind.SCRIPT and not gang
        if not (gang or msg.lease) and self.orphans.adopt(self, msg, app_kind, prefetch):
            return  # it ran while this planner restarted: recorded, not run again
        self.apply(self.state.submit(msg.req_id, msg.app_id, msg.n, app_kind, msg.name, prefetch, gang=gang,
                                     lease=msg.lease, tenant=msg.tenant, hosts=tuple(msg.hosts), migrate=msg.migrate,
                                     retries=msg.retries, tolerance=msg.delay_tolerance, key=msg.fn_key or msg.name,
                                     now=self.loop.time(), restartable=msg.restartable, fuse=msg.fuse, team=msg.team))

    def _stdin(self, msg: Stdin) -> None:
        """Forward input to granule 0 of the request, or hold it until that granule starts."""
        req = self.state.requests.get(msg.req_id)
        if req is None or req.tasks[0].state in TASK_FINAL:
            return
        gconn = self.granule_conns.get(req.tasks[0].granule_id) if req.tasks[0].granule_id else None
        if gconn is None or gconn.closed:
            self.stdin.setdefault(msg.req_id, []).append(msg)
        else:
            gconn.send(msg)

    def _resend_finished(self, conn: Conn | None, req_id: str) -> None:
        if conn is None:
            return
        self.retention.delivered(req_id)
        for idx, header, payload in self.journal.query("SELECT idx, header, payload FROM results WHERE req_id=?", (req_id,)):
            res = decode_header(header)
            assert isinstance(res, Result)
            if payload is None and res.size:
                res = Result(req_id=req_id, index=idx, status=Status.ERROR, error_kind=ErrorKind.LOST, host_id=res.host_id,
                             message=f"the {res.size}-byte result was sent to an earlier connection of this "
                                     "client and not kept; submit the call again")
            conn.send(res, [payload] if payload else [])
        for res, payload in self.recent.for_request(req_id):
            conn.send(res, [payload] if payload else [])

    def _done(self, conn: Conn, msg: Done, body: memoryview) -> None:
        if msg.moved:
            return migrating.on_moved(self, conn, msg)
        if msg.req_id not in self.state.requests and self.orphans.keep(conn, msg, body):
            return
        if msg.retiring:  # it exits next: never hand it more work (its exit report removes it)
            self.state.granule_disconnected(conn.name)
        self.outputs.task_done(msg.req_id, msg.index, conn.name)
        if self.sent_at or self.state.batch.known:
            deadlines.observe_runtime(self, msg)
        accepted, actions = self.state.task_done(conn.name, msg.req_id, msg.index, msg.status is Status.OK)
        if accepted:
            res = Result(req_id=msg.req_id, index=msg.index, status=msg.status, size=msg.size,
                         error_kind=msg.error_kind, message=msg.message, traceback=msg.traceback,
                         exit_code=msg.exit_code, host_id=conn.host_id)
            self._deliver(res, body, handed=msg.delivered)
        self.apply(actions)
        # Acknowledged once committed (see acks); a retiring granule is closed then, and only then exits:
        # otherwise its worker's exit report could overtake the Done and read as a crash.
        self.acks.note(conn, msg.seq, close=msg.retiring)

    def _deliver(self, res: Result, body: memoryview | bytes, handed: bool = False) -> None:
        """Send a result to its client (unless the granule ``handed`` it over the client's lane) and journal it."""
        req = self.state.requests.get(res.req_id)
        if req is not None and req.reruns:
            res.attempts = req.reruns + 1
        payload = self.payloads.get(res.req_id)
        self.call_stats.finished(res.status is Status.OK, self.loop.time() - payload.at if payload and payload.at else None)
        sent = handed or (payload is not None and payload.owner is not None and not payload.owner.closed)
        if sent and not handed:
            assert payload is not None and payload.owner is not None
            payload.owner.send(res, [body] if len(body) else [])
        self.keys.deliver(res, body)
        # The result record is always journaled; a large value already handed to its client is not
        # (a granule that used the lane does not even send it here: ``size`` set, empty body).
        kept = None if sent and (len(body) > JOURNAL_COPY_MAX or (res.size and not len(body))) else body
        if not sent and (payload is None or payload.submit.kind is not Kind.NAMED):
            self.retention.undelivered.add(res.req_id)  # kept until its client comes back for it
        self.journal.result(res.req_id, res.index, encode_header(res), kept)
        if payload is not None and payload.submit.kind is Kind.NAMED:
            self.recent.put((res.req_id, res.index), res, body)
        for fut in self.waiters.pop(res.req_id, []):
            if not fut.done():
                fut.set_result(None)
        self._delivered.add(res.req_id)

    def _log(self, conn: Conn, msg: Log) -> None:
        if msg.req_id not in self.state.requests and self.orphans.keep(conn, msg, memoryview(b"")):
            return
        payload = self.payloads.get(msg.req_id)
        req = self.state.requests.get(msg.req_id)
        fresh = req is not None and self.outputs.take(req.app_id, msg)
        if fresh and payload is not None and payload.owner is not None and payload.submit.stream_logs:
            self.outputs.forward(payload.owner, msg)
        self.acks.note(conn, msg.seq)

    def cancel(self, req_id: str = "", app_id: str = "", close: bool = False) -> None:
        if close and app_id:
            self.apply(self.state.close_app(app_id))
        else:
            self.apply(self.state.cancel(req_id=req_id, app_id=app_id))

    # --- effects ----------------------------------------------------------------------------------
    def apply(self, actions: list[Action]) -> None:
        replay = self._apply(actions)
        for key, value in self.state.holds.changes():  # slots held for teams outlive a restart (holds.py)
            self.journal.setting(key, value)
        # Payloads are dropped only after every action ran: several results of one request may be
        # delivered by a single batch of actions.
        for req_id in self._delivered:
            req = self.state.requests.get(req_id)
            if req is not None and req.final():
                self.payloads.pop(req_id, None)
                self.stdin.pop(req_id, None)
        self._delivered.clear()
        if self.state.batch.known:  # a latest start, resume or freeze time may have come closer (ticker.py)
            self.ticker.due(self.state.batch.next_deadline())
        for gconn in filter(None, map(self.granule_conns.get, replay)):  # what it sent while its host was away
            frames, gconn.deferred = gconn.deferred or [], None
            for frame, body in frames:
                self.on_frame(gconn, frame, body)

    def _apply(self, actions: list[Action]) -> list[str]:
        """Carry out ``actions``; returns the granules whose held frames are to be replayed after them."""
        replay: list[str] = []
        for action in actions:
            if isinstance(action, Dispatch):
                self._dispatch(action)
            elif isinstance(action, Fail):
                res = Result(req_id=action.req_id, index=action.index, status=Status.ERROR,
                             error_kind=action.error_kind, message=action.message, host_id=action.host_id)
                self._deliver(res, b"")
            elif isinstance(action, Kill):
                worker = self.workers.get(action.host_id)
                if worker is not None:
                    worker.send(KillGranule(granule_id=action.granule_id, reason=action.reason, signal=action.signal))
            elif isinstance(action, Skip):
                conn = self.granule_conns.get(action.granule_id)
                if conn is not None:
                    conn.send(SkipMsg(req_id=action.req_id, index=action.index))
            elif isinstance(action, SpawnGranules):
                worker = self.workers.get(action.host_id)
                if worker is not None:
                    worker.send(Spawn(count=action.count))
            elif isinstance(action, RevokeAction):
                owner = self.payloads.get(action.req_id)
                if owner is not None and owner.owner is not None and not owner.owner.closed:
                    owner.owner.send(Revoke(req_id=action.req_id, count=action.count))
            elif isinstance(action, ForgetHost):
                worker = self.workers.pop(action.host_id, None)
                log.warning("%s", action.reason)
                if worker is not None:  # it re-registers by itself, as the host's next incarnation
                    worker.send(Rejoin(reason=action.reason))
                    worker.close()
            elif isinstance(action, StopWorker):
                evicting.stop_worker(self, action)
            elif isinstance(action, AppChanged):
                app = self.state.apps[action.app_id]
                self.journal.app(app.app_id, app.kind, app.name, action.state.value)
            elif isinstance(action, WorldReady | JoinRefused):
                self._world(action)
            elif isinstance(action, HoldFrames) and (gconn := self.granule_conns.get(action.granule_id)):
                gconn.deferred = []
            elif isinstance(action, ReplayFrames):
                replay.append(action.granule_id)
            elif isinstance(action, GraceEnded):
                self.orphans.close()
            elif isinstance(action, Pruned):
                forget(self, action)
            elif isinstance(action, MigrateAnswer | ResumeRank | Hint | MigrationEvent | StoreState | DropState):
                migrating.apply(self, action)
        return replay

    def _world(self, action: WorldReady | JoinRefused) -> None:
        if isinstance(action, JoinRefused):
            if (gconn := self.granule_conns.get(action.granule_id)) is not None:
                gconn.send(MpiWorld(req_id=action.req_id, error=action.reason, gen=action.gen))
            return
        ranks = [MpiRank(host_id=r.host_id, pid=r.pid, ip=r.ip, port=r.port) for r in action.ranks]
        reply = MpiWorld(req_id=action.req_id, key=secrets.token_bytes(16), ranks=ranks, gen=action.gen)  # the world's data-plane key
        for gid in action.granule_ids:
            gconn = self.granule_conns.get(gid)
            if gconn is not None and not gconn.closed:
                gconn.send(reply)

    def _dispatch(self, action: Dispatch) -> None:
        payload = self.payloads[action.req_id]
        sub = payload.submit
        conn = self.granule_conns.get(action.granule_id)
        if conn is None or conn.closed:  # raced with a disconnect; its exit report will fail the task
            return
        run = Run(req_id=sub.req_id, index=action.index, n=sub.n, app_id=sub.app_id, kind=sub.kind,
                  fn_key=sub.fn_key, name=sub.name, memory_limit=sub.memory_limit,
                  argv=sub.argv, mpi=sub.mpi, prefetched=action.prefetched, checkpoint=sub.checkpoint, fused=action.fused, nice=deadlines.nice(self, sub.req_id),
                  attempts=self.state.requests[sub.req_id].reruns + 1 if self.state.requests[sub.req_id].reruns else 0,
                  grant=task_grant(self.secret, action.granule_id, sub.req_id, action.index))
        owner = payload.owner
        if owner is not None and owner.lane is not None and lane_policy.offered(sub):  # see transport/lane_policy.py
            run.reply_to, run.reply_key, run.reply_local = owner.lane
        if action.thaw:
            conn.send(migrating.thaw_run(self, run, action.thaw))
            return
        if self.state.batch.keys and (sub.fn_key or sub.name) in self.state.batch.keys:
            self.sent_at[(sub.req_id, action.index)] = self.loop.time()  # its runtime feeds the deadline guard
        conn.send(run, [payload.body])
        if action.index == 0:
            for pending in self.stdin.pop(sub.req_id, []):
                conn.send(pending)

    # --- services for the HTTP API --------------------------------------------------------------------
    def set_policy(self, name: str) -> None:
        """Place (and later migrate) with policy ``name`` from now on; ConfigError if there is none.
        Journaled: a restarted planner keeps it."""
        self.state.policy = selection.policy_named(name)
        self.journal.setting(selection.SETTING, name)
        self.apply(self.state.schedule())  # a waiting request may fit under the new rules

    def register_function(self, name: str, spec: dict[str, Any], replace: bool = False) -> None:
        """Record a named function; ``replace`` must be set to change an existing one (else ConflictError)."""
        if name in self.functions and not replace:
            raise ConflictError(f"a function named {name!r} is already registered; pass ?replace=true to replace it")
        self.functions[name] = spec
        self.journal.function(name, spec)

    def invoke(self, name: str, input_json: bytes, tolerance: float | None = None) -> str:
        """Call registered function ``name``; ``tolerance`` None: the function's default delay tolerance."""
        spec = json.dumps(self.functions[name], sort_keys=True).encode()
        if tolerance is None:
            tolerance = float(self.functions[name].get("delay_tolerance", 0.0))
        req_id = f"call-{uuid.uuid4().hex}"
        sub = Submit(req_id=req_id, app_id=f"fn-{name}", kind=Kind.NAMED,
                     fn_key=hashlib.blake2b(spec, digest_size=16).hexdigest(), name=name,
                     delay_tolerance=-1.0 if tolerance < 0 else tolerance)
        self._submit(None, sub, memoryview(serde.frame([spec, input_json])))
        return req_id

    async def committed(self) -> None:
        fut: asyncio.Future[None] = self.loop.create_future()
        def wake() -> None:  # on the journal's writer thread
            self.loop.call_soon_threadsafe(_set, fut)

        self.journal.after_commit(wake)
        await fut

    async def wait_call(self, req_id: str, timeout: float) -> None:
        req = self.state.requests.get(req_id)
        if req is None or req.final():
            return
        fut: asyncio.Future[None] = self.loop.create_future()
        self.waiters.setdefault(req_id, []).append(fut)
        await asyncio.wait_for(fut, timeout)

    def call_result(self, req_id: str) -> tuple[Result, bytes] | None:
        """A finished call's result from memory or the journal (None: unknown, or not committed yet)."""
        hit = self.recent.get((req_id, 0))
        if hit is not None:
            return hit
        rows = self.journal.query("SELECT header, payload FROM results WHERE req_id=? AND idx=0", (req_id,))
        if not rows:
            return None
        res = decode_header(rows[0][0])
        assert isinstance(res, Result)
        return res, bytes(rows[0][1] or b"")

    def task_states(self, req_id: str) -> list[str] | None:
        return None if (req := self.state.requests.get(req_id)) is None else [t.state.value for t in req.tasks]

    def is_final(self, req_id: str) -> bool:
        req = self.state.requests.get(req_id)
        return req is not None and all(t.state in TASK_FINAL for t in req.tasks)

    def close(self) -> None:
        self._ticker.cancel()
        self.feed.close()
        self.store.close()
        self.journal.close()


def _set(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
