"""What the planner's state shows a policy: a :class:`ClusterView` built from hosts, granules and requests.

Theory of operation
- A host's ``free`` is what can take a granule now: ``min(slots - busy, idle granules)``, so a
  slot whose granule is still starting or being replaced is not offered. A host under an eviction
  notice offers none, whatever the policy (see eviction.py). ``placements`` counts,
  per app, the granules running one of its tasks there (prefetched tasks have not started and do
  not count); ``tenants`` are the tenants of those tasks' requests.
- One pass over the live hosts' granules builds it: O(hosts + granules), and :meth:`schedule`
  builds it again only after it placed something, never per queued request.
- The waiting queue is left out of the view :meth:`schedule` builds (no placement rule reads it, and
  listing it would make every placement O(queue)); :func:`queue_of` adds it where it is cheap to.
- A pinned request that is partly placed already (a task requeued after its host died) asks only
  for its pending granules, on the pinned slots its placed tasks do not hold (:func:`request_for`).
Pure: no I/O, no clock (``now`` comes in as an argument).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from .lifecycle import GranuleState, TaskState
from .policies import ClusterView, HostView, PlacementRequest, RunningApp, Wait
from .records import App, Host, Request

Counts = tuple[tuple[str, int], ...]


def cluster_view(hosts: Iterable[Host], requests: Mapping[str, Request], apps: Mapping[str, App],
                 evicting: set[str], queue: tuple[PlacementRequest, ...] = (), now: float = 0.0,
                 with_apps: bool = True, cold: bool = False) -> ClusterView:
    """``with_apps=False``: leave ``apps`` empty. Placing a request reads only the hosts (their free
    slots, placements and tenants); the running apps are for migration rules, and building them for
    every placement would cost each call of a stream several microseconds. ``cold=True``: count a free
    slot even while its granule is still starting (would there be room in a moment?)."""
    views: list[HostView] = []
    running: dict[str, list[str]] | None = {} if with_apps else None
    for host in hosts:
        if host.alive:
            views.append(host_view(host, requests, host.host_id in evicting, cold, running)[0])
    apps_view = {a: RunningApp(a, tuple(hs), apps[a].tenant if a in apps else "",
                               apps[a].migrate if a in apps else True) for a, hs in (running or {}).items()}
    return ClusterView(tuple(views), apps_view, queue, now)


def host_view(host: Host, requests: Mapping[str, Request], evicting: bool, cold: bool = False,
              running: dict[str, list[str]] | None = None) -> tuple[HostView, int, bool]:
    """One live host's view, its busy slots (see Host.busy), and whether one of its granules runs a
    task of a request not known here (the view would change when it is). ``running``: app -> hosts
    of its granules, added to."""
    here: dict[str, int] = {}
    tenants: set[str] = set()
    busy = idle = 0
    unknown = False
    busy_state, idle_state = GranuleState.BUSY, GranuleState.IDLE
    for g in host.granules.values():  # per granule, the least work: this runs for every placement (a hot loop)
        tasks = g.tasks
        if tasks:
            req = requests.get(tasks[0][0])
            if req is not None:
                app_id = req.app_id
                here[app_id] = here.get(app_id, 0) + 1
                tenants.add(req.tenant)
                if running is not None:
                    running.setdefault(app_id, []).append(host.host_id)
            else:
                unknown = True
        # A busy granule holds its slot even with no task: a cancelled one stays busy until its
        # Kill lands (Host.busy counts it the same way).
        state = g.state
        if state is busy_state:
            if not g.waiting:
                busy += 1
        elif state is idle_state and g.connected and not tasks:
            idle += 1
    # a host under an eviction notice offers no slot, whatever the policy (see eviction.py)
    free = 0 if evicting else max(0, host.slots - busy if cold else min(host.slots - busy, idle))
    return HostView(host.host_id, host.slots, free, 0, here, evicting, frozenset(tenants)), busy, unknown


def migration_view(hosts: Iterable[Host], requests: Mapping[str, Request], apps: Mapping[str, App],
                   evicting: set[str], queue: Iterable[str], app_id: str, now: float = 0.0) -> ClusterView:
    """The view a migration rule gets: with the queue, and ``app_id``'s granules in index order."""
    hosts = [h for h in hosts if h.alive]
    view = cluster_view(hosts, requests, apps, evicting, queue_of(queue, requests), now)
    started = started_tasks(hosts)
    mapping = dict(view.apps)
    mapping[app_id] = running_app(apps[app_id], requests, started)
    return ClusterView(view.hosts, mapping, view.queue, view.now, view.evict_at)


