"""`nablafuzz campaign --cross`: the cross-library oracle over the equivalence map.

A task is an equivalence class; a trial is generated once from the class's canonical spec and
run, with the same values, seed and directions, by every member library in its own worker
(`equivalence.member_trial`).  `crosscheck.cross_judge` compares them; a finding is stored
against the deviant library, under its own API, with `oracle: cross:<class>` in its
fingerprint, so it never merges with an in-library report.  Everything else (resuming, the
store, the observation log, fixed/flaky replays at the end) is the campaign loop's.
"""
from __future__ import annotations

import contextlib
import fnmatch
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

from ..core.config import Config
from ..core.errors import ConfigError, RefusedError
from ..core.fingerprint import key as fingerprint_key
from ..core.model import ApiSpec, BugReport, Execution, Finding, Trial
from ..libraries import record, staged_for
from ..oracle.compare import empty_derivative
from ..oracle.cross import run_class
from ..oracle.verdict import Judgement
from ..reports.replay import ReplayResult, replay_result
from ..reports.store import trial_key
from ..runtime.pool import Members, installed_runtimes
from ..runtime.runner import Runner
from ..specs.equivalence import (CROSS, EQUIVALENCE_FILE, Resolved, canonical_trial, equivalence_path, load_classes,
                                 resolve)
from ..specs.generate import generate
from ..specs.spec import SpecSet
from .minimize import minimise
from .stats import Observation, TrialResult, with_count


class CrossLibrary:
    """The oracle `campaign/loop.py` runs for `--cross`: its tasks are equivalence classes."""

    def __init__(self, campaign, specs: SpecSet):
        self.campaign, self.config = campaign, campaign.config
        config = self.config
        classes = load_classes(equivalence_path(config.spec_dir, config.equivalence_file))
        resolved = [r for r in resolve(classes, specs, config.libraries)
                    if any(fnmatch.fnmatchcase(r.cls.id, p) for p in config.apis)]
        self.classes = {r.canonical.name: r for r in resolved}
        self.specs = [r.canonical for r in resolved]

    def prepare(self) -> None:
        """Nothing to add: programs are in-library tasks."""

    def runner(self, runners: Dict, library: str, n: int):
        """One `Members` per worker thread: the runners of every member library."""
        return self.campaign.members(runners, CROSS, n)

    def run_trial(self, spec: ApiSpec, members: Members, index: int) -> TrialResult:
        start = time.monotonic()
        r = self.classes[spec.name]
        staged = [lib for lib in r.libraries if staged_for(self.config, lib)]
        trial = generate(spec, self.campaign.seed, index, self.config.max_tensor_size, self.config.max_rank,
                         regime_share=self.config.regime_share, pooled=bool(staged))
        first = bool(staged) and self.campaign.eager_first(spec, index, trial, staged)  # Note [eager first]
        j, executions = (None, {}) if first else run_class(r, trial, members, self.config)
        if first or (j.findings and staged):  # re-established eagerly, as in Note [staged findings]
            # a signature's first trial: eagerly only where the eager path differs (JAX's eager
            # path compiles each primitive of each scenario on its own: 13 compiles a trial)
            eager = [lib for lib in staged if record(lib).eager_differs] if first else staged
            with self._eagerly(members, eager):
                return self._judged(spec, r, members, index, trial, start, *run_class(r, trial, members, self.config))
        return self._judged(spec, r, members, index, trial, start, j, executions)

    @contextlib.contextmanager
    def _eagerly(self, members: Members, libraries: Sequence[str]) -> Iterator[None]:
        """The members' runners of these libraries (made now if need be) run eagerly inside, but
        for runtimes given up or not installed (run_class leaves those out too)."""
        with contextlib.ExitStack() as stack:
            for library in libraries:
                if library in self.campaign.shared.stopped:
                    continue
                try:
                    stack.enter_context(members[library].eager())
                except ConfigError:
                    continue
            yield

    def _judged(self, spec: ApiSpec, r: Resolved, members: Members, index: int, trial: Trial, start: float,
                j: Judgement, executions: Dict[str, Execution]) -> TrialResult:

        def again() -> Tuple[Finding, ...]:  # the deviants' workers fresh (Note [confirmation])
            for library in {f.fingerprint.library for f in j.findings}:
                members[library].restart()
            return run_class(r, trial, members, self.config)[0].findings
        confirmed, unconfirmed = self.campaign.confirm(j.findings, again)
        findings = tuple(self._cross_representative(f, r, members) for f in confirmed)
        deaths = ", ".join(f"{lib} {ex.death.kind}" for lib, ex in executions.items() if ex.death)
        empty = empty_derivative(trial)  # every differentiable input empty: nothing compared
        obs = Observation(spec.id, index, trial_key(trial), trial.dtype, j.valid and not empty, j.candidates,
                          with_count(j.dismissed, "not_confirmed", unconfirmed),
                          tuple(fingerprint_key(f.fingerprint) for f in confirmed), (), time.monotonic() - start,
                          deaths, "" if j.valid else "no member library could call it", j.conventions, j.votes,
                          empty, trial.regime)
        return TrialResult(obs, findings, members.versions(list(executions)))

    def _cross_representative(self, finding: Finding, r: Resolved, members: Members) -> Tuple[Finding, Trial]:
        """The smallest canonical trial that still gives the finding, as the deviant's call, and
        the finding with the evidence of that trial (a repro carries the others' values for it)."""
        if not self.campaign.to_minimise(finding):
            return finding, finding.trial
        fp = finding.fingerprint
        found: Dict[str, Finding] = {}

        def reproduces(t: Trial) -> bool:
            same = [f for f in run_class(r, t, members, self.config)[0].findings if f.fingerprint == fp]
            if same:
                found[trial_key(t)] = same[0]
            return bool(same)
        small = minimise(canonical_trial(r, finding.trial), reproduces, spec=r.canonical)
        again = found.get(trial_key(small))
        if again is None:  # nothing smaller reproduced
            return finding, finding.trial
        return replace(finding, candidate=again.candidate, filters=again.filters, message=again.message), again.trial

    def covers(self, report: BugReport, covered: Set[str]) -> bool:
        return bool(report.fingerprint.cross_class) and f"{CROSS}:{report.fingerprint.cross_class}" in covered

    def agreement(self, observations: List[Observation]) -> tuple:
        counts: Dict[Tuple[str, str, str], List[int]] = {}
        slot = {"agree": 0, "deviate": 1}
        for o in observations:
            for lib, quantity, vote in o.votes:
                row = counts.setdefault((o.api.partition(":")[2], lib, quantity), [0, 0, 0])
                row[slot.get(vote, 2)] += 1
        return tuple((c, lib, q, *n) for (c, lib, q), n in sorted(counts.items()))

    def replay(self, report: BugReport, runners: Dict) -> Optional[ReplayResult]:
        name = report.fingerprint.cross_class
        if name not in self.classes:
            return None
        members = self.runner(runners, CROSS, 0)
        with self._eagerly(members, self.classes[name].libraries):  # as the report was established (Note [staged findings])
            return replay_cross(report, self.classes[name], members, self.config)


