"""The ``granny`` command: up | planner | worker | run | submit | status | hosts | logs | cancel | policy | testbed."""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from . import events_cli
from .config import (
    DEFAULT_EVICTION_GRACE,
    DEFAULT_HTTP_PORT,
    DEFAULT_RETAIN,
    DEFAULT_RPC_PORT,
    ENV_ADDRESS,
    ENV_DATA_DIR,
    ENV_EVICTION_GRACE,
    ENV_HEARTBEAT_TIMEOUT,
    ENV_RETAIN,
    ENV_SECRET,
    ENV_TLS_CA,
    ENV_TOKEN,
    Config,
    env,
    format_duration,
    parse_address,
    parse_bytes,
    parse_cap,
    parse_duration,
    parse_hosts,
    parse_nice,
    parse_share,
    parse_slots,
)
from .errors import ConfigError, ErrorKind, GrannyError
from .listings import _client, _console, cmd_hosts, cmd_logs, cmd_policy, cmd_status
from .placing import Placing, parse_checkpoint


def _positive(raw: str) -> int:
    try:
        return parse_slots(raw, "value")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {raw!r}")
    return value


HEARTBEAT_HELP = (f"declare a host dead after this many seconds without a heartbeat (default 5, or "
                  f"${ENV_HEARTBEAT_TIMEOUT}); workers take their heartbeat period from the planner")
DATA_DIR_HELP = f"the planner's directory: secret, token, journal (default: ${ENV_DATA_DIR} or .granny)"
GRANULE_USER_HELP = ("run granules as USER: default 'nobody' when the worker runs as root, else the worker's own "
                     "user; 'same' keeps the worker's user (or set GRANNY_GRANULE_USER)")


