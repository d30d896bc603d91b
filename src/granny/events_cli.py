"""``granny events [--follow] [--since ID] [--json]``: the planner's events (docs/dashboard.md).

Kept apart from cli.py (which is at its size limit); the planner's side is planner/queries.py.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from .tunables import EVENTS_PAGE as PAGE


def add_parser(sub: Any) -> None:
    ev = sub.add_parser("events", help="the planner's events: hosts joined or died, apps queued, placed, migrated, "
                                       "frozen, thawed, finished (docs/dashboard.md)")
    ev.add_argument("--follow", "-f", action="store_true", help="keep following new events until Ctrl-C")
    ev.add_argument("--since", type=int, default=0, metavar="ID", help="only events after this id")
    ev.add_argument("--json", action="store_true", help="one JSON object per line")
    ev.add_argument("--address", default=None)


def line(row: dict[str, Any]) -> str:
    at = time.strftime("%H:%M:%S", time.localtime(row["at"]))
    return f"{row['id']:>6}  {at}  {row['kind']:<20} {row['text']}"


def cmd_events(args: argparse.Namespace) -> int:
    import json  # here, not at the top: every `granny` command imports this module

    from .client import connect

    client, since = connect(args.address), args.since
    try:
        while True:  # with --follow, a query with nothing new waits (up to 20 s) for what comes next
            rows = client.query("events", f"{since}:wait" if args.follow else str(since), timeout=60.0)
            for row in rows:
                since = max(since, row["id"])
                print(json.dumps(row) if args.json else line(row), flush=True)
            if not args.follow and len(rows) < PAGE:  # a full page: more follow
                return 0
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()
