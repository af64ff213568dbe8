"""`nablafuzz campaign --cross`: the cross-library oracle over the equivalence map.

A task is an equivalence class; a trial is generated once from the class's canonical spec and
run, with the same values, seed and directions, by every member library in its own worker
(`equivalence.member_trial`).  `crosscheck.cross_judge` compares them; a finding is stored
against the deviant library, under its own API, with `oracle: cross:<class>` in its
fingerprint, so it never merges with an in-library report.  Everything else (resuming, the
store, the observation log, fixed/flaky replays at the end) is the in-library campaign's.
"""
from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

from ..core.errors import ConfigError, RefusedError
from ..core.fingerprint import key as fingerprint_key
from ..core.model import ApiSpec, BugReport, Finding, ScenarioResult, Trial
from ..core.quantities import COMPILED, is_reference
from ..oracle.compare import empty_derivative
from ..oracle.cross import CrossJudgement, cross_judge, flush_subnormal
from ..reports.replay import ReplayResult, replay_result, versions_of
from ..reports.store import trial_key
from ..runtime.process import Runtime, RuntimeUnavailable
from ..runtime.registry import resolve_runtime
from ..runtime.runner import Execution, Runner
from ..specs.equivalence import CROSS, EQUIVALENCE_FILE, Resolved, canonical_trial, load_classes, member_trial, resolve
from ..specs.generate import generate
from ..specs.spec import SpecSet
from .config import Config
from .loop import Campaign, TrialResult, equivalence_path, with_count
from .minimize import minimise
from .stats import Observation


@dataclass
class Members:
    """The runners of one worker thread, one per member library (started on first use)."""

    start: Callable[[str], Runner]
    runners: Dict[str, Runner] = field(default_factory=dict)
    stopped: Dict[str, str] = field(default_factory=dict)  # library -> why its runtime was given up

    def __getitem__(self, library: str) -> Runner:
        if library not in self.runners:
            self.runners[library] = self.start(library)
        return self.runners[library]

    def close(self) -> None:
        for r in self.runners.values():
            r.close()


def run_class(r: Resolved, trial: Trial, members: Members, config: Config) -> Tuple[CrossJudgement, Dict[str, Execution]]:
    """Run the canonical `trial` in every member whose spec takes its dtype, then judge.
    Finite-difference references run only where libraries disagree (Note [lazy references])."""
    trial = flush_subnormal(trial)
    executions = {}
    scenarios = cross_scenarios(config)
    ad = tuple(s for s in scenarios if not is_reference(s))
    for library in r.libraries:
        spec = r.spec(library)
        if trial.dtype in spec.dtypes and library not in members.stopped:
            try:
                executions[library] = members[library].run(member_trial(r, library, trial), spec, ad)
            except RuntimeUnavailable as exc:  # the others go on without it
                members.stopped.setdefault(library, str(exc))
    runners = {lib: members[lib] for lib in executions}
    refs: Dict[Tuple[str, str], Optional[ScenarioResult]] = {}

    def refer(library: str, scenario: str) -> Optional[ScenarioResult]:
        if scenario not in scenarios:
            return None
        if (library, scenario) not in refs:
            ex = runners[library].run(member_trial(r, library, trial), r.spec(library), (scenario,))
            refs[(library, scenario)] = ex.get(scenario)
        return refs[(library, scenario)]
    return cross_judge(r, executions, runners, refer), executions


# Note [lazy references]
# Finite differences cost a dozen calls per quantity (Richardson at three steps), and second-
# order references a dozen first-order passes: most of a trial's time, spent to settle
# disagreements that most trials do not have.  Every library runs the AD scenarios; only a
# quantity where one library deviates asks the others for its reference, in their workers.


def cross_scenarios(config: Config) -> Tuple[str, ...]:
    """What every member runs: the configured scenarios, never the compiled one (the others'
    eager results are no reference for one library's compiler)."""
    return tuple(s for s in config.scenarios if s != COMPILED)


def _versions(members: Members, libraries) -> Tuple[str, ...]:
    return tuple(sorted(v for lib in libraries for v in versions_of(members[lib])))


