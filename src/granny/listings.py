"""The listing commands of ``granny`` (status, hosts, logs, policy; see cli.py) and the helpers every
command shares to reach a cluster and to print (rich on stderr for messages, stdout for listings)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .config import ENV_ADDRESS, ENV_SLOTS, env
from .errors import ConfigError, GrannyError


def _console(stdout: bool = False) -> Any:
    """Rich output: on stderr for messages, on stdout for what a command lists (``stdout=True``). A listing
    piped somewhere (no terminal, no $COLUMNS) is laid out 160 wide rather than cropped at 80."""
    from rich.console import Console

    stream = sys.stdout if stdout else sys.stderr
    wide = 160 if stdout and not stream.isatty() and not os.environ.get("COLUMNS") else None
    return Console(stderr=not stdout, highlight=False, width=wide)



def _client(address: str | None, slots_needed: int = 0) -> Any:
    from .client import connect

    if not (address or env(ENV_ADDRESS)) and slots_needed > (os.cpu_count() or 1):
        # Like mpirun --oversubscribe: the embedded cluster gets as many slots as granules asked for.
        _console().print(f"[yellow]warning:[/] {slots_needed} granules on {os.cpu_count()} cores: oversubscribing")
        os.environ.setdefault(ENV_SLOTS, str(slots_needed))
    return connect(address)



def cmd_status(args: argparse.Namespace) -> int:

    client = _client(args.address)
    data = client.query("app", args.app) if args.app else client.query("apps")
    migration = _migration(client, args.app) if args.app and data.get("state") == "running" else None
    counters = None if args.app or args.json else client.query("counters")
    client.close()
    if args.json:
        return _print_json(data)
    con = _console(stdout=True)  # a listing: pipeable, like ls
    if args.app:
        con.print(f"app [bold]{data['app_id']}[/] ({data['kind']} {data['name']}): [bold]{data['state']}[/] {data['tasks']}")
        table = _table("request", "index", "state", "host", "granule", "deadline", ids=("host", "granule"))
        for g in data["granules"]:
            due = ("whenever" if g.get("deadline_in") is None else f"in {g['deadline_in']:g}s, slack {g['slack']:g}s"
                   ) if g.get("delay_tolerant") else ""
            due += " (paused)" if g.get("paused") else " (fused)" if g.get("fused") else ""
            due += f", preempted {g['preempted']}x" if g.get("preempted") else ""
            due += f" ({g['frozen']}x frozen)" if g.get("frozen") else ""
            table.add_row(g["req_id"], str(g["index"]), g["state"], g["host_id"], g["granule_id"], due)
        for m in data.get("migrations", []):
            con.print(f"migrated: {m['text']}")
        if migration is not None:
            con.print(_describe_migration(migration))
    else:
        table = _table("app", "kind", "name", "state", "queued", "running", "succeeded", "failed", "cancelled")
        for a in data:
            t = a["tasks"]
            table.add_row(a["app_id"], a["kind"], a["name"], a["state"], *(str(t.get(k, "")) for k in
                          ("queued", "running", "succeeded", "failed", "cancelled")))
    _show(con, table)
    for line in _preemptions(counters or {}):
        con.print(line)
    return 0


def _preemptions(counters: dict[str, dict[str, int]]) -> list[str]:
    """What the planner counted of delay-tolerant calls and of frozen MPI worlds (each kind its own counts)."""
    b, m = counters.get("batch", {}), counters.get("migration", {})
    lines = []
    if b.get("admitted") or b.get("restored"):
        lines.append(f"delay-tolerant calls: {b.get('admitted', 0)} admitted, {b.get('refused', 0)} refused, "
                     f"{b.get('met', 0)} deadlines met, {b.get('missed', 0)} missed; calls frozen "
                     f"{b.get('frozen', 0)}, thawed {b.get('thawed', 0)}, restarted {b.get('preempted', 0)}, "
                     f"paused {b.get('paused', 0)}")
    if m.get("freezes") or m.get("completed"):
        lines.append(f"MPI worlds: moved {m.get('completed', 0)}, frozen {m.get('frozen', 0)}, "
                     f"thawed {m.get('thawed', 0)}")
    return lines


def _print_json(data: Any) -> int:
    """A listing for programs: the planner's full records, ids whole, one JSON document on stdout."""

    print(json.dumps(data, indent=2))
    return 0


