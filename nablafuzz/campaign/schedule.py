"""Which API a campaign's worker thread takes next (Note [breadth first])."""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Deque, List, Optional, Sequence

from ..specs.spec import ApiSpec


# Note [breadth first]
# A campaign runs every API's first trial before any API's second.  The first trial of a few
# APIs can cost a minute (XLA compiling a special function, a hang and its re-run); run depth
# first, with each API's share of the budget taken in turn, such APIs at the end of the list
# were never reached (37 of 555 in a 20-minute JAX campaign).  An API's further trials then go
# to the worker thread that ran its first, whose worker process holds that API's compiled
# kernels; a thread whose own APIs are done takes the last API of the busiest other thread.


@dataclass(frozen=True)
class Slot:
    """An API to run: its first trial only (`first`), or its further trials, with the seconds
    its first trial took (`spent`, counted against its --api-budget)."""

    spec: ApiSpec
    first: bool
    spent: float = 0.0


class Schedule:
    """The first-trial queue, shared by every thread, and one queue of further trials per
    thread; thread-safe."""

    def __init__(self, specs: Sequence[ApiSpec], threads: int, trials_per_api: int):
        self._lock = threading.Lock()
        self._first: Deque[ApiSpec] = collections.deque(specs)
        self._rest: List[Deque[Slot]] = [collections.deque() for _ in range(threads)]
        self._more = trials_per_api > 1
        # per thread: when the further trials it runs end (time.monotonic()), or None while it
        # runs a first trial (whose API then waits for its further trials)
        self._until: List[Optional[float]] = [0.0] * threads

    def next(self, thread: int) -> Optional[Slot]:
        with self._lock:
            self._until[thread] = 0.0
            if self._first:
                self._until[thread] = None if self._more else 0.0
                return Slot(self._first.popleft(), True)
            if self._rest[thread]:
                return self._rest[thread].popleft()
            busiest = max(self._rest, key=len)
            return busiest.pop() if busiest else None

    # Note [fair share]
    # An API's further trials get what is left of its --api-budget, or less when the campaign
    # is behind: its share of the time the threads have left, less what the other threads'
    # APIs in flight were given, among the APIs still waiting (a first trial in flight counts
    # as one), so that APIs whose trials overrun their budget (a minute of compilation, a hang
    # and its re-run) do not starve the APIs after them.
    def share(self, thread: int, deadline: float, most: float) -> float:
        """Seconds (at most `most`) for the further trials `thread` starts now, the campaign
        ending at `deadline`; recorded, so that the other threads' shares leave them out."""
        with self._lock:
            now = time.monotonic()
            others = [u for t, u in enumerate(self._until) if t != thread]
            held = sum(max(0.0, u - now) for u in others if u is not None)
            waiting = len(self._first) + sum(len(r) for r in self._rest) + sum(u is None for u in others)
            share = min(most, max(0.0, (deadline - now) * len(self._until) - held) / (waiting + 1))
            self._until[thread] = now + share
            return share

    def ran_first(self, thread: int, spec: ApiSpec, spent: float) -> None:
        """`thread` ran `spec`'s first trial (or found it done): its further trials are queued."""
        if self._more:
            with self._lock:
                self._rest[thread].append(Slot(spec, False, spent))
