"""The planner's store of rank states (real TCP and files): a checkpointing rank is let go before the
disk sync, a freezing one only after it; either way the stored state comes back intact."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from granny.migration import ship
from granny.planner.store import StateStore


@pytest.mark.parametrize(("slot", "acked_before_sync"), [("c1", True), ("g1", False)])
def test_a_checkpoint_is_acknowledged_before_the_sync_and_a_freeze_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slot: str, acked_before_sync: bool) -> None:
    state = np.arange(1 << 16, dtype=np.float64)
    data, buffers = ship.pack(sum, (state,), {"checkpoint": 1})
    server = ship.Server("127.0.0.1")
    served = threading.Event()
    sender = threading.Thread(target=lambda: served.set() if server.serve(data, buffers, timeout=30) else None)
    sender.start()
    real_fsync = os.fsync
    seen: list[bool] = []

    def fsync(fd: int) -> None:
        # Has the sender had its acknowledgement (and so gone on, or ended) by the time the file syncs?
        # A wait that times out means "not yet": the sender is still blocked on the acknowledgement.
        seen.append(served.wait(10.0 if acked_before_sync else 1.0))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    loop = asyncio.new_event_loop()
    store = StateStore(tmp_path, loop, bind="127.0.0.1")
    try:
        done: asyncio.Future[str] = loop.create_future()
        store.fetch("w", 0, slot, f"127.0.0.1:{server.port}", server.key, done.set_result)
        assert loop.run_until_complete(asyncio.wait_for(done, 60)) == ""
        sender.join(timeout=30)
        assert served.is_set() and seen == [acked_before_sync]
        port, key = store.grant("w", slot, 0)
        got, bufs = ship.pull(f"127.0.0.1:{port}", key)
        resume, args, extra = ship.unpack(got, bufs)
        assert resume is sum and extra == {"checkpoint": 1}
        assert np.array_equal(args[0], state)
    finally:
        store.close()
        loop.close()
