"""The client's one Submit builder: calls, keyed calls, worlds and gangs come out of the same place."""

from __future__ import annotations

import pytest

import granny
from granny import serde
from granny.pending import Pending
from granny.transport import lane_policy
from granny.wire import Kind


def work(x: int) -> int:
    return x


@pytest.fixture
def sent(client: granny.Client, monkeypatch: pytest.MonkeyPatch) -> list[Pending]:
    out: list[Pending] = []
    monkeypatch.setattr(client, "_send", out.append)  # built, not sent: nothing runs
    return out


def test_every_pickled_submit_is_built_alike(client: granny.Client, sent: list[Pending]) -> None:
    futures = [client.submit(work, 1), client.options(key="k1", memory_limit="1MiB").submit(work, 2),
               client.submit_mpi(work, 2, (3,)), client.submit_gang(work, 3, (4,), lease=True)]
    subs = [p.submit for p in sent]
    assert [(s.n, s.mpi, s.gang, s.lease, s.keyed) for s in subs] == [
        (1, False, False, False, False), (1, False, False, False, True), (2, True, False, False, False),
        (3, False, True, True, False)]
    for sub, pending, fut in zip(subs, sent, futures, strict=True):
        assert sub.kind is Kind.PICKLED and sub.name == "work" and sub.app_id == client.app_id
        assert sub.fn_key and len(serde.unframe(b"".join(bytes(s) for s in pending.segments))) >= 2  # fn, args
        assert pending.future is fut and fut.lane_wait == lane_policy.waiter_reads_lane(sub, serde.body_size(pending.segments))
    assert subs[1].memory_limit == 1 << 20 and subs[0].memory_limit == client.memory_limit
    assert [f.lane_wait for f in futures] == [True, False, False, False]  # only the plain call's result takes the lane
    assert len({s.req_id for s in subs}) == 4