def class_for(report: BugReport, resolved: List[Resolved]) -> Resolved:
    """The loaded class a cross report names, with the report's library among its members."""
    name = report.fingerprint.cross_class
    r = next((r for r in resolved if r.cls.id == name), None)
    if r is None or report.trial.library not in r.libraries or r.cls.member(report.trial.library).api != report.trial.api:
        raise RefusedError(f"report {report.key} names equivalence class {name!r} with member "
                           f"{report.trial.library}:{report.trial.api}, which the loaded equivalence map and specs "
                           "do not declare; refusing to run it. Fix: pass the map it was found with "
                           "(--equivalence FILE) and the specs of its libraries")
    return r


def replay_cross(report: BugReport, r: Resolved, members: Members, config: Config) -> ReplayResult:
    """Re-run a cross report's trial in every member and judge it again."""
    j, executions = run_class(r, canonical_trial(r, report.trial), members, config)
    return replay_result(report, j.findings, members.versions(list(executions)))


class CrossReplayer:
    """`nablafuzz replay` of cross-library reports: the map and the specs are loaded once, and
    one worker per member library serves every report."""

    def __init__(self, spec_dir: Path, spec_files, equivalence: Optional[str], python_path):
        self.spec_dir, self.spec_files, self.python_path = spec_dir, [Path(f) for f in spec_files], python_path
        self.equivalence = Path(equivalence) if equivalence else spec_dir / EQUIVALENCE_FILE
        self.members: Optional[Members] = None
        self.config = Config()
        self.loaded: List[Resolved] = []

    def _resolved(self) -> List[Resolved]:
        if not self.loaded:
            self.loaded = self._load()
        return self.loaded

    def _load(self) -> List[Resolved]:
        from ..specs.spec import load_specs
        classes = load_classes(self.equivalence)
        runtimes = installed_runtimes(sorted({m.library for c in classes for m in c.members}), self.python_path)
        if self.members is None:
            self.members = Members(lambda lib: Runner(runtimes[lib], Path(f".nablafuzz/replay-{lib}.log"), 60.0))
        specs = load_specs(self.spec_dir, list(runtimes), self.spec_files)
        return resolve(classes, specs, list(runtimes))

    def replay(self, report: BugReport) -> ReplayResult:
        r = class_for(report, self._resolved())
        return replay_cross(report, r, self.members, self.config)

    def close(self) -> None:
        if self.members is not None:
            self.members.close()