class _PolicyNames:
    """The --policy choices, imported only when a command looks at them: `granny run` need not."""

    def _names(self) -> list[str]:
        from .planner.policies import POLICIES

        return list(POLICIES)

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="granny", description="Run Python functions and MPI programs as granules.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start a planner and local workers in the foreground")
    up.add_argument("--workers", type=_positive, default=1)
    up.add_argument("--slots", type=_positive, default=None, help="slots per worker (default: cores)")
    up.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    up.add_argument("--port", type=int, default=DEFAULT_RPC_PORT, help="RPC port (0 picks a free one)")
    up.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, help="HTTP API port (0 picks one)")
    up.add_argument("--bind", default="127.0.0.1")
    up.add_argument("--heartbeat-timeout", type=_seconds, default=None, help=HEARTBEAT_HELP)
    up.add_argument("--granule-user", default=None, metavar="USER", help=GRANULE_USER_HELP)

    pl = sub.add_parser("planner", help="run the planner (one per cluster)")
    pl.add_argument("--bind", default="127.0.0.1",
                    help="address to listen on (default loopback only; 0.0.0.0 for every interface)")
    pl.add_argument("--port", type=int, default=DEFAULT_RPC_PORT)
    pl.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT)
    pl.add_argument("--no-http", action="store_true")
    pl.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    pl.add_argument("--heartbeat-timeout", type=_seconds, default=None, help=HEARTBEAT_HELP)
    pl.add_argument("--restart-grace", type=_seconds, default=None,
                    help="seconds a restarted planner waits for granules to report before rerunning journaled work")
    pl.add_argument("--retain", default=None, metavar="DURATION",
                    help=f"keep finished requests, results and logs this long, then prune them (default: "
                         f"${ENV_RETAIN} or {format_duration(DEFAULT_RETAIN)}; e.g. 30m, 2h, 1d)")
    pl.add_argument("--eviction-grace", default=None, metavar="DURATION",
                    help=f"grace period of an eviction notice that names none (default: ${ENV_EVICTION_GRACE} or "
                         f"{format_duration(DEFAULT_EVICTION_GRACE)})")
    pl.add_argument("--batch-share", default=None, metavar="FRACTION",
                    help="share of the slots delay-tolerant calls may take, in (0, 1] (default: $GRANNY_BATCH_SHARE or 1)")
    pl.add_argument("--fusion-cap", default=None, metavar="N",
                    help="delay-tolerant async calls one granule runs at once while they wait on I/O; 1 turns fusion "
                         "off (default: $GRANNY_FUSION_CAP or 32)")
    pl.add_argument("--batch-nice", default=None, metavar="N|idle", help="run delay-tolerant calls at this nice value, "
                    "0-19, or idle: SCHED_IDLE (planner/idle.py), so that they yield the cores to latency-sensitive "
                    "work (default: $GRANNY_BATCH_NICE or 0: no change)")
    pl.add_argument("--policy", default=None, choices=_PolicyNames(), metavar="NAME",
                    help="placement and migration policy: %(choices)s (default: the one the journal names, else bin-pack; "
                         "change it at run time with `granny policy set`); see docs/policies.md")
    pl.add_argument("--http-max-body", default=None, metavar="SIZE",
                    help="largest HTTP request body, e.g. 64MiB (larger ones get 413)")
    pl.add_argument("--http-max-source", default=None, metavar="SIZE",
                    help="largest Python source of a registered function, e.g. 1MiB")
    pl.add_argument("--recent-bytes", default=None, metavar="SIZE",
                    help="memory for recent HTTP call results, e.g. 64MiB (0: always read the journal)")
    pl.add_argument("--tls-cert", default="", help="PEM certificate chain: serve RPC and HTTP over TLS")
    pl.add_argument("--tls-key", default="", help="PEM private key of --tls-cert")
    pl.add_argument("--handshake-timeout", type=float, default=None,
                    help="seconds a connection may take to authenticate (default 5)")
    pl.add_argument("--max-unauthenticated", type=_positive, default=None,
                    help="connections that may wait to authenticate at once; more are closed (default 256)")

    wk = sub.add_parser("worker", help="run a worker on this host (one per VM)")
    wk.add_argument("--planner", required=True, help="planner RPC address HOST:PORT")
    wk.add_argument("--slots", type=_positive, default=None)
    wk.add_argument("--host-id", default=None)
    wk.add_argument("--secret-file", default=None, help=f"cluster secret file (or set {ENV_SECRET})")
    wk.add_argument("--tls-ca", default=None, help=f"CA file: reach the planner over TLS (or set {ENV_TLS_CA})")
    wk.add_argument("--granule-user", default=None, metavar="USER", help=GRANULE_USER_HELP)
    wk.add_argument("--register-at", type=float, default=0.0, metavar="EPOCH",
                    help="start now, register with the planner at this Unix time (the testbed boots a spot VM's "
                         "worker ahead of its return)")

    for name, helptext in (("run", "run a script as N granules and stream its output"),
                           ("submit", "submit a script as N granules and return its app id")):
        r = sub.add_parser(name, help=helptext)
        r.add_argument("-n", "--np", dest="n", type=_positive, default=1)
        r.add_argument("--address", default=None)
        r.add_argument("--memory-limit", default=None, help="per granule, e.g. 512MiB")
        r.add_argument("--tenant", default="", help="who the app runs for (the compact policy keeps tenants apart)")
        r.add_argument("--hosts", default="", metavar="H:N[,H:N...]",
                       help="pin the placement, as mpirun --host: N granules on host H, ...; must add up to -n")
        r.add_argument("--no-migrate", dest="migrate", action="store_false",
                       help="keep the app where it was placed: migration never moves it")
        r.add_argument("--checkpoint", default="", metavar="N|Ts",
                       help="save the MPI world's state every N migration points (3) or T seconds (10s), to restart "
                            "from if a host dies (docs/migration.md)")
        if name == "run":
            r.add_argument("--tag-output", action="store_true", help="prefix each output line with [rank] (as mpirun)")
        r.add_argument("script")
        r.add_argument("args", nargs=argparse.REMAINDER)

    st = sub.add_parser("status", help="apps, or one app's granules")
    st.add_argument("app", nargs="?")
    st.add_argument("--address", default=None)
    st.add_argument("--json", action="store_true")
    hs = sub.add_parser("hosts", help="hosts, slots and heartbeats; `granny hosts evict HOST [--in 60s]`, `... restore HOST`",
                        description="`granny hosts` lists the hosts. `granny hosts evict HOST --in 60s` gives HOST an "
                                    "eviction notice (a spot VM taken back): no new work goes there, and at the end "
                                    "what still runs there fails and its worker stops. `granny hosts restore HOST` "
                                    "lifts it. See docs/spot.md.")
    hs.add_argument("action", nargs="?", choices=["list", "evict", "restore"], default="list")
    hs.add_argument("host", nargs="?", help="with evict or restore: the host")
    hs.add_argument("--in", dest="grace", default=None, metavar="DURATION",
                    help="with evict: the grace period, e.g. 60s, 2m or 0 (default: the planner's --eviction-grace)")
    hs.add_argument("--address", default=None)
    hs.add_argument("--json", action="store_true")
    lg = sub.add_parser("logs", help="captured output of an app")
    lg.add_argument("app")
    lg.add_argument("--address", default=None)
    lg.add_argument("--json", action="store_true", help="the log records (index, stream, data) as JSON")
    cc = sub.add_parser("cancel", help="cancel an app")
    cc.add_argument("app")
    cc.add_argument("--address", default=None)
    po = sub.add_parser("policy", help="show the planner's placement policy, or change it: `granny policy set NAME`",
                        description="`granny policy` shows the policy in use and the ones to choose from; `granny "
                                    "policy set NAME` runs NAME from now on (journaled: a planner restart keeps it).")
    po.add_argument("action", nargs="?", choices=["show", "set"], default="show")
    po.add_argument("name", nargs="?", help="with set: a policy the planner has (`granny policy` lists them)")
    po.add_argument("--address", default=None)
    po.add_argument("--json", action="store_true", help="the policy in use and the ones to choose from, as JSON")
    events_cli.add_parser(sub)
    tb = sub.add_parser("testbed", help="multi-host testbed of network namespaces", add_help=False)
    tb.add_argument("rest", nargs=argparse.REMAINDER)
    ex = sub.add_parser("experiment", help="cluster experiments: replay job traces (sim), plot", add_help=False)
    ex.add_argument("rest", nargs=argparse.REMAINDER)
    for command in ("run", "submit", "status", "hosts", "logs", "cancel", "policy", "events"):
        sub.choices[command].add_argument("--tls-ca", default=None,
                                          help=f"CA file: reach the planner over TLS (or set {ENV_TLS_CA})")
    return p


