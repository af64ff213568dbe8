"""numpy_ref ops that misbehave the way a hostile or unlucky function does (tests/test_hardening.py).

`HOSTILE_DIR` (an environment variable the tests set) is a folder for markers that make an
event happen once per test, whichever worker process runs the op.
"""
from __future__ import annotations

import os
import signal
import stat
import sys
from pathlib import Path

import numpy as np

from nablafuzz.core.tensors import encode_message
from nablafuzz.libraries.numpy_ref.adapter import OPS, NumpyRefAdapter, Op

_SIN = OPS["sin"]
POISONED = False  # global state the adapter knows nothing of
_VJP_CALLS = 0


def _once(name: str) -> bool:
    """True the first time any process asks for `name` in this test."""
    marker = Path(os.environ["HOSTILE_DIR"]) / name
    try:
        marker.touch(exist_ok=False)
        return True
    except FileExistsError:
        return False


def _poison(x):
    global POISONED
    POISONED = True
    return np.sin(x)


def _victim_vjp(xs, vs):
    return [np.cos(xs[0]) * vs[0] * (3.0 if POISONED else 1.0)]


# correct sin that leaves the process poisoned for the next op
poison_sin = Op(f=_poison, jvp=_SIN.jvp, vjp=_SIN.vjp, hess=_SIN.hess)
# correct sin, whose reverse mode is wrong in a poisoned process only
victim_sin = Op(f=np.sin, jvp=_SIN.jvp, vjp=_victim_vjp, hess=_SIN.hess)


def _killed_once(x):
    if _once("killed"):
        os.kill(os.getpid(), signal.SIGKILL)  # as `kill -9` from outside, once
    return np.sin(x)


# correct sin whose worker is killed from outside during its first call
killed_once_sin = Op(f=_killed_once, jvp=_SIN.jvp, vjp=_SIN.vjp, hess=_SIN.hess)


def _wrong_vjp_killed_in_rerun(xs, vs):
    global _VJP_CALLS
    _VJP_CALLS += 1
    if _VJP_CALLS == 2 and _once("killed-rerun"):
        os.kill(os.getpid(), signal.SIGKILL)  # during the nondeterminism filter's re-run, once
    return [2.0 * np.cos(xs[0]) * vs[0]]


# sin whose reverse mode is wrong (a real bug), and whose worker is killed while it is re-run
wrong_vjp_killed_in_rerun = Op(f=np.sin, jvp=_SIN.jvp, vjp=_wrong_vjp_killed_in_rerun, hess=_SIN.hess)


def _protocol_fds():
    for fd in range(3, 256):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                yield fd
        except OSError:
            continue


def _forge(x):
    frame = encode_message({"op": "done"})
    for fd in _protocol_fds():
        try:
            os.write(fd, frame)
        except OSError:
            pass
    return np.sin(x)


# sin that writes a forged "done" frame into every pipe it can reach (the protocol among them)
forger_sin = Op(f=_forge, jvp=_SIN.jvp, vjp=_SIN.vjp, hess=_SIN.hess)


def _hog(x):
    chunks = []
    for _ in range(32):  # up to 8 GiB, touched, in 256 MiB chunks
        chunks.append(np.ones(2 ** 25))
    return np.sin(x)


# sin that allocates memory in chunks until the worker's limit stops it (or 8 GiB)
hog_chunks_sin = Op(f=_hog, jvp=_SIN.jvp, vjp=_SIN.vjp, hess=_SIN.hess)


def _chatty(x):
    sys.stderr.write("NOISE " * 20000 + "\n")  # 120 kB per call
    sys.stderr.flush()
    return np.sin(x)


# sin that floods the worker log
flood_sin = Op(f=_chatty, jvp=_SIN.jvp, vjp=_SIN.vjp, hess=_SIN.hess)


def _break_runtime(x):
    if _once("runtime-broken"):
        os.kill(os.getpid(), signal.SIGKILL)  # and from now on the runtime cannot start
    return np.sin(x)


# sin that kills its worker once, after which the `flaky` runtime no longer starts
breaks_runtime_sin = Op(f=_break_runtime, jvp=_SIN.jvp, vjp=_SIN.vjp, hess=_SIN.hess)


class Flaky(NumpyRefAdapter):
    library = "flaky"


def make_flaky() -> Flaky:
    """An out-of-tree backend (NABLAFUZZ_ADAPTERS) that fails to start once its runtime is broken."""
    if (Path(os.environ["HOSTILE_DIR"]) / "runtime-broken").exists():
        raise RuntimeError("the flaky runtime is broken (as a library whose import now fails)")
    return Flaky()
