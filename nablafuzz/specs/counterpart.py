"""numpy's function of the same name, as a judge of which inputs are valid.

torch.flipud, jax.numpy.fft.irfft, tf.experimental.numpy.roll, oneflow.cumsum: where a spec's API
is numpy's function under a library prefix, numpy validates what the library's fast path may
skip (flipud of a 0-d array, an inverse FFT of implied length 0).  The counterpart is called in
this process on the trial's values, positionally (keyword inputs by a name numpy's signature
has), and it judges only for the APIs where it accepts a regular trial of the spec: an argument
order or a name numpy does not share makes it reject everything, and then it says nothing.
Only numpy's own functions of the spec's own name are called (never input/output functions):
nothing is imported or executed that a loaded spec does not name.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ..core.model import ApiSpec, ArgKind, Trial, records
from ..core.tensors import non_empty, to_array
from ..libraries import record
from .generate import generate

NAMESPACES = ("", "fft.", "linalg.")
NOT_CALLED = {"save", "savez", "savez_compressed", "savetxt", "load", "loadtxt", "genfromtxt", "fromfile", "tofile",
              "memmap", "fromregex", "frombuffer", "info", "source", "who", "lookfor", "show_config", "set_printoptions",
              "seterr", "setbufsize", "seterrcall", "test"}
_REGULAR: Dict[str, Optional[Callable[..., Any]]] = {}  # spec id -> its counterpart, if it judges


def function(library: str, api: str) -> Optional[Callable[..., Any]]:
    """numpy's function of the API's name (`torch.fft.rfft` -> numpy.fft.rfft), or None."""
    # where the library keeps numpy's functions (its record's prefixes, longest first)
    rest = next((api[len(p):] for p in record(library).numpy_prefixes if api.startswith(p)), None)
    if rest is None or ":" in rest or rest.count(".") > 1:
        return None
    space, _, name = rest.rpartition(".")
    if (space + "." if space else "") not in NAMESPACES or name in NOT_CALLED or name.startswith("_"):
        return None
    fn = getattr(getattr(np, space) if space else np, name, None)
    home = getattr(fn, "__module__", None) or ""
    return fn if isinstance(fn, np.ufunc) or (callable(fn) and home.startswith("numpy")) else None


def _value(value: Any) -> Any:
    rs = records(value)
    if not rs:
        return list(value) if isinstance(value, tuple) else value
    return to_array(rs[0]) if len(rs) == 1 and not isinstance(value, tuple) else [to_array(r) for r in rs]


def rejection(fn: Callable[..., Any], trial: Trial) -> str:
    """Why numpy's `fn` rejects the trial's inputs ("" if it accepts them)."""
    args: List[Any] = []
    kwargs: Dict[str, Any] = {}
    try:
        names = set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # a ufunc or builtin without a signature: positional only
        names = set()
    for i in trial.inputs:
        if i.keyword:
            if i.name not in names:
                return f"numpy's {fn.__name__} has no argument {i.name!r}"
            kwargs[i.name] = _value(i.value)
        elif kwargs:
            return "a positional input after a keyword one"
        else:
            args.append(_value(i.value))
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any error is numpy's rejection, reported with its message
        return f"{type(exc).__name__}: {exc}"[:200]
    return ""


REGULAR_TRIALS = 6


def judge_of(spec: ApiSpec) -> Optional[Callable[..., Any]]:
    """The spec's counterpart if it accepts every one of the spec's first regular trials (plain
    and non-empty), else None: a counterpart that differs in argument order or in meaning
    (torch.split's chunk size against numpy.split's number of sections, torch.squeeze of an
    axis longer than 1) rejects some of them, and then has no say."""
    if spec.id not in _REGULAR:
        fn = None if spec.module or spec.random else function(spec.library, spec.name)
        if fn is not None:
            trials = [t for t in (generate(spec, 0, k, 12, 3, dtype="float64") for k in range(2 * REGULAR_TRIALS))
                      if _plain(t) and non_empty(t)][:REGULAR_TRIALS]
            if len(trials) < REGULAR_TRIALS // 2 or any(rejection(fn, t) for t in trials):
                fn = None
        _REGULAR[spec.id] = fn
    return _REGULAR[spec.id]


def _plain(trial: Trial) -> bool:
    """A trial numpy sees as the library does: no symmetrisation inside the call, no batch the
    library's wrapper adds, every input a tensor or a plain value."""
    return not trial.projections and not trial.module and not trial.layout and all(
        i.kind is not ArgKind.TENSOR or records(i.value) for i in trial.inputs)


def rejects(spec: ApiSpec, trial: Trial) -> str:
    """Why numpy's counterpart rejects this trial of the spec ("" where it accepts it, or has no
    say: no counterpart, or one that rejects the spec's regular trials too)."""
    fn = judge_of(spec)
    if fn is None or not _plain(trial):
        return ""
    why = rejection(fn, trial)
    return f"numpy.{_qualified(fn)} rejects this input ({why})" if why else ""


def _qualified(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", "") or ""
    space = next((s for s in ("fft", "linalg") if f".{s}" in module), "")
    return f"{space}.{fn.__name__}" if space else fn.__name__
