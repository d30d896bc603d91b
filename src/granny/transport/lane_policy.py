"""Whether a result takes the result lane (transport/lane.py): every rule in one place.

The planner, the granule and the client each decide a part, at different moments; these are those
decisions, so that a change to when the lane is used is one change here.

- The planner, dispatching (:func:`offered`): only a plain call -- a pickled function on one granule --
  may skip the planner. Scripts, worlds and gangs keep it in the path (ordered logs, abort handling),
  and so does a call with an idempotency key (its outcome is recorded under the key for later callers).
- The granule, when the call ends (:func:`hand_over`): the lane saves a hop when calls come one at a
  time. In a stream (this call waited behind another, or more wait behind it) the planner's batching
  serves throughput better; and a call that moved away has no result here.
- The granule, after handing over (:func:`copy_to_planner`): a result up to ``JOURNAL_COPY_MAX`` (config.py) goes to the
  planner too, for its journal; a larger one leaves only its record there (the client has it).
- The client, waiting (:func:`waiter_reads_lane`): reading the lane on the waiting thread pays off for
  short calls; behind a large argument it only makes the caller's next send compete with the granule
  finishing this one.
"""

from __future__ import annotations

from ..config import JOURNAL_COPY_MAX
from ..tunables import LANE_WAIT_MAX
from ..wire import Kind, Run, Submit


def offered(sub: Submit) -> bool:
    return sub.kind is Kind.PICKLED and sub.n == 1 and not (sub.mpi or sub.gang or sub.keyed)


def hand_over(run: Run, more_waiting: bool, moved: bool) -> bool:
    return bool(run.reply_to) and not run.prefetched and not more_waiting and not moved


def copy_to_planner(size: int) -> bool:
    """``size``: the result's body (Done.size)."""
    return size <= JOURNAL_COPY_MAX


def waiter_reads_lane(sub: Submit, size: int) -> bool:
    """``size``: the bytes of the call's body (its arguments)."""
    return offered(sub) and size <= LANE_WAIT_MAX
