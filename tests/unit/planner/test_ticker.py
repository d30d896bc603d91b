"""The planner's tick loop wakes early when an event brings a deadline closer (planner/ticker.py)."""

from __future__ import annotations

import asyncio

from granny.planner.ticker import Ticker


def test_a_sooner_deadline_wakes_the_sleeping_loop_and_a_later_one_does_not() -> None:
    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        ticker = Ticker(loop)
        sleeping = loop.create_task(ticker.sleep(3600.0))
        await asyncio.sleep(0)  # it sleeps now
        ticker.due(loop.time() + 7200.0)  # later than planned: no reason to wake
        later_woke = sleeping.done()
        ticker.due(loop.time())  # due now
        await asyncio.wait_for(sleeping, 60)  # (an hour without the wake-up)
        return later_woke, ticker.at == float("inf")

    later_woke, idle = asyncio.run(main())
    assert not later_woke and idle


def test_a_deadline_named_while_it_ticks_is_left_to_the_tick_and_none_is_ignored() -> None:
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        ticker = Ticker(loop)
        ticker.due(None)
        ticker.due(loop.time() + 1.0)  # between sleeps: the tick that runs plans from the state itself
        await asyncio.wait_for(ticker.sleep(0.0), 60)
        return True

    assert asyncio.run(main())