class CrossCampaign(Campaign):
    def __init__(self, config: Config, specs: SpecSet, progress=None):
        super().__init__(config, specs, progress)
        classes = load_classes(equivalence_path(config))
        resolved = [r for r in resolve(classes, specs, config.libraries)
                    if any(fnmatch.fnmatchcase(r.cls.id, p) for p in config.apis)]
        self.classes = {r.canonical.name: r for r in resolved}
        self.specs = [r.canonical for r in resolved]

    def _runner(self, runners: Dict, library: str, n: int):
        if library != CROSS:
            return super()._runner(runners, library, n)
        if CROSS not in runners:
            own: Dict[str, Runner] = {}
            runners[CROSS] = Members(lambda lib: super(CrossCampaign, self)._runner(own, lib, n), own,
                                     self.shared.stopped)
        return runners[CROSS]

    def run_trial(self, spec: ApiSpec, members: Members, index: int) -> TrialResult:
        start = time.monotonic()
        r = self.classes[spec.name]
        trial = generate(spec, self.seed, index, self.config.max_tensor_size, self.config.max_rank,
                         regime_share=self.config.regime_share)
        j, executions = run_class(r, trial, members, self.config)

        def again() -> Tuple[Finding, ...]:  # the deviants' workers fresh (Note [confirmation])
            for library in {f.fingerprint.library for f in j.findings}:
                members[library].restart()
            return run_class(r, trial, members, self.config)[0].findings
        confirmed, unconfirmed = self.confirm(j.findings, again)
        findings = tuple(self._cross_representative(f, r, members) for f in confirmed)
        deaths = ", ".join(f"{lib} {ex.death.kind}" for lib, ex in executions.items() if ex.death)
        empty = empty_derivative(trial)  # every differentiable input empty: nothing compared
        obs = Observation(spec.id, index, trial_key(trial), trial.dtype, j.valid and not empty, j.candidates,
                          with_count(j.dismissed, "not_confirmed", unconfirmed),
                          tuple(fingerprint_key(f.fingerprint) for f in confirmed), (), time.monotonic() - start,
                          deaths, "" if j.valid else "no member library could call it", j.conventions, j.votes,
                          empty, trial.regime)
        return TrialResult(obs, findings, _versions(members, executions))

    def _cross_representative(self, finding: Finding, r: Resolved, members: Members) -> Tuple[Finding, Trial]:
        """The smallest canonical trial that still gives the finding, as the deviant's call, and
        the finding with the evidence of that trial (a repro carries the others' values for it)."""
        if not self._to_minimise(finding):
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

    def _covers(self, report: BugReport, covered: Set[str]) -> bool:
        return report.fingerprint.oracle.startswith("cross:") and \
            f"{CROSS}:{report.fingerprint.oracle.partition(':')[2]}" in covered

    def _agreement(self, observations: List[Observation]) -> tuple:
        counts: Dict[Tuple[str, str, str], List[int]] = {}
        slot = {"agree": 0, "deviate": 1}
        for o in observations:
            for lib, quantity, vote in o.votes:
                row = counts.setdefault((o.api.partition(":")[2], lib, quantity), [0, 0, 0])
                row[slot.get(vote, 2)] += 1
        return tuple((c, lib, q, *n) for (c, lib, q), n in sorted(counts.items()))

    def _replay(self, report: BugReport) -> Optional[ReplayResult]:
        name = report.fingerprint.oracle.partition(":")[2]
        if name not in self.classes:
            return None
        members = self._runner(self.main_runners, CROSS, 0)
        return replay_cross(report, self.classes[name], members, self.config)


def class_for(report: BugReport, resolved: List[Resolved]) -> Resolved:
    """The loaded class a cross report names, with the report's library among its members."""
    name = report.fingerprint.oracle.partition(":")[2]
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
    return replay_result(report, j.findings, _versions(members, executions))


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


def installed_runtimes(libraries: Sequence[str], python_path: Sequence[str] = ()) -> Dict[str, Runtime]:
    """The runtimes of those `libraries` that are installed (the others are left out)."""
    out = {}
    for library in libraries:
        try:
            out[library] = resolve_runtime(library, python_path)
        except ConfigError:
            continue
    return out
