"""The planner server's side of migration points: frames in, the state's migration actions out.

The decisions are the pure state's (:mod:`granny.planner.migration`); this module turns frames into its
events and its actions into frames, journal rows and log lines. A finished move is also told to the
app's client, as a line on its ``granny`` stream: ``granny run`` prints it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..transport.macs import task_grant
from ..wire import (
    Done,
    Log,
    MigrateAsk,
    MigrateHint,
    MigrateMove,
    MigrateOrder,
    MigrateOut,
    Run,
)
from . import freezing
from .records import DropState, Hint, MigrateAnswer, MigrationEvent, ResumeRank, StoreState

if TYPE_CHECKING:
    from .conn import Conn
    from .journal import Journal
    from .server_protocol import Server

log = logging.getLogger("granny.planner")

RECOVERING = "recovering."  # journal setting per world restarting from a checkpoint: "<gen>:<checkpoint>"


@dataclass(frozen=True)
class JournaledWorlds:
    """What the journal says about MPI worlds that a restarted planner must not forget: frozen ones
    (they thaw from the store), their latest checkpoints, and those restarting from a checkpoint."""

    frozen: dict[str, int]  # req_id -> the generation it froze into
    checkpoints: dict[str, int]  # req_id -> its latest complete checkpoint
    recovering: dict[str, tuple[int, int]]  # req_id -> (generation, checkpoint) it restarts from

    @classmethod
    def read(cls, journal: Journal, settings: dict[str, str]) -> JournaledWorlds:
        recovering = {}
        for key, value in settings.items():
            if key.startswith(RECOVERING) and value:
                gen, _, ckpt = value.partition(":")
                recovering[key[len(RECOVERING):]] = (int(gen), int(ckpt))
        return cls({r[0]: int(r[1]) for r in journal.query("SELECT req_id, gen FROM frozen")},
                   {r[0]: int(r[1]) for r in journal.query("SELECT req_id, ckpt FROM checkpoints")}, recovering)

    def frozen_gen(self, req_id: str) -> int:
        return self.frozen.get(req_id, 0) or self.recovering.get(req_id, (0, 0))[0]

    def restored(self, p: Server, req_id: str) -> None:
        """``req_id`` was just restored into the state: give it back its generation and checkpoints."""
        req, m = p.state.requests[req_id], p.state.migrations
        if gen := self.frozen_gen(req_id):
            m.gens[req_id] = gen
        if req_id in self.checkpoints:  # a host that dies later restarts the world from there
            req.checkpoint = m.checkpoints[req_id] = self.checkpoints[req_id]
        if req_id in self.recovering and req_id not in self.frozen:  # it thaws from that checkpoint
            req.thaw_from = f"c{self.recovering[req_id][1]}"

MigrationAction = MigrateAnswer | ResumeRank | Hint | MigrationEvent | StoreState | DropState


def on_ask(p: Server, conn: Conn, msg: MigrateAsk) -> None:
    p.apply(p.state.migrate_ask(conn.name, msg.req_id, msg.gen, msg.ready, msg.why, p.loop.time(), msg.checkpoint,
                                msg.interval))


def on_out(p: Server, conn: Conn, msg: MigrateOut) -> None:
    p.apply(p.state.migrate_served(conn.name, msg.req_id, msg.index, msg.gen, msg.ip, msg.port, msg.key,
                                   msg.checkpoint))


def on_moved(p: Server, conn: Conn, msg: Done) -> None:
    """The old process of a moved rank handed its state over and retires (its Done is not the task's end)."""
    p.state.granule_disconnected(conn.name)  # it exits next: never hand it more work
    p.apply(p.state.moved_away(conn.name, msg.req_id, msg.index))
    p.acks.note(conn, msg.seq, close=True)


def apply(p: Server, action: MigrationAction) -> None:
    if isinstance(action, MigrateAnswer):
        gconn = p.granule_conns.get(action.granule_id)
        if gconn is not None and not gconn.closed:
            moves = [MigrateMove(index=m.index, source=m.source, target=m.target) for m in action.moves]
            gconn.send(MigrateOrder(req_id=action.req_id, gen=action.gen, moves=moves, reason=action.reason,
                                    freeze=action.freeze, checkpoint=action.checkpoint))
    elif isinstance(action, Hint):
        gconn = p.granule_conns.get(action.granule_id)
        if gconn is not None and not gconn.closed:
            gconn.send(MigrateHint(req_id=action.req_id))
    elif isinstance(action, ResumeRank):
        _resume(p, action)
    elif isinstance(action, StoreState):
        _store(p, action)
    elif isinstance(action, DropState):  # thawed, replaced or over: that stored state is not needed any more
        p.store.drop(action.req_id, action.slot)
        if not action.slot or action.slot.startswith("g"):
            p.journal.frozen(action.req_id, 0, 0)
        if not action.slot:
            p.journal.checkpoint(action.req_id, 0)
            p.journal.setting(RECOVERING + action.req_id, "")
    else:
        _event(p, action)


def _store(p: Server, action: StoreState) -> None:
    def done(error: str) -> None:
        p.apply(p.state.state_stored(action.req_id, action.index, action.slot, error, p.loop.time()))

    p.store.fetch(action.req_id, action.index, action.slot, f"{action.ip}:{action.port}", action.key, done)


def thaw_run(p: Server, run: Run, gen: int) -> Run:
    """The Run of a frozen rank: pull its state from this planner's store (":port": the planner's host)."""
    req = p.state.requests[run.req_id]
    if not req.gang:
        freezing.thawed(p.state, run.req_id)
    port, key = p.store.grant(run.req_id, req.thaw_from or f"g{gen}", run.index)
    run.resume_from, run.resume_key, run.gen = f":{port}", key, gen
    return run


def _resume(p: Server, action: ResumeRank) -> None:
    payload = p.payloads.get(action.req_id)
    conn = p.granule_conns.get(action.granule_id)
    if payload is None or conn is None or conn.closed:
        return  # raced with a disconnect or the world's end: the granule's exit report fails the rank
    sub = payload.submit
    run = Run(req_id=sub.req_id, index=action.index, n=sub.n, app_id=sub.app_id, kind=sub.kind,
              name=sub.name, memory_limit=sub.memory_limit, argv=sub.argv, mpi=sub.mpi,
              grant=task_grant(p.secret, action.granule_id, sub.req_id, action.index),
              resume_from=f"{action.ip}:{action.port}", resume_key=action.key, gen=action.gen)
    conn.send(run)


def _event(p: Server, ev: MigrationEvent) -> None:
    p.feed.migration(ev)  # journaled and streamed (see event_feed.py)
    log.info("app %s: migration %s: %s", ev.app_id, ev.kind, ev.text)
    if ev.kind == "frozen":
        p.journal.frozen(ev.req_id, int(ev.data["gen"]), p.state.requests[ev.req_id].n, float(ev.data.get("ran", 0.0)))
    elif ev.kind == "recovering":  # a planner restarted before the world runs again still restarts it from there
        p.journal.setting(RECOVERING + ev.req_id, f"{ev.data['gen']}:{ev.data['checkpoint']}")
    elif ev.kind == "recovered":
        p.journal.setting(RECOVERING + ev.req_id, "")
    elif ev.kind == "checkpoint":
        p.journal.checkpoint(ev.req_id, int(ev.data["checkpoint"]))
    if ev.kind not in ("moved", "frozen", "thawed", "recovering", "recovered"):
        return
    payload = p.payloads.get(ev.req_id)
    owner = payload.owner if payload is not None else None
    if owner is not None and not owner.closed and payload is not None and payload.submit.stream_logs:
        line = Log(req_id=ev.req_id, index=-1, stream="granny", data=ev.text + "\n")
        if ev.kind in ("frozen", "recovering"):  # said once journaled: a planner restarted from then on thaws it
            p.journal.call_after_commit(owner.send, line)
        else:
            owner.send(line)
