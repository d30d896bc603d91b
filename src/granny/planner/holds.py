"""Slots held for a team: an OpenMP-style job's thread 0 starts only where its team fits, and the team gets them;
and a finishing world's slots, for it.

Theory of operation
- An OpenMP-style job is two requests of one app: thread 0 (a gang of one), and, once that process
  has set its team up, the team's lease (``granny.parallel``). Between the two, a newly arriving
  app's first request could take the free slots next to thread 0 (bin-pack puts it on the fullest
  host that holds it: exactly that one), and then both jobs wait half-placed, each holding a slot
  that does nothing. A user who asked for a team of N expects the job to start with N slots, as an
  OpenMP job under a batch scheduler does, so a request may say how many granules its app will
  lease next (``Submit.team``).
- Such a request is placed as if it needed ``1 + team`` granules (it waits until the whole team
  fits), its own granule is dispatched, and the other slots of that placement are *held* for its
  app: other apps' requests see them as taken; the app's own requests see them free.
- The app's next request goes to the front of the queue (a held slot waits for nobody's turn) and
  is placed on the held slots without asking the policy again (they were chosen with thread 0: a
  whole-hosts policy, which gives a request only hosts nobody uses, would otherwise put the team on
  another host set); a request larger than the hold, or a hold whose slots are gone, is placed by the
  policy as usual. Its placement consumes the hold. A hold also ends when the request that made it is final (a job
  that never leased its team), so slots are never held for a job that is over.
- Holds survive a planner restart (kill -9 included): the server journals each change as a setting
  ``hold:<app_id>`` (:meth:`Holds.changes`; an empty value: no hold), and the restarted planner reinstalls
  the holds whose holding request it restored, and the team each restored queued request asked for
  (:meth:`Holds.restore`). A hold placed in the last moment before a crash, whose setting was not yet
  committed, is lost: the team then waits for a free slot like any other request.
- A finishing MPI world's slots come back together: its ranks report Done one by one (ms apart live, one
  event each in the simulator), and a waiting request placed after the first would take the slots freed
  so far and start split over hosts, beside a world-sized hole that opens a moment later (the
  simulator's mpi-migrate runs: granny-migrate's links over the optimum 1.28-1.51 with it, 1.15-1.20
  without). So a rank that ended holds its slot for its world's app until the world's last rank ends or
  the world fails (``ending``; not journaled: a restart forgets a hold of a few milliseconds). A
  script's rank process exits after its Done and a fresh granule takes its slot: when the last rank's
  does, neither its Done nor its exit runs a placement pass; the fresh granule's arrival does, with all
  the world's slots back (no slot is held meanwhile: any other event's pass may use them). A batch
  scheduler keeps a job's allocation to its end the same way.
- Pure data, like the rest of the planner core: no clock, no I/O.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from .capacity import Placed
from .lifecycle import TASK_FINAL
from .policies.base import ClusterView, Decision, Placement, PlacementRequest, Policy
from .records import Request

SETTING = "hold:"  # journal settings holding an app's held slots (see changes())


@dataclass
class Holds:
    wanted: dict[str, int] = field(default_factory=dict)  # queued req_id -> team granules to hold once it is placed
    held: dict[str, tuple[str, Counter[str]]] = field(default_factory=dict)  # app_id -> (its holding req, host -> slots)
    journaled: dict[str, str] = field(default_factory=dict)  # app_id -> its hold as last handed to the journal
    ending: dict[str, tuple[str, Counter[str]]] = field(default_factory=dict)  # world req_id -> (app, its ended ranks' slots)
    quiet: set[str] = field(default_factory=set)  # exiting granules of worlds' last ranks: no pass at their exit
    # make_room.py: a world moving to make room -> (its app, its target slots, the world it makes room for);
    # a world -> (its app, the room made for it). Soft: a queued request that needs them ends them all.
    moving: dict[str, tuple[str, Counter[str], str]] = field(default_factory=dict)
    room: dict[str, tuple[str, Counter[str]]] = field(default_factory=dict)

    def changes(self) -> list[tuple[str, str]]:
        """The journal settings to write for the holds made or ended since the last call."""
        now = self._encoded()
        out = [(SETTING + app, value) for app, value in now.items() if self.journaled.get(app) != value]
        out += [(SETTING + app, "") for app in self.journaled if app not in now]
        self.journaled = now
        return out

    def restore(self, settings: Mapping[str, str], teams: Mapping[str, int], requests: Mapping[str, Request]) -> None:
        """After a restart: the journaled holds whose holding request was restored, and the team each
        restored request (``teams``: req_id -> its Submit's team) holds once it is placed."""
        for req_id, team in teams.items():
            if team > 0 and req_id in requests:
                self.wanted[req_id] = team
        for key, value in settings.items():
            if not key.startswith(SETTING) or not value:
                continue
            hold = json.loads(value)
            req = requests.get(hold["req"])
            if req is not None and req.app_id == key[len(SETTING):]:
                self.held[req.app_id] = (req.req_id, Counter({str(h): int(n) for h, n in hold["hosts"].items()}))
                # wanted stays: a thread 0 that is run again (its granule did not report it) holds anew
        self.journaled = self._encoded()  # what the journal holds already

    def _encoded(self) -> dict[str, str]:
        return {app: json.dumps({"req": req_id, "hosts": dict(sorted(hosts.items()))})
                for app, (req_id, hosts) in self.held.items()}

    def extra(self, req: Request) -> int:
        """Granules to place ``req`` with, beyond its own (none for a pinned request: its pins say where)."""
        return 0 if req.hosts else self.wanted.get(req.req_id, 0)

    def enqueue(self, queue: deque[str], req: Request, team: int = 0) -> None:
        """Queue ``req`` (to hold ``team`` granules for its app once placed); a request of an app that
        holds slots goes first: the slots are already its own."""
        if team > 0:
            self.wanted[req.req_id] = team
        if req.app_id in self.held:
            queue.appendleft(req.req_id)
        else:
            queue.append(req.req_id)

    def decide(self, policy: Policy, view: ClusterView, req: Request, request: PlacementRequest,
               requests: Mapping[str, Request]) -> Decision:
        """Where ``req`` goes: on its app's held slots if they take it all, else where ``policy`` says,
        in a view without the slots held for other apps."""
        mine = self.view(view, req.app_id, requests)
        holder, hosts = self.held.get(req.app_id, ("", Counter[str]()))
        if holder and holder != req.req_id and not request.hosts and request.n <= sum(hosts.values()):
            free = {h.host_id: h.free for h in mine.hosts}
            if all(free.get(h, 0) >= n for h, n in hosts.items()):
                return Placement(tuple(h for h, n in sorted(hosts.items()) for _ in range(n))[: request.n])
        decision = policy.place(mine, request)
        plans = sum(sum(t.values()) for _, t, _ in self.moving.values()) + sum(sum(r.values()) for _, r in self.room.values())
        if (not isinstance(decision, Placement) and plans  # soft: the queue goes first
                and sum(h.free for h in mine.hosts) + plans >= request.n):
            plain = policy.place(self.view(view, req.app_id, requests, plans=False), request)
            if isinstance(plain, Placement):
                self.moving.clear()
                self.room.clear()
                return plain
        return decision

    def rank_ended(self, req: Request, host_id: str, retiring: str = "") -> bool:
        """A rank of the world ``req`` ended on ``host_id``: its slot stays the world's until the last rank
        ends. True: no placement pass is due; the world still runs (its slot is held for it), or that was the
        last rank, in a granule that exits (``retiring``, a script's): place nothing now nor at its exit, but
        when its fresh granule connects, with all the world's slots back."""
        if not req.gang or req.lease or req.n < 2:  # (a lease gives its slots back one by one)
            return False
        if not req.final():  # its slot is still the world's: nothing to place (no pass)
            self.ending.setdefault(req.req_id, (req.app_id, Counter()))[1][host_id] += 1
            return True
        if self.ending.pop(req.req_id, None) is None or not retiring:
            return False
        self.quiet.add(retiring)
        return True

    def quiet_exit(self, granule_id: str) -> bool:
        """Whether ``granule_id``'s exit should run no placement pass (see rank_ended)."""
        if granule_id not in self.quiet:
            return False
        self.quiet.remove(granule_id)
        return True

    def view(self, view: ClusterView, app_id: str, requests: Mapping[str, Request], plans: bool = True) -> ClusterView:
        """``view`` as ``app_id`` sees it: the slots held for other apps are not free."""
        self._expire(requests)
        others: Counter[str] = Counter()
        held = [(app, hosts) for app, (_, hosts) in self.held.items()] + list(self.ending.values())
        if plans:
            held += [(app, hosts) for app, hosts, _ in self.moving.values()] + list(self.room.values())
        for holder, hosts in held:
            if holder != app_id:
                others.update(hosts)
        if not others:
            return view
        pos: Mapping[str, int] = getattr(view.hosts, "pos", {})  # (capacity.Placed: the kept views)
        patched = list(view.hosts)
        for host_id, n in others.items() if pos else ():
            i = pos.get(host_id, -1)
            if i < 0:
                continue  # not a live host
            if i >= len(patched) or patched[i].host_id != host_id:
                break  # (not the tuple the positions are of)
            patched[i] = replace(patched[i], free=max(0, patched[i].free - n))
        else:
            if pos:
                placed = Placed(patched)
                placed.pos, placed.held = pos, {h: patched[pos[h]] for h in others if h in pos}
                return replace(view, hosts=placed)
        get = others.get  # (not others[...]: a Counter's missing key costs a Python call)
        return replace(view, hosts=tuple(replace(h, free=max(0, h.free - k)) if (k := get(h.host_id)) else h
                                         for h in view.hosts))

    def placed(self, req: Request, pending: list[int], hosts: tuple[str, ...]) -> tuple[str, ...]:
        """``req`` was placed on ``hosts``: the hosts of its own granules (the rest are held for its app)."""
        own, rest = hosts[: len(pending)], hosts[len(pending):]
        if self.wanted.pop(req.req_id, 0) and rest:
            self.held[req.app_id] = (req.req_id, Counter(rest))
        elif req.app_id in self.held and self.held[req.app_id][0] != req.req_id:
            del self.held[req.app_id]  # its team took them
        return own

    def _expire(self, requests: Mapping[str, Request]) -> None:
        for app_id, (req_id, _) in list(self.held.items()):
            req = requests.get(req_id)
            if req is None or all(t.state in TASK_FINAL for t in req.tasks):
                del self.held[app_id]
        for req_id in [r for r in self.wanted if r not in requests]:
            del self.wanted[req_id]
        for req_id in [r for r in self.ending if r not in requests or requests[r].final()]:
            del self.ending[req_id]
        for req_id in [r for r in self.room if r not in requests or requests[r].final()]:
            del self.room[req_id]
        for req_id in [r for r, (_, _, w) in self.moving.items() if any(
                x not in requests or requests[x].final() for x in (r, w))]:
            del self.moving[req_id]
