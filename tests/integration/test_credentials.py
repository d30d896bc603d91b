"""The cluster secret stays out of user code; what a granule's own credential may and may not do.

Each test plays a hostile function: it takes whatever key its granule holds (its environment, and
the granule's credential) and hands it to the caller, who then tries to misuse it on a real planner.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

import granny
from granny import serde
from granny.cluster import LocalCluster
from granny.config import Config
from granny.errors import AuthError
from granny.transport import dial
from granny.wire import Done, Role, Status

from ..polling import wait_for


def loot(release: str = "") -> dict[str, Any]:
    """Inside a granule: every key user code can lay its hands on (then wait for ``release`` to exist)."""
    import os
    import time

    keys: list[str | bytes] = [v for v in os.environ.values() if v]
    try:
        from granny.transport.identity import current

        me = current()
        if me is not None:
            keys.append(me.credential)
    except ImportError:  # a granny without granule credentials
        pass
    found = {"env": dict(os.environ), "keys": keys, "pid": os.getpid(), "ppid": os.getppid(),
             "host_id": os.environ.get("GRANNY_HOST_ID", ""), "granule_id": os.environ.get("GRANNY_GRANULE_ID", ""),
             "app_id": os.environ.get("GRANNY_APP_ID", "")}
    while release and not os.path.exists(release):
        time.sleep(0.01)
    return found


def _secret(cluster: LocalCluster) -> str:
    return (cluster.data_dir / "secret").read_text().strip()


def _memory_holds(pid: int, needle: bytes) -> bool:
    """Whether any readable mapping of process ``pid`` contains ``needle`` (we are root: we may look)."""
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        with open(f"/proc/{pid}/maps") as fh:
            regions = [line.split() for line in fh]
        for fields in regions:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
                continue
            try:
                data = os.pread(fd, end - start, start)
            except OSError:
                continue
            if needle in data:
                return True
        return False
    finally:
        os.close(fd)


def test_a_function_finds_no_cluster_secret_in_its_environment_or_memory(cluster: LocalCluster,
                                                                         client: granny.Client) -> None:
    secret = _secret(cluster)
    found = client.submit(loot).result(timeout=30)
    assert "GRANNY_SECRET" not in found["env"] and "GRANNY_TOKEN" not in found["env"]
    assert not [k for k, v in found["env"].items() if secret in v or cluster.token in v]
    # Nor anywhere in the granule's memory, nor in the zygote's it was forked from.
    for pid in (found["pid"], found["ppid"]):
        assert not _memory_holds(pid, secret.encode()), f"the cluster secret is in the memory of process {pid}"
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert secret.encode() not in environ


def test_no_key_a_function_finds_registers_a_worker(cluster: LocalCluster, client: granny.Client) -> None:
    found = client.submit(loot).result(timeout=30)
    addr = ("127.0.0.1", cluster.port)
    assert found["keys"]
    for key in found["keys"]:
        with pytest.raises(AuthError):
            dial(addr, Role.WORKER, key, name="rogue", host_id="rogue", pid=1, slots=64)
        with pytest.raises(AuthError):  # nor claim to be its worker's host
            dial(addr, Role.WORKER, key, name=found["host_id"], host_id=found["host_id"], pid=1, slots=64)
    hosts = {h.host_id for h in client.hosts()}
    assert hosts == {"local"}


def test_a_granule_credential_is_only_that_granule(cluster: LocalCluster, client: granny.Client) -> None:
    found = client.submit(loot).result(timeout=30)
    cred = found["keys"][-1]
    assert isinstance(cred, bytes), "the granule holds its own credential"
    addr = ("127.0.0.1", cluster.port)
    gid, host = found["granule_id"], found["host_id"]
    other = re.sub(r"\d+$", lambda m: str(int(m.group()) + 1000), gid)
    for role, name, host_id in ((Role.GRANULE, other, host), (Role.GRANULE, gid, "elsewhere"),
                                (Role.WORKER, host, host), (Role.CLIENT, "", "")):
        with pytest.raises(AuthError):
            dial(addr, role, cred, name=name, host_id=host_id, pid=1)


def app_of_this_task() -> str:
    import os  # read in the child's granule (a pickled os.environ.get would carry the parent's copy)

    return os.environ["GRANNY_APP_ID"]


def scoped_misuse(release: str) -> dict[str, str]:
    """Inside a granule: what its chaining client may do, and what it may not."""
    import os
    import time

    import granny

    out: dict[str, str] = {}
    c = granny.connect()
    out["child"] = str(c.submit(app_of_this_task).result(timeout=30))
    try:
        c.query("apps")
        out["apps"] = "allowed"
    except granny.GrannyError as exc:
        out["apps"] = str(exc)
    try:
        c.query("queue")  # names other apps' requests
        out["queue"] = "allowed"
    except granny.GrannyError as exc:
        out["queue"] = str(exc)
    out["waiting"] = str(c.query("waiting"))  # a count only: what an elastic team in a granule asks
    c.app_id = "app-of-someone-else"
    try:
        c.submit(pow, 2, 2).result(timeout=30)
        out["other_app"] = "allowed"
    except Exception as exc:  # reported to the test
        out["other_app"] = str(exc)
    while not os.path.exists(release):
        time.sleep(0.01)
    return out


def test_a_granule_chains_only_into_its_own_app(cluster: LocalCluster, client: granny.Client, tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.touch()
    out = client.submit(scoped_misuse, str(release)).result(timeout=60)
    assert out["child"] == client.app_id  # chaining works, in the caller's app
    assert "refused" in out["apps"] and "refused" in out["queue"]
    assert out["waiting"] == "0"
    assert "refused" in out["other_app"] and "app-of-someone-else" in out["other_app"]


def test_a_stolen_granule_credential_submits_only_into_that_granules_app(cluster: LocalCluster,
                                                                        client: granny.Client,
                                                                        tmp_path: Path) -> None:
    release = tmp_path / "release"
    started = tmp_path / "started"
    box: dict[str, Any] = {}
    fut = client.submit(_loot_and_wait, str(started), str(release))
    try:
        wait_for(started.exists, what="the function to start", timeout=30)
        box.update(eval(started.read_text()))  # our own function wrote it
        cred, gid, host = box["cred"], box["granule_id"], box["host_id"]
        addr = f"127.0.0.1:{cluster.port}"
        with pytest.raises(AuthError):  # another app: refused at the door
            granny.Client(addr, cred, app_id="victim-app", granule_id=gid, _granule_host=host,
                          config=Config(reconnect_timeout=1.0))._conn.close()
        thief = granny.Client(addr, cred, app_id=box["app_id"], granule_id=gid, _granule_host=host)
        try:
            assert thief.submit(pow, 3, 2).result(timeout=30) == 9  # its own app: what chaining needs
            thief.app_id = "victim-app"
            with pytest.raises(granny.GrannyError, match="refused"):
                thief.submit(pow, 3, 2).result(timeout=30)
            with pytest.raises(granny.GrannyError, match="refused"):
                thief.query("app", "victim-app")
        finally:
            thief._detach()
    finally:
        release.touch()
    assert fut.result(timeout=30) == "done"


def _loot_and_wait(started: str, release: str) -> str:
    import os
    import time

    from granny.transport.identity import current

    me = current()
    assert me is not None
    info = {"cred": me.credential, "granule_id": me.granule_id, "host_id": me.host_id,
            "app_id": os.environ["GRANNY_APP_ID"]}
    with open(started + ".tmp", "w") as fh:
        fh.write(repr(info))
    os.rename(started + ".tmp", started)
    while not os.path.exists(release):
        time.sleep(0.01)
    return "done"


def hold(release: str) -> str:
    import os
    import time

    while not os.path.exists(release):
        time.sleep(0.01)
    return "the real result"


def test_a_granule_credential_cannot_forge_another_tasks_result(cluster: LocalCluster, client: granny.Client,
                                                                tmp_path: Path) -> None:
    release = tmp_path / "release"
    victim = client.submit(hold, str(release))  # runs on one granule until released
    found = client.submit(loot).result(timeout=30)  # the other granule hands its keys out
    addr = ("127.0.0.1", cluster.port)
    forged = serde.framed(serde.dumps("forged"))
    for key in found["keys"]:
        try:
            conn, _, _ = dial(addr, Role.GRANULE, key, name=found["granule_id"], host_id=found["host_id"], pid=1)
        except AuthError:
            continue
        conn.send(Done(req_id=victim.req_id, index=0, status=Status.OK, size=serde.body_size(forged)), forged)
        conn.close()
    client.query("hosts")  # a round trip: what the forger sent has been handled
    release.touch()
    assert victim.result(timeout=30) == "the real result"


def test_the_credential_of_an_exited_granule_is_dead(cluster: LocalCluster, client: granny.Client,
                                                     tmp_path: Path) -> None:
    script = tmp_path / "leak.py"
    script.write_text("from granny.transport.identity import current\n"
                      "me = current()\n"
                      "print(me.granule_id, me.host_id, me.credential.hex())\n")
    lines: list[str] = []
    results = client.run_script(str(script), on_log=lambda m: lines.append(m.data))
    assert results[0].exit_code == 0
    gid, host, hexcred = "".join(lines).split()
    addr = ("127.0.0.1", cluster.port)

    def refused() -> bool:  # a script's granule retires: refused once its worker reported the exit
        try:
            conn, _, _ = dial(addr, Role.GRANULE, bytes.fromhex(hexcred), name=gid, host_id=host, pid=1)
        except AuthError as exc:
            return "exited" in str(exc)
        conn.close()
        return False

    wait_for(refused, what="the planner to refuse the exited granule's credential", timeout=30)


def test_data_dir_is_private_and_the_journal_too(cluster: LocalCluster, client: granny.Client) -> None:
    assert client.submit(pow, 2, 5).result(timeout=30) == 32
    assert cluster.data_dir.stat().st_mode & 0o777 == 0o700
    journal = cluster.data_dir / "journal.sqlite"
    files = [journal, journal.with_name("journal.sqlite-wal"), journal.with_name("journal.sqlite-shm")]
    wait_for(lambda: all(f.exists() for f in files), what="the journal's WAL files")
    for f in [*files, cluster.data_dir / "secret", cluster.data_dir / "token"]:
        assert f.stat().st_mode & 0o777 == 0o600, f"{f.name} is {oct(f.stat().st_mode & 0o777)}"


def chain_app() -> tuple[str, str]:
    import os

    import granny

    return os.environ["GRANNY_GRANULE_ID"], str(granny.submit(app_of_this_task).result(timeout=30))


def test_a_granule_reused_by_another_app_chains_into_that_app(cluster: LocalCluster, client: granny.Client) -> None:
    """granny.submit's cached client is per app: a warm granule serves many apps in turn."""
    with granny.connect(cluster.address, cluster.token) as other:
        seen: dict[str, set[str]] = {}
        for i in range(40):  # until a granule that chained for one app has chained for the other
            c = (client, other)[i % 2]
            gid, child_app = c.submit(chain_app).result(timeout=60)
            assert child_app == c.app_id
            seen.setdefault(gid, set()).add(c.app_id)
            if any(len(apps) == 2 for apps in seen.values()):
                break
        else:
            raise AssertionError(f"no granule served both apps: the test proved nothing ({seen})")
