"""Batched operands: an op that maps over leading batch axes, with one operand broadcast
against another.

Linear-algebra ops (solve, cholesky_solve, matmul-like products, lu_solve ...) take a batch of
matrices on each side and broadcast them: a (2, 3, 3) system against an unbatched (3, 2)
right-hand side, or the other way round.  The derivative of the broadcast operand must then
sum over the batch, and a rule that forgets to (or sums the wrong axis) is only reached when
the batch axes differ.  A spec whose API does this carries `batched: true`, learnt by probing
(`nablafuzz specs batching`, `api_specs/batching.yaml`): the batched call must equal the call
on each batch element.  A share of its trials then prepends a batch to its tensor arguments,
each one full, broadcast (size-1 axes) or unbatched, with at least one full.  Worker-safe.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from .errors import SpecError
from .model import ApiSpec, ArgKind, ArgSpec, InputValue, TensorRecord, Trial
from .structures import draw
from .tensors import FLOAT_DTYPES, to_array, to_record

BATCHING_FILE = "batching.yaml"
BATCH_SHARE = 0.3  # of a batched spec's trials
Shape = Tuple[int, ...]


# ---- drawing -----------------------------------------------------------------------------------

def batch_shape(rng: np.random.Generator) -> Shape:
    return tuple(int(d) for d in rng.integers(2, 4, int(rng.integers(1, 3))))


def roles(rng: np.random.Generator, batch: Shape, n: int) -> List[Shape]:
    """The batch prefix of each of `n` tensor arguments: the full batch, a broadcast one (some
    axes 1) or none; at least one full, and with two or more arguments at least one that is
    not (so the batch broadcasts, on either side)."""
    out: List[Shape] = []
    for _ in range(n):
        r = rng.random()
        out.append(batch if r < 0.45 else () if r < 0.75 else
                   tuple(d if rng.random() < 0.4 else 1 for d in batch))
    full = int(rng.integers(0, n))
    out[full] = batch
    if n > 1 and all(p == batch for p in out):
        other = (full + 1 + int(rng.integers(0, n - 1))) % n
        out[other] = () if rng.random() < 0.6 else (1,) * len(batch)
    return out


def _batched_value(rng: np.random.Generator, arg: ArgSpec, rec: TensorRecord, prefix: Shape) -> TensorRecord:
    """`rec` with `prefix` prepended: each batch element a fresh structured draw, or the value
    itself (the first element unchanged, the others nudged by 5 % for float tensors, so a seed
    sample stays valid); non-float tensors (indices, pivots) repeat exactly."""
    x = to_array(rec)
    shape = prefix + x.shape
    if not prefix or x.size == 0:
        return rec
    if rec.dtype in FLOAT_DTYPES and arg.structure:
        return to_record(draw(arg.structure, rng, shape, rec.dtype))
    tiled = np.broadcast_to(x, shape).copy()
    if rec.dtype in FLOAT_DTYPES:
        nudge = 1 + 0.05 * rng.standard_normal(shape)
        nudge.reshape((-1,) + x.shape)[0] = 1.0
        with np.errstate(over="ignore"):
            tiled = (tiled.astype(np.float64) * nudge).astype(rec.dtype)
    return to_record(tiled)


def batched(rng: np.random.Generator, args: Sequence[ArgSpec], inputs: Tuple[InputValue, ...]) -> Tuple[InputValue, ...]:
    """`inputs` with a batch prepended to their tensor arguments (`roles`)."""
    tensors = [k for k, i in enumerate(inputs) if i.kind is ArgKind.TENSOR and isinstance(i.value, TensorRecord)]
    if not tensors:
        return inputs
    prefixes = dict(zip(tensors, roles(rng, batch_shape(rng), len(tensors))))
    return tuple(replace(i, value=_batched_value(rng, a, i.value, prefixes[k])) if k in prefixes else i
                 for k, (a, i) in enumerate(zip(args, inputs)))


# ---- the batching file -------------------------------------------------------------------------

def load_batched(path: Path) -> Tuple[str, ...]:
    """The `library:api` ids of `api_specs/batching.yaml` (missing file: none)."""
    if not path.exists():
        return ()
    fix = "regenerate it with `nablafuzz specs batching`"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), "", "(file)", f"cannot be read as YAML: {exc}", fix) from None
    rows = data.get("batched") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, str) and ":" in r for r in rows):
        raise SpecError(str(path), "", "batched", "expected a list of `library:api` names", fix)
    return tuple(rows)


def with_batching(specs: Sequence[ApiSpec], ids: Sequence[str]) -> List[ApiSpec]:
    known = set(ids)
    return [replace(s, batched=True) if s.id in known else s for s in specs]


def write_batched(path: Path, ids: Sequence[str], origin: str) -> None:
    text = (f"# Generated by `{origin}`: APIs whose batched call equals the call on each batch element,\n"
            "# with operands broadcast against each other (their trials draw batched operands).\n"
            + yaml.safe_dump({"batched": sorted(set(ids))}, sort_keys=False, width=100))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# ---- probing -----------------------------------------------------------------------------------

def probe_candidate(spec: ApiSpec) -> bool:
    """An API worth probing: its first signature takes a matrix (or more), and every tensor
    argument has a fixed rank (a free rank already varies the leading axes; elementwise
    broadcasting is drawn anyway, `broadcast_with`)."""
    tensors = [a for a in spec.args if a.kind is ArgKind.TENSOR]
    return not spec.random and not spec.module and any(a.structure or len(a.dims) >= 2 for a in tensors) and all(
        a.structure or a.dims or a.same_shape_as for a in tensors)


def _element(inputs: Tuple[InputValue, ...], index: Tuple[int, ...]) -> Tuple[InputValue, ...]:
    """Batch element `index` of every batched input (broadcast axes index 0)."""
    out = []
    for i, p in inputs:
        if p:
            x = to_array(i.value)
            at = tuple(k if d > 1 else 0 for k, d in zip(index, p))
            i = replace(i, value=to_record(x[at]))
        out.append(i)
    return tuple(out)


def _outputs(run: Callable[..., object], trial: Trial, spec: ApiSpec) -> Optional[List[np.ndarray]]:
    ex = run(trial, spec, ("direct",))
    direct = ex.get("direct")
    if direct is None or direct.error is not None or not direct.outputs:
        return None
    return [np.asarray(o, dtype=np.float64) for o in direct.outputs]


def maps_over_batch(spec: ApiSpec, run: Callable[..., object], trial: Trial, rng: np.random.Generator,
                    tries: int = 3) -> bool:
    """Whether the API's batched call equals its call on each batch element, for `tries`
    random assignments of full, broadcast and missing batches (one of them all full)."""
    base = _outputs(run, trial, spec)
    if base is None:
        return False
    names = [i.name for i in trial.inputs]
    signature = next((sig for sig in (spec.args,) + spec.overloads if [a.name for a in sig] == names), spec.args)
    args = {a.name: a for a in signature}
    for t in range(tries):
        batch = (2,)
        tensors = [k for k, i in enumerate(trial.inputs) if i.kind is ArgKind.TENSOR]
        prefixes = [batch] * len(tensors) if t == 0 else roles(rng, batch, len(tensors))
        by_k = dict(zip(tensors, prefixes))
        inputs = tuple(replace(i, value=_batched_value(rng, args.get(i.name, ArgSpec(i.name, ArgKind.TENSOR)), i.value, by_k[k]))
                       if k in by_k else i
                       for k, i in enumerate(trial.inputs))
        got = _outputs(run, replace(trial, inputs=inputs), spec)
        if got is None or len(got) != len(base):
            return False
        tagged = tuple((i, by_k.get(k, ())) for k, i in enumerate(inputs))
        for index in np.ndindex(*batch):
            alone = _outputs(run, replace(trial, inputs=_element(tagged, index)), spec)
            if alone is None or len(alone) != len(got):
                return False
            for g, a in zip(got, alone):
                if g.shape != batch + a.shape or not np.allclose(g[index], a, rtol=1e-6, atol=1e-9, equal_nan=True):
                    return False
    return True


def probe_batching(specs: Sequence[ApiSpec], run_for: Callable[[str], Callable[..., object]],
                   make_trial: Callable[[ApiSpec], Trial],
                   verbose: Callable[[str], None] = lambda _: None) -> Dict[str, bool]:
    """`library:api` -> whether it maps over a batch, for every candidate spec."""
    out: Dict[str, bool] = {}
    for spec in specs:
        if not probe_candidate(spec):
            continue
        trial = make_trial(spec)
        if not any(isinstance(i.value, TensorRecord) and i.value.size for i in trial.inputs):
            continue
        out[spec.id] = maps_over_batch(spec, run_for(spec.library), trial, np.random.default_rng(0))
        verbose(f"{spec.id}: {'batched' if out[spec.id] else 'not batched'}")
    return out
