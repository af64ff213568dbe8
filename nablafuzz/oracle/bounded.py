"""The 50-digit reference computed in helper processes, each call given a time limit.

Note [bounded reference]
mpmath's high-precision differentiation can take minutes where a function's own algorithm is
slow at the working precision: the derivatives of besselk(1, x) at x = 705.34 take 6 ms at 50
digits and over 100 s at 150, a level the reference rises to (Note [exact reference] in
compare.py; `reference.local`).  Judging runs in the orchestrator, whose worker threads share one
interpreter, and a campaign's budget bounds the calls into workers, not judging: in a 20-minute
TensorFlow campaign one such reference took 420 s, past the budget, while the other thread waited
on the interpreter lock.  So the reference is computed in helper processes (spawned on first
use, one per campaign worker thread that asks at once) and each call is given
REFERENCE_SECONDS, more than the slowest reference in a tail of MAX_POINTS elements takes (a
tenth of a second each); past that the helpers are killed (fresh ones serve the next call) and
the trial has no exact reference: it is judged by finite differences, as where a point has none.
"""
from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.pool
import threading
from typing import Any, Callable, Optional

REFERENCE_SECONDS = 40.0
HELPERS = 2  # a campaign's default worker threads

_lock = threading.Lock()
_pool: Optional[multiprocessing.pool.Pool] = None


def _helpers() -> multiprocessing.pool.Pool:
    global _pool
    with _lock:
        if _pool is None:  # spawned: forking a process with threads can copy a held lock
            _pool = multiprocessing.get_context("spawn").Pool(HELPERS)
        return _pool


def _discard(pool: multiprocessing.pool.Pool) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.terminate()


@atexit.register
def _close() -> None:
    if _pool is not None:
        _discard(_pool)


def bounded(fn: Callable[..., Any], *args: Any, seconds: float = REFERENCE_SECONDS) -> Optional[Any]:
    """`fn(*args)` computed in a helper process, or None if it took more than `seconds` (the
    helpers are then killed, Note [bounded reference]); `fn` must be a module-level function."""
    pool = _helpers()
    try:
        return pool.apply_async(fn, args).get(seconds)
    except multiprocessing.TimeoutError:
        _discard(pool)
        return None
