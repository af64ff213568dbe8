"""Campaign statistics: one `Observation` per trial, and the `Summary` computed from them all.

The summary is recomputed from the observation log, so a resumed campaign reports totals for
the whole campaign, not only for the last stretch.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, List, Sequence, Tuple

from ..core.model import ApiSpec, Finding, Predicted, Trial, decisive, mean_accuracy, not_learnt


@dataclass(frozen=True)
class Observation:
    api: str
    index: int
    trial: str
    dtype: str
    valid: bool
    candidates: int
    dismissed: Tuple[Tuple[str, int], ...]
    findings: Tuple[str, ...]
    new: Tuple[str, ...]
    seconds: float
    death: str = ""
    invalid: str = ""
    conventions: Tuple[str, ...] = ()
    votes: Tuple[Tuple[str, str, str], ...] = ()  # --cross: (library, quantity, vote) for this trial
    empty: bool = False  # not valid: every differentiable input (or differentiated output) was empty
    regime: str = ""  # the value regime the trial's inputs were drawn from (regimes.py; "" the domain's)
    structure: str = ""  # the structures of its structured inputs, comma-separated ("" none)
    # --validity-model (Note [validity candidates]): the candidate run, how it was picked
    # ("" no model, "model", "explore"), the model's probability that it is valid (-1: none)
    candidate: int = 0
    pick: str = ""
    guess: float = -1.0
    changes: Tuple[Tuple[str, str, str], ...] = ()  # --versions: (release pair, fingerprint key, new|fixed|changed)

    def with_new(self, new: Tuple[str, ...]) -> "Observation":
        return replace(self, new=new)

    def to_json(self) -> Dict[str, Any]:
        return {"api": self.api, "index": self.index, "trial": self.trial, "dtype": self.dtype,
                "valid": self.valid, "candidates": self.candidates, "dismissed": dict(self.dismissed),
                "findings": list(self.findings), "new": list(self.new), "seconds": round(self.seconds, 6),
                "death": self.death, "invalid": self.invalid, "empty": self.empty,
                **({"conventions": list(self.conventions)} if self.conventions else {}),
                **({"votes": [list(v) for v in self.votes]} if self.votes else {}),
                **({"regime": self.regime} if self.regime else {}),
                **({"structure": self.structure} if self.structure else {}),
                **({"candidate": self.candidate} if self.candidate else {}),
                **({"pick": self.pick, "guess": round(self.guess, 4)} if self.pick else {}),
                **({"changes": [list(c) for c in self.changes]} if self.changes else {})}

    @staticmethod
    def from_json(d: Dict[str, Any]) -> "Observation":
        return Observation(d["api"], int(d["index"]), d["trial"], d["dtype"], bool(d["valid"]),
                           int(d["candidates"]), tuple(sorted(d["dismissed"].items())), tuple(d["findings"]),
                           tuple(d["new"]), float(d["seconds"]), d.get("death", ""), d.get("invalid", ""),
                           tuple(d.get("conventions", ())), tuple(tuple(v) for v in d.get("votes", ())),
                           bool(d.get("empty", False)),  # logs written before `empty` existed: False
                           str(d.get("regime", "")), str(d.get("structure", "")),
                           int(d.get("candidate", 0)), str(d.get("pick", "")), float(d.get("guess", -1.0)),
                           tuple(tuple(c) for c in d.get("changes", ())))


@dataclass(frozen=True)
class Summary:
    campaign: str
    complete: bool
    apis: int
    apis_tried: int
    apis_valid: int
    trials: int
    valid: int
    candidates: int
    dismissed: Tuple[Tuple[str, int], ...]
    findings: int
    fingerprints: int
    new_reports: int
    deaths: Tuple[Tuple[str, int], ...]
    seconds: float
    trials_this_run: int = 0
    invalid_apis: Tuple[str, ...] = ()
    votes: Tuple[Tuple[str, int], ...] = ()  # --cross: "library vote" -> quantities judged so
    memory_limit_mb: int = 0  # each worker's address-space limit (0: none)
    stopped: Tuple[str, ...] = ()  # "library: why" for each runtime given up (its worker would not restart)
    empty: int = 0  # trials that differentiated only empty tensors (not valid)
    regimes: Tuple[Tuple[str, int, int, int], ...] = ()  # (regime, trials, valid, findings); "" the domain's
    structures: Tuple[Tuple[str, int, int, int], ...] = ()  # (structure, trials, valid, findings) of structured trials
    # --validity-model: ("library pick", trials, valid, findings), pick "unguided" / "model" / "explore"
    picks: Tuple[Tuple[str, int, int, int], ...] = ()
    predicted: Predicted = ()  # (API, trials predicted, right, valid rate of its model's picks)
    releases: Tuple[Tuple[str, int, int, int], ...] = ()  # --versions: (release pair, new, fixed, changed fingerprints)

    @property
    def trials_per_s(self) -> float:
        return self.trials_this_run / self.seconds if self.seconds else 0.0

    def to_json(self) -> Dict[str, Any]:
        return {"campaign": self.campaign, "complete": self.complete, "apis": self.apis,
                "apis_tried": self.apis_tried, "apis_with_valid_trial": self.apis_valid, "trials": self.trials,
                "valid_trials": self.valid, "valid_rate": round(self.valid / self.trials, 4) if self.trials else 0,
                "empty_trials": self.empty,
                "candidates": self.candidates, "dismissed": dict(self.dismissed), "findings": self.findings,
                "distinct_fingerprints": self.fingerprints, "new_reports": self.new_reports,
                "deaths": dict(self.deaths), "seconds_this_run": round(self.seconds, 2),
                "trials_per_s_this_run": round(self.trials_per_s, 2), "apis_without_valid_trial": list(self.invalid_apis),
                "memory_limit_mb": self.memory_limit_mb, "runtimes_given_up": list(self.stopped),
                "regimes": {r or "domain": {"trials": t, "valid": v, "findings": f} for r, t, v, f in self.regimes},
                "structures": {s: {"trials": t, "valid": v, "findings": f} for s, t, v, f in self.structures},
                **({"cross_votes": dict(self.votes)} if self.votes else {}),
                **({"validity_model": self._validity()} if self.picks else {}),
                **({"releases": {p: {"new": n, "fixed": f, "changed": c} for p, n, f, c in self.releases}}
                   if self.releases else {})}

    def _validity(self) -> Dict[str, Any]:
        """Valid rates by how trials were picked, and the held-out accuracy of each API's model:
        every trial it predicted, before the trial ran (Note [validity candidates])."""
        apis = {a: {"predicted": n, "accuracy": round(right / n, 4), "picked_valid_rate": round(rate, 4)}
                for a, n, right, rate in self.predicted}
        mean = mean_accuracy(self.predicted)
        return {"picks": {k: {"trials": t, "valid": v, "valid_rate": round(v / t, 4) if t else 0, "findings": f}
                          for k, t, v, f in self.picks},
                "mean_accuracy": None if mean is None else round(mean, 4),
                "not_learnt": sorted(a for a, _, _ in not_learnt(self.predicted)),
                "apis": apis}

    def lines(self) -> List[str]:
        d = self.to_json()
        dismissed = ", ".join(f"{k} {v}" for k, v in self.dismissed) or "none"
        return [
            f"campaign {self.campaign} ({'complete' if self.complete else 'incomplete: re-run to resume'})",
            f"APIs: {self.apis} selected, {self.apis_tried} tried, {self.apis_valid} with a valid trial",
            f"trials: {self.trials} ({self.valid} valid, rate {d['valid_rate']:.1%}); "
            f"{self.trials_per_s:.1f} trials/s this run",
            f"empty trials (every differentiable input or output empty, nothing compared): {self.empty}",
            f"candidates: {self.candidates}; dismissed by filter: {dismissed}",
            f"findings: {self.findings} in {self.fingerprints} distinct fingerprints; new reports: {self.new_reports}",
            f"memory limit per worker: {f'{self.memory_limit_mb} MiB' if self.memory_limit_mb else 'none'}",
            "value regimes (trials / valid / findings): "
            + (", ".join(f"{r or 'domain'} {t}/{v}/{f}" for r, t, v, f in self.regimes) or "none"),
            "structured inputs (trials / valid / findings): "
            + (", ".join(f"{s} {t}/{v}/{f}" for s, t, v, f in self.structures) or "none"),
        ] + ([f"cross-library votes (library vote: quantities): {', '.join(f'{k}: {v}' for k, v in self.votes)}"]
             if self.votes else []) \
            + [f"release changes {p} (distinct fingerprints): new {n}, fixed {f}, changed {c}" for p, n, f, c in self.releases] \
            + [f"runtime given up, its remaining APIs skipped: {s}" for s in self.stopped] \
            + self._validity_lines()

    def _validity_lines(self) -> List[str]:
        if not self.picks:
            return []
        v = self._validity()
        rates = ", ".join(f"{k} {d['valid']}/{d['trials']} ({d['valid_rate']:.1%})" for k, d in v["picks"].items())
        accuracy = "none yet" if v["mean_accuracy"] is None else f"{v['mean_accuracy']:.1%} over {len(v['apis'])} APIs"
        return [f"validity model: valid / trials by pick: {rates}; held-out accuracy {accuracy}",
                f"validity model: constraints not learnt (a probe hint may help): {', '.join(v['not_learnt']) or 'none'}"]


def label(obs: Observation) -> bool:
    """Whether a trial's inputs were ones to steer towards (Note [validity model] in
    validity.py): valid, and its worker did not die.

    Not its empty trials too, though forward modes crash on empty tensors the call accepts: so
    labelled, the models picked empty candidates (certain to be kept, comparing nothing) and
    the low-validity TensorFlow bench fell from 70.9 % to 63.8 % valid, held-out accuracy from
    94 % to 77 % (bench/results/validity-tensorflow-low-empty-label.txt).  Not a trial whose
    worker died (a crash, a timeout): it is reported from its first trials (confirmed once),
    and each later one costs a restart, 1.85 s for OneFlow, the time of 40 of its trials; so
    the model steers away from the inputs that kill the worker, and exploration still draws
    them now and then (Note [validity where needed])."""
    return obs.valid and not obs.death


def merge_counts(pairs) -> Tuple[Tuple[str, int], ...]:
    """(name, count) pairs summed by name, sorted."""
    out: Dict[str, int] = {}
    for k, n in pairs:
        out[k] = out.get(k, 0) + n
    return tuple(sorted(out.items()))


def _per(obs: Sequence[Observation], key) -> Tuple[Tuple[str, int, int, int], ...]:
    """(key, trials, valid trials, findings) for each value of `key` among the observations;
    a comma-separated key counts under each of its parts (a trial with two structures)."""
    def has(o: Observation, k: str) -> bool:
        return k in key(o).split(",") if k else key(o) == k
    keys = sorted({k for o in obs for k in (key(o).split(",") if key(o) else [""])})
    return tuple((k, sum(has(o, k) for o in obs), sum(o.valid for o in obs if has(o, k)),
                  sum(len(o.findings) for o in obs if has(o, k))) for k in keys)


def summarise(campaign: str, specs: Sequence[ApiSpec], obs: Sequence[Observation], fresh: int,
              seconds: float, complete: bool) -> Summary:
    """Totals over all observations; `fresh` of them were made in this run, in `seconds`."""
    tried = {o.api for o in obs}
    valid_apis = {o.api for o in obs if o.valid}
    why: Dict[str, str] = {}
    for o in obs:
        if o.api not in valid_apis and (o.invalid or o.empty):
            why.setdefault(o.api, o.invalid or "only empty derivatives (zero-sized inputs or outputs) were compared")
    return Summary(
        campaign=campaign, complete=complete, apis=len(specs), apis_tried=len(tried), apis_valid=len(valid_apis),
        trials=len(obs), valid=sum(o.valid for o in obs), candidates=sum(o.candidates for o in obs),
        dismissed=merge_counts(p for o in obs for p in o.dismissed), findings=sum(len(o.findings) for o in obs),
        fingerprints=len({k for o in obs for k in o.findings}), new_reports=sum(len(o.new) for o in obs),
        deaths=merge_counts((o.death, 1) for o in obs if o.death), seconds=seconds, trials_this_run=fresh,
        invalid_apis=tuple(f"{api}: {why.get(api, 'no trial ran to completion')}" for api in sorted(tried - valid_apis)),
        votes=merge_counts((f"{lib} {vote}", 1) for o in obs for lib, _, vote in o.votes),
        empty=sum(o.empty for o in obs),
        regimes=_per(obs, lambda o: o.regime),
        structures=tuple(row for row in _per(obs, lambda o: o.structure) if row[0]),
        picks=picks(obs),
        predicted=predicted(obs),
        releases=releases(obs),
    )


def release_classes(obs: Sequence[Observation]) -> Dict[str, Tuple[str, str]]:
    """Report key -> (release pair, class): the most decisive class its trials had (Note
    [release change])."""
    seen: Dict[str, Tuple[str, List[str]]] = {}
    for o in obs:
        for pair, key, kind in o.changes:
            seen.setdefault(key, (pair, []))[1].append(kind)
    return {key: (pair, decisive(kinds)) for key, (pair, kinds) in seen.items()}


def releases(obs: Sequence[Observation]) -> Tuple[Tuple[str, int, int, int], ...]:
    """(release pair, new, fixed, changed): distinct fingerprints of each class."""
    by_pair: Dict[str, List[str]] = {}
    for pair, kind in release_classes(obs).values():
        by_pair.setdefault(pair, []).append(kind)
    return tuple((pair, *(kinds.count(want) for want in ("new", "fixed", "changed")))
                 for pair, kinds in sorted(by_pair.items()))


def picks(obs: Sequence[Observation]) -> Tuple[Tuple[str, int, int, int], ...]:
    """("library pick", trials, valid, findings) of a --validity-model campaign (none otherwise)."""
    return _per(obs, lambda o: f"{o.api.split(':')[0]} {o.pick or 'unguided'}") if any(o.pick for o in obs) else ()


def predicted(obs: Sequence[Observation]) -> Predicted:
    """(API, trials its model predicted, predicted right, valid rate of the trials it picked)."""
    by_api: Dict[str, List[Observation]] = {}
    for o in obs:
        if o.pick and o.guess >= 0:  # a model predicted it (a cold-start draw has none)
            by_api.setdefault(o.api, []).append(o)
    out = []
    for api, os_ in sorted(by_api.items()):
        right = sum((o.guess >= 0.5) == label(o) for o in os_)
        picked = [o for o in os_ if o.pick == "model"]
        out.append((api, len(os_), right, sum(o.valid for o in picked) / len(picked) if picked else 0.0))
    return tuple(out)


@dataclass(frozen=True)
class TrialResult:
    """What a worker thread hands the main thread for one trial: its observation, its findings
    with their representative trials, and the library versions that ran it."""

    observation: Observation
    findings: Tuple[Tuple[Finding, Trial], ...]
    versions: Tuple[str, ...]


def with_count(counts: Tuple[Tuple[str, int], ...], name: str, n: int) -> Tuple[Tuple[str, int], ...]:
    """(name, count) pairs with `n` more of `name` (unchanged when n is 0)."""
    return merge_counts(counts + ((name, n),)) if n else counts
