"""Which user granules run as, and the privilege drop a freshly forked granule does before user code.

``--granule-user``: ``auto`` (the default) is ``nobody`` when the worker runs as root and the
worker's own user otherwise; ``same`` (or ``""``) keeps the worker's user; anything else names a user
(or a numeric uid), which needs a root worker. The zygote stays the worker's user: it must be able
to change a child's credentials. Each granule drops them right after the fork, before it connects
to the planner or runs anything of the user's. Changing credentials also makes the process
non-dumpable, so a granule cannot ptrace or read the memory of another granule, even of the same
user; it is set explicitly as well, whatever ``fs.suid_dumpable`` says. The one exception is an MPI
rank: ranks of a world on one host read each other's buffers with ``process_vm_readv``, which needs
the peer to be dumpable, so a rank turns it back on (:func:`set_dumpable`) and retires after its task.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import stat
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

AUTO = "auto"
SAME = ("", "same")
UNPRIVILEGED = "nobody"
_PR_SET_DUMPABLE = 4


@dataclass(frozen=True)
class GranuleUser:
    uid: int
    gid: int
    name: str
    home: str

    def argv(self) -> list[str]:
        """How the worker tells the zygote (a uid and gid: nothing to look up again)."""
        return ["--uid", str(self.uid), "--gid", str(self.gid)]


def resolve(spec: str) -> GranuleUser | None:
    """The user granules run as, or None for the worker's own user. Raises ConfigError."""
    spec = spec.strip()
    if spec in SAME:
        return None
    euid = os.geteuid()
    why = "the default for a root worker" if spec == AUTO else f"--granule-user {spec}"
    if spec == AUTO:
        if euid != 0:
            return None
        spec = UNPRIVILEGED
    try:
        entry = pwd.getpwuid(int(spec)) if spec.isdigit() else pwd.getpwnam(spec)
    except (KeyError, ValueError):
        raise ConfigError(f"--granule-user {spec!r}: no such user (pass --granule-user same to keep the worker's "
                          "own user)") from None
    if entry.pw_uid == euid:
        return None
    if euid != 0:
        raise ConfigError(f"--granule-user {spec!r} needs a worker running as root (this one runs as uid {euid})")
    if entry.pw_uid == 0:
        return None
    user = GranuleUser(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir)
    for path in _runtime_paths():
        if not can_read(user, path):
            raise ConfigError(
                f"granules would run as {user.name} ({why}), who cannot read {path}, part of this "
                f"Python installation: their imports would fail. Install Python and granny where other users can "
                f"read them, or pick a user who can (--granule-user USER), or --granule-user same to run granules "
                f"with the worker's own privileges")
    return user


def _runtime_paths() -> list[Path]:
    """What a granule imports from after the fork: the standard library, site-packages and granny."""
    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    found = {Path(paths[k]) for k in keys if k in paths}
    found.add(Path(__file__).resolve().parent.parent)
    return sorted(p for p in found if p.exists())


def can_read(user: GranuleUser, path: Path) -> bool:
    """Whether ``user`` (no supplementary groups) may list ``path`` and reach it, by mode bits only."""
    for part in [*reversed(path.resolve().parents), path.resolve()]:
        try:
            st = part.stat()
        except OSError:
            return False
        shift = 6 if st.st_uid == user.uid else 3 if st.st_gid == user.gid else 0
        need = (stat.S_IXOTH | (stat.S_IROTH if part == path.resolve() else 0)) << shift
        if st.st_mode & need != need:
            return False
    return True


def from_ids(uid: int, gid: int) -> GranuleUser:
    try:
        entry = pwd.getpwuid(uid)
        return GranuleUser(uid, gid, entry.pw_name, entry.pw_dir)
    except KeyError:
        return GranuleUser(uid, gid, str(uid), "/")


def set_dumpable(on: bool) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, int(on), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def drop_to(user: GranuleUser) -> None:
    """In a forked granule: become ``user`` for good (no way back), or raise OSError."""
    os.setgroups([])
    os.setgid(user.gid)
    os.setuid(user.uid)
    if (os.getuid(), os.geteuid(), os.getgid(), os.getegid()) != (user.uid, user.uid, user.gid, user.gid):
        # never run user code if the drop failed
        raise OSError(f"could not become uid {user.uid}")
    set_dumpable(False)
    tempfile.tempdir = None  # chosen again, as this user: the zygote's choice may be root's alone
    home = user.home if os.access(user.home, os.R_OK | os.W_OK | os.X_OK) else tempfile.gettempdir()
    os.environ.update(HOME=home, USER=user.name, LOGNAME=user.name)
    try:
        cwd = os.getcwd()
        usable = os.access(cwd, os.R_OK | os.X_OK)
    except OSError:  # cwd not even reachable any more
        usable = False
    if not usable:
        os.chdir(home)