def _readable_file(raw: str, flag: str) -> str:
    """The absolute path of a file given by ``flag`` (children may run elsewhere), or ConfigError."""
    path = Path(raw).expanduser().resolve()
    if not raw or not path.is_file() or not os.access(path, os.R_OK):
        raise ConfigError(f"{flag} {raw!r} is not a readable file")
    return str(path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["testbed"]:  # its own parser: options such as --help must reach it untouched
        return cmd_testbed(argparse.Namespace(rest=argv[1:]))
    if argv[:1] == ["experiment"]:
        return cmd_experiment(argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "tls_ca", None):  # dialling reads it from the environment; workers hand it to granules
            os.environ[ENV_TLS_CA] = _readable_file(args.tls_ca, "--tls-ca")
        return int(COMMANDS[args.command](args))
    except GrannyError as exc:
        _console().print(f"[bold red]granny:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        return 130


# --- cluster processes -------------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    import signal

    from .client import connect
    from .cluster import LocalCluster

    started = time.perf_counter()
    data_dir = args.data_dir or env(ENV_DATA_DIR)
    cluster = LocalCluster(workers=args.workers, slots=args.slots, data_dir=data_dir, port=args.port,
                           http_port=args.http_port, ephemeral=False, bind=args.bind,
                           heartbeat_timeout=args.heartbeat_timeout, granule_user=args.granule_user)
    con = _console()
    token_file = Path(data_dir).resolve() / "token"
    con.print(f"[bold green]granny is up[/] in {time.perf_counter() - started:.2f}s: planner {cluster.address}, "
              f"HTTP http://{cluster.http_address}, {args.workers} worker(s) x {cluster.slots} slots")
    con.print(f"token: {token_file}   dashboard: http://{cluster.http_address}/ui/   (Ctrl-C stops the cluster)")
    print(f"export {ENV_ADDRESS}={cluster.address}")
    print(f"export {ENV_TOKEN}=$(cat {token_file})")
    print(f"READY address={cluster.address} http={cluster.http_address} token_file={token_file}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    # Ctrl-C (or kill -INT) stops it even when it was started from a background job: a shell starts
    # those with SIGINT ignored, and Python then keeps ignoring it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    client = None  # to the cluster, once a worker was evicted
    try:
        # A worker that exits with code 0 was evicted (`granny hosts evict`): the cluster runs on without it,
        # and starts it again once its host is restored (`granny hosts restore`).
        while cluster.procs[0].poll() is None and all(p.poll() in (None, 0) for p in cluster.procs[1:]):
            if cluster.evicted():
                try:
                    client = client or connect(cluster.address, cluster.token)
                    for host_id in cluster.revive(client.query("hosts")):
                        con.print(f"worker {host_id} started again: its host was restored")
                except GrannyError as exc:  # the planner is busy, say: the next pass tries again
                    con.print(f"[yellow]cannot check the evicted hosts:[/] {exc}")
            time.sleep(0.5)  # supervising the children; not synchronisation
        con.print("[red]a cluster process exited; stopping[/]")
        return 1
    except KeyboardInterrupt:
        con.print("stopping...")
        return 0
    finally:
        if client is not None:
            client.close()
        cluster.stop()


def cmd_planner(args: argparse.Namespace) -> int:
    from .cluster import watch_parent
    from .planner.main import run

    watch_parent()
    return run(planner_config(args), args.bind, args.port, None if args.no_http else args.http_port, args.policy)


def planner_config(args: argparse.Namespace) -> Config:
    config = Config(data_dir=Path(args.data_dir) if args.data_dir else None)  # None: $GRANNY_DATA_DIR
    if args.heartbeat_timeout:
        config = config.with_(heartbeat_timeout=args.heartbeat_timeout)
    sizes = {field: parse_bytes(getattr(args, field)) for field in ("http_max_body", "http_max_source", "recent_bytes")
             if getattr(args, field) is not None}
    config = config.with_(**sizes)
    if args.handshake_timeout is not None:
        config = config.with_(handshake_timeout=args.handshake_timeout)
    if args.max_unauthenticated is not None:
        config = config.with_(max_unauthenticated=args.max_unauthenticated)
    if args.tls_cert or args.tls_key:
        config = config.with_(tls_cert=_readable_file(args.tls_cert, "--tls-cert"),
                              tls_key=_readable_file(args.tls_key, "--tls-key"))
    if args.retain:
        config = config.with_(retain=parse_duration(args.retain, "--retain"))
    if args.restart_grace is not None:
        config = config.with_(restart_grace=args.restart_grace)
    if args.batch_share is not None:
        config = config.with_(batch_share=parse_share(args.batch_share, "--batch-share"))
    if args.fusion_cap is not None:
        config = config.with_(fusion_cap=parse_cap(args.fusion_cap, "--fusion-cap"))
    if args.batch_nice is not None:
        config = config.with_(batch_nice=parse_nice(args.batch_nice, "--batch-nice"))
    if args.eviction_grace:
        config = config.with_(eviction_grace=parse_duration(args.eviction_grace, "--eviction-grace"))
    return config


def cmd_worker(args: argparse.Namespace) -> int:
    from .cluster import watch_parent
    from .config import env_slots
    from .worker.daemon import run_worker

    watch_parent()
    parse_address(args.planner, "--planner")
    secret = env(ENV_SECRET)
    if args.secret_file:
        try:
            secret = Path(args.secret_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the cluster secret from {args.secret_file}: {exc.strerror}") from None
    if not secret:
        raise ConfigError(f"no cluster secret: pass --secret-file (the planner's DATA_DIR/secret) or set {ENV_SECRET}")
    slots = args.slots or env_slots()
    return run_worker(Config(granule_user=args.granule_user), args.planner, secret, slots,
                      args.host_id or socket.gethostname(), args.register_at)


# --- using a cluster ---------------------------------------------------------------------------------
def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_run(args: argparse.Namespace) -> int:
    from .wire import Log

    if not Path(args.script).is_file():
        raise ConfigError(f"no such script: {args.script}")
    # SIGTERM and SIGINT (even when a non-interactive shell started us with SIGINT ignored) cancel the
    # app, as mpirun kills its ranks: a stopped `granny run` must not leave granules holding slots.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    placing = _placing(args)  # a bad --hosts fails here, before connecting
    client = _client(args.address, args.n)
    client = client.options(memory_limit=parse_bytes(args.memory_limit) if args.memory_limit else None,
                            tenant=placing.tenant, hosts=placing.hosts, migrate=placing.migrate,
                            checkpoint=placing.checkpoint)

    def on_log(msg: Log) -> None:
        if msg.stream == "granny":  # the planner's own news about the app (a migration, say)
            sys.stderr.write("".join(f"granny: {line}" for line in msg.data.splitlines(keepends=True)))
            sys.stderr.flush()
            return
        stream = sys.stdout if msg.stream == "stdout" else sys.stderr
        if args.tag_output:
            lines = msg.data.splitlines(keepends=True)
            stream.write("".join(f"[{msg.index}] {line}" for line in lines))
        else:
            stream.write(msg.data)
        stream.flush()

    try:
        results = client.run_script(os.path.abspath(args.script), args.n, args.args, on_log=on_log, mpi=True,
                                    forward_stdin=True)
    finally:
        client.close()
    code = 0
    for res in results:
        if res.status.value != "ok":
            if res.error_kind not in (ErrorKind.EXIT, ErrorKind.CANCELLED):
                _console().print(f"[bold red]granule {res.index} failed:[/] {res.message}")
            if code == 0 and res.error_kind != ErrorKind.CANCELLED:
                code = res.exit_code or 1
    return code


def _placing(args: argparse.Namespace) -> Placing:
    """--tenant, --hosts, --no-migrate and --checkpoint; ConfigError (exit 2) for a bad --hosts (or one that does
    not add up to -n) or a bad --checkpoint."""
    placing = Placing(args.tenant, parse_hosts(args.hosts, "--hosts"), args.migrate,
                      parse_checkpoint(args.checkpoint, "--checkpoint"))
    placing.fields(args.n)
    return placing


def cmd_submit(args: argparse.Namespace) -> int:
    import uuid

    from . import serde
    from .wire import Kind, Submit

    if not Path(args.script).is_file():
        raise ConfigError(f"no such script: {args.script}")
    where = _placing(args).fields(args.n)
    client = _client(args.address)
    source = Path(args.script).read_bytes()
    app_id = f"run-{uuid.uuid4().hex[:12]}"
    sub = Submit(req_id=f"{app_id}-0", app_id=app_id, kind=Kind.SCRIPT, n=args.n,
                 name=args.script, argv=list(args.args), memory_limit=parse_bytes(args.memory_limit), **where)
    client._conn.send(sub, serde.framed([source]))
    client.query("queue")  # a round trip: the submission has been read by the planner
    client._closed = True
    client._conn.close()
    print(app_id)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    client = _client(args.address)
    client.cancel(args.app)
    state = client.query("app", args.app)["state"]
    client.close()
    _console().print(f"app {args.app}: {state}")
    return 0


def cmd_testbed(args: argparse.Namespace) -> int:
    from .testbed.cli import main as testbed_main

    return int(testbed_main(list(args.rest)))


def cmd_experiment(args: argparse.Namespace) -> int:
    from .experiment.cli import main as experiment_main

    return experiment_main(list(args.rest))


COMMANDS = {
    "up": cmd_up, "planner": cmd_planner, "worker": cmd_worker, "run": cmd_run, "submit": cmd_submit,
    "status": cmd_status, "hosts": cmd_hosts, "logs": cmd_logs, "cancel": cmd_cancel, "policy": cmd_policy,
    "testbed": cmd_testbed, "experiment": cmd_experiment, "events": events_cli.cmd_events,
}