def world_view(view: ClusterView, req: Request, apps: Mapping[str, App], interval: float = 0.0) -> ClusterView:
    """``view`` with one MPI world (request ``req``) as an app of its own, keyed by its request id, its
    granules in rank order: the world migrates as a unit, whatever else its app runs (and a world
    submitted with ``migrate=False`` stays, whatever its app's other requests said)."""
    here = Counter(t.host_id for t in req.tasks if t.state is TaskState.RUNNING)
    hosts = []
    for h in view.hosts:
        n = here.get(h.host_id, 0)
        if not n:
            hosts.append(h)
            continue
        placements = dict(h.placements)
        left = placements.get(req.app_id, 0) - n
        if left > 0:
            placements[req.app_id] = left
        else:
            placements.pop(req.app_id, None)
        placements[req.req_id] = n
        hosts.append(HostView(h.host_id, h.slots, h.free, 0, placements, h.evicting, h.tenants))
    app = apps.get(req.app_id)
    world = RunningApp(req.req_id, tuple(t.host_id for t in req.tasks), app.tenant if app else req.tenant,
                       req.migrate, interval)
    return ClusterView(tuple(hosts), {**view.apps, req.req_id: world}, view.queue, view.now, view.evict_at)


def running_app(app: App, requests: Mapping[str, Request], started: set[tuple[str, int]]) -> RunningApp:
    """The app with its granules in order (request by request, index by index); ``started`` are the
    (req_id, index) pairs that a granule runs now (not prefetched behind another task)."""
    placement = tuple(requests[rid].tasks[i].host_id for rid, i in running_keys(app, requests, started))
    return RunningApp(app.app_id, placement, app.tenant, app.migrate)


def running_keys(app: App, requests: Mapping[str, Request], started: set[tuple[str, int]]) -> list[tuple[str, int]]:
    """The (req_id, index) of each granule of :func:`running_app`'s placement, in the same order: what a
    migration decision's granule indexes refer to."""
    return [(rid, i) for rid in app.requests if rid in requests for i, t in enumerate(requests[rid].tasks)
            if t.state is TaskState.RUNNING and (rid, i) in started]


def started_tasks(hosts: Iterable[Host]) -> set[tuple[str, int]]:
    """The tasks granules of live hosts run now (prefetched ones have not started)."""
    return {g.tasks[0] for h in hosts if h.alive for g in h.granules.values() if g.tasks}


def remaining_pins(req: Request, pending: int) -> Counts:
    """The pinned slots ``req``'s pending granules may still take: the pins its placed tasks did
    not use, in the order named, cut to ``pending`` granules."""
    used = Counter(t.host_id for t in req.tasks if t.state is not TaskState.QUEUED and t.host_id)
    left: list[tuple[str, int]] = []
    want = pending
    for host_id, count in req.hosts:
        taken = min(count, used.get(host_id, 0))
        used[host_id] -= taken
        give = min(count - taken, want)
        if give > 0:
            left.append((host_id, give))
            want -= give
    return tuple(left)


def request_for(req: Request, pending: int) -> PlacementRequest:
    # Pins fix where an app starts; a frozen world thaws, and a call re-run after its host died runs,
    # wherever it fits (the pinned host may be gone).
    pins = remaining_pins(req, pending) if req.hosts and not req.frozen and not req.reruns else ()
    return PlacementRequest(req.app_id, pending, req.tenant, hosts=pins, migrate=req.migrate)


def pins_down(request: PlacementRequest, hosts: Mapping[str, Host]) -> Wait | None:
    """A pinned host that is down (or none registered yet, as after a planner restart) is waited for;
    a policy would say NeverFits, as it does for a host that was never seen."""
    if not request.hosts:
        return None
    if not any(h.alive for h in hosts.values()):
        return Wait("no hosts registered yet")
    down = [h for h, _ in request.hosts if h in hosts and not hosts[h].alive]
    return Wait(f"pinned host(s) {', '.join(down)} are down") if down else None


def queue_of(queue: Iterable[str], requests: Mapping[str, Request], limit: int = 1000) -> tuple[PlacementRequest, ...]:
    """The waiting requests, oldest first, as a policy sees them (the first ``limit``)."""
    out: list[PlacementRequest] = []
    for rid in queue:
        req = requests.get(rid)
        pending = sum(1 for t in req.tasks if t.state is TaskState.QUEUED) if req is not None else 0
        if req is not None and pending:
            out.append(request_for(req, pending))
            if len(out) >= limit:
                break
    return tuple(out)
