"""Choosing the granule user, and the zygote's command pipe that carries granule credentials."""

from __future__ import annotations

import os
import pwd
import tempfile
from pathlib import Path

import pytest

from granny.errors import ConfigError
from granny.worker.granule_user import GranuleUser, can_read, resolve
from granny.worker.zygote_pipe import encode_command, read_command


def test_same_and_the_workers_own_user_change_nothing() -> None:
    for spec in ("", "same", " same ", str(os.geteuid()), pwd.getpwuid(os.geteuid()).pw_name):
        assert resolve(spec) is None


def test_an_unknown_user_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no such user"):
        resolve("no-such-user-granny")


@pytest.mark.skipif(os.geteuid() == 0, reason="as root, any user may be chosen")
def test_another_user_needs_a_root_worker() -> None:
    with pytest.raises(ConfigError, match="needs a worker running as root"):
        resolve("nobody")
    assert resolve("auto") is None  # not root: granules keep the worker's user


def test_can_read_follows_every_directory_on_the_way() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as top:  # pytest's own tmp dirs sit in a 0700 one
        _check_can_read(Path(top))


def _check_can_read(tmp_path: Path) -> None:
    user = GranuleUser(uid=65534, gid=65534, name="nobody", home="/")
    tmp_path.chmod(0o755)
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    for d in (tmp_path / "a", inner):
        d.chmod(0o755)
    assert can_read(user, inner)
    (tmp_path / "a").chmod(0o700)  # as /root: what lies below is out of reach
    assert not can_read(user, inner)
    (tmp_path / "a").chmod(0o711)  # searchable, not listable: fine on the way
    assert can_read(user, inner)
    inner.chmod(0o711)  # but the directory itself must be listable
    assert not can_read(user, inner)


def test_zygote_commands_are_read_one_at_a_time_and_credentials_only_into_the_buffer() -> None:
    r, w = os.pipe()
    try:
        cred = os.urandom(32)
        os.write(w, encode_command({"spawn": "h-g1", "unix": ""}, cred) + encode_command({"kill": "h-g0"}))
        buf = bytearray(64)
        got = read_command(r, buf)
        assert got == ({"spawn": "h-g1", "unix": ""}, 32) and bytes(buf[:32]) == cred
        buf[:] = bytes(64)
        assert read_command(r, buf) == ({"kill": "h-g0"}, 0)  # the next one was not read ahead
        assert buf == bytes(64)
        os.close(w)
        w = -1
        assert read_command(r, buf) is None
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