def _migration(client: Any, app_id: str) -> dict[str, Any] | None:
    try:
        return dict(client.query("migration", app_id))
    except GrannyError:
        return None  # an older planner, or the app ended meanwhile: the status itself is what was asked


def _describe_migration(m: dict[str, Any]) -> str:
    if m["decision"] == "move":
        moves = ", ".join(f"{x['index']} {x['source']} -> {x['target']}" for x in m["moves"])
        return f"migration: would move rank(s) {moves} ({m['reason']})"
    if m["decision"] == "freeze":
        return f"migration: would freeze ({m['reason']})"
    return f"migration: stays ({m['reason']})"


def _table(*columns: str, id_width: int = 0, ids: tuple[str, ...] = ()) -> Any:
    """A rich table whose id columns (the first, and those named in ``ids``) are never cut nor folded
    once :func:`_show` has sized them: an id is copied into `granny status APP`, `granny cancel` or
    `granny hosts evict` with a double click, so it must stay whole on one line. The other columns
    wrap instead."""
    from rich.table import Table

    table = Table()
    for i, name in enumerate(columns):
        if i == 0 or name in ids:
            table.add_column(name, no_wrap=True, overflow="fold", min_width=id_width or None)
        else:
            table.add_column(name)
    return table


def _show(con: Any, table: Any) -> None:
    """Print ``table`` (see :func:`_table`) with each id column as wide as its longest id. On a terminal too
    narrow for that, the lines run over its edge (the terminal wraps them, as ``kubectl get`` does)
    rather than an id being cut."""
    from rich.measure import Measurement

    for column in table.columns:
        if column.no_wrap:
            column.min_width = max([len(str(cell)) for cell in column.cells] + [column.min_width or 0])
    need = Measurement.get(con, con.options.update_width(1 << 16), table).minimum
    con.width = max(con.width, need)
    con.print(table, crop=False)


def cmd_hosts(args: argparse.Namespace) -> int:

    if (args.action == "list") == bool(args.host):
        raise ConfigError("name a host after evict or restore, and only there: granny hosts evict HOST [--in 60s]")
    client = _client(args.address)
    try:
        if args.action != "list":
            return _evict(client, args.action, args.host, args.grace, args.json)
        data = client.query("hosts")
    finally:
        client.close()
    if args.json:
        return _print_json(data)
    table = _table("host", "slots", "used", "idle granules", "alive", "last heartbeat", "incarnation", "eviction")
    for h in data:
        left = h.get("evicting_in")
        eviction = "evicted" if h.get("evicted") else "" if left is None else f"[yellow]in {left:.0f}s[/]"
        table.add_row(h["host_id"], str(h["slots"]), str(h["used"]), str(h["idle_granules"]),
                      "yes" if h["alive"] else "[red]dead[/]", f"{h['last_heartbeat_age']:.1f}s ago",
                      str(h.get("incarnation", "")), eviction)
    _show(_console(stdout=True), table)
    return 0


def _evict(client: Any, action: str, host: str, grace: str | None, as_json: bool = False) -> int:
    if action == "restore" and grace is not None:
        raise ConfigError("--in goes with evict, not restore")
    row = client.query(action, f"{host}:{grace}" if grace is not None else host)
    if as_json:
        return _print_json(row)
    if action == "evict" and row["alive"]:
        print(f"host {host}: evicting in {row['evicting_in']:.0f}s (no new work goes there; apps with migration "
              "points move off it at their next one under the spot policy)")
    elif action == "evict":
        print(f"host {host}: evicted; its worker was told to stop")
    elif row["alive"]:
        print(f"host {host}: restored; it takes new work")
    else:
        print(f"host {host}: restored; its capacity comes back when its worker registers again")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    client = _client(args.address)
    rows = client.query("logs", args.app)
    client.close()
    if args.json:
        return _print_json(rows)
    for row in rows:
        (sys.stdout if row["stream"] == "stdout" else sys.stderr).write(row["data"])
    return 0



def cmd_policy(args: argparse.Namespace) -> int:
    if (args.action == "set") != bool(args.name):
        raise ConfigError("give a policy name after `set`, and only there: granny policy set NAME")
    client = _client(args.address)
    try:
        data = client.query("set-policy", args.name) if args.action == "set" else client.query("policy")
    finally:
        client.close()
    if args.json:
        return _print_json(data)
    others = ", ".join(p for p in data["policies"] if p != data["policy"])
    print(f"policy: {data['policy']}" + (f" (others: {others})" if others else ""))
    return 0


