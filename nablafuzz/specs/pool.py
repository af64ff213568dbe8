"""Signature pools: which dtype, shapes and scalar arguments a pooled trial draws.

Note [signature pools]
A compiling library (JAX, TensorFlow's tf.function) pays a compilation for every new input
signature (dtypes, shapes, Python values) of every scenario it compiles; a trial with fresh
shapes each time compiles a dozen programs to compare a few numbers.  A pooled trial draws its
values from its own seed as ever, but its signature from a small per-API pool:

  * three edge signatures, fixed for the campaign: an empty one (zero-sized dimensions, as in
    Note [empty trials]), the smallest (every free size 1 and the lowest rank: 0-d where the
    spec allows) and the largest (the highest rank, sizes 4, capped at the size limit);
  * up to ROTATING drawn signatures: one in the API's first ROUND trials (so an API whose
    compilation takes seconds still gets more than a trial or two of its budget), one more in
    the next ROUND, then one of them replaced every ROUND trials, so a campaign still sees a new
    signature every ROUND trials while most trials hit warm caches.

Which one a trial takes is drawn from its own seed (EDGES gives the edges' shares), so a trial
regenerates exactly from (spec, campaign seed, index), pooled or not.

A pool's first generation (the edges, and each slot's first draw) is drawn from the campaign seed
rounded down to a multiple of KEEP, later generations from the campaign seed itself.  A campaign
that has completed starts its next round with the next seed (a nightly campaign: the next
night), and JAX keeps every compilation in its persistent cache (Note [persistent compilation
cache], runtime/registry.py): so three nights in four, each API's first trials (on this machine
kind half of a 20-minute JAX campaign's worker time) load their programs instead of compiling
them, and their values, regimes and later signatures are new as ever.  Worker-safe.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

EMPTY, SMALLEST, LARGEST = "empty", "smallest", "largest"
EDGES = ((EMPTY, 0.03), (SMALLEST, 0.07), (LARGEST, 0.07))
ROTATING = 2
ROUND = 25
KEEP = 4  # consecutive campaign seeds whose pools share their first generation


@dataclass(frozen=True)
class Signature:
    seed: int  # the seed of the signature's draws
    edge: str  # "" for a drawn signature, else EMPTY, SMALLEST or LARGEST


def _seed(campaign_seed: int, spec_id: str, slot: str, generation: int) -> int:
    h = hashlib.sha256(f"{campaign_seed}/{spec_id}/signature/{slot}/{generation}".encode()).digest()
    return int.from_bytes(h[:8], "big") >> 1


def signature(campaign_seed: int, spec_id: str, index: int, trial_seed: int, candidate: int = 0) -> Signature:
    """The signature trial `index` of the API takes (its seed is `trial_seed`); a guided
    campaign's candidate `candidate` > 0 draws its rotating signatures from a pool of its own
    (Note [validity candidates] in campaign/validity.py), the edges are shared."""
    u, v = np.random.default_rng([trial_seed, 3]).random(2)
    kept = campaign_seed - campaign_seed % KEEP  # the first generation's seed
    e = _edge(u)
    if e:
        return Signature(_seed(kept, spec_id, e, 0), e)
    rounds = index // ROUND
    slot = int(v * min(ROTATING, rounds + 1))
    generation = (rounds - slot) // ROTATING  # slot k is drawn at round k, redrawn at k + ROTATING, ...
    name = f"{slot}/{candidate}" if candidate else str(slot)
    return Signature(_seed(kept if generation == 0 else campaign_seed, spec_id, name, generation), "")


def edge(trial_seed: int) -> str:
    """The edge signature (EMPTY, SMALLEST, LARGEST) a pooled trial whose seed is `trial_seed`
    takes, any candidate, or "" for a drawn one."""
    return _edge(np.random.default_rng([trial_seed, 3]).random())


def _edge(u: float) -> str:
    for name, share in EDGES:
        if u < share:
            return name
        u -= share
    return ""
