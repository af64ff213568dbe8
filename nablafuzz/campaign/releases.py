"""`campaign --versions OLD,NEW`: each trial of one library's APIs runs in two of its releases
(`nablafuzz install --only jax@0.10.1` builds one next to the default runtime, named `jax`), and
what differs is reported as a `release_change` (Note [release change] in oracle/releases.py).

Trials are drawn as in an in-library campaign.  A library whose trials are staged (compiled
scenario kernels, Note [staged scenarios]) screens them so in both releases; a trial with a
change runs again eagerly in both, as its repro script runs it, and only that run's findings go
on to confirmation (both workers fresh), minimisation and the store.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

from ..core.config import Config
from ..core.errors import ConfigError, WorkerError
from ..core.fingerprint import key as fingerprint_key
from ..core.model import RELEASE_ORACLE, ApiSpec, BugReport, Execution, Finding, Outcome, Trial, release_oracle
from ..oracle.releases import ReleaseJudgement, release_judge
from ..reports.replay import ReplayResult, replay_result
from ..reports.store import trial_key
from ..runtime.pool import Members
from ..runtime.process import RuntimeUnavailable
from ..runtime.install import InstallError
from ..runtime.registry import resolve_runtime, split_release
from ..runtime.runner import Runner
from ..specs.reference import flat_only
from ..specs.spec import SpecSet
from ..libraries import scenarios_for, staged_for
from .minimize import representative
from .stats import Observation, TrialResult, merge_counts

RELEASES = "releases"  # the runners key of a worker thread's pair of releases


def release_pair(versions: Sequence[str]) -> Tuple[str, str]:
    """The two runtimes of `--versions OLD,NEW`, checked: two names of one library."""
    if len(versions) != 2:
        raise ConfigError(f"setting versions={list(versions)} is invalid: name two runtimes of one library, the "
                          "older first (e.g. --versions jax@0.10.1,jax; build one with `nablafuzz install --only jax@0.10.1`)")
    try:
        libraries = {split_release(v)[0] for v in versions}
    except InstallError as exc:
        raise ConfigError(f"setting versions: {exc}") from None
    if len(libraries) != 1 or versions[0] == versions[1]:
        raise ConfigError(f"setting versions={list(versions)} is invalid: they must be two different runtimes of "
                          "one library (e.g. jax@0.10.1,jax)")
    return versions[0], versions[1]


def run_pair(spec: ApiSpec, trial: Trial, members: Members, names: Tuple[str, str], scenarios: Sequence[str],
             eager: bool) -> Tuple[ReleaseJudgement, Dict[str, Execution]]:
    """The trial run by both releases (eagerly if asked) and judged."""
    with contextlib.ExitStack() as stack:
        if eager:
            for name in names:
                stack.enter_context(members[name].eager())
        executions = {name: members[name].run(trial, spec, scenarios) for name in names}
    return release_judge(spec, trial, names, executions[names[0]], executions[names[1]]), executions


class Releases:
    """The oracle `campaign/loop.py` runs for `--versions`."""

    def __init__(self, campaign, specs: SpecSet):
        self.campaign, self.config = campaign, campaign.config
        self.names = release_pair(self.config.versions)
        self.library = split_release(self.names[0])[0]
        self.oracle = release_oracle(*self.names)
        self.pair = self.oracle[len(RELEASE_ORACLE):]  # OLD..NEW, as observations log it
        self.specs = [flat_only(s) for s in specs.select([self.library], self.config.apis)]

    def prepare(self) -> None:
        """Nothing to add."""

    def runner(self, runners: Dict, library: str, n: int) -> Members:
        """One `Members` per worker thread: a runner per release."""
        return self.campaign.members(runners, RELEASES, n)

    def trial(self, spec: ApiSpec, index: int, candidate: int = 0) -> Trial:
        return self.campaign.draw(spec, index, candidate)

    def run_trial(self, spec: ApiSpec, members: Members, index: int) -> TrialResult:
        start = time.monotonic()
        trial = self.trial(spec, index)
        scenarios = scenarios_for(self.config, spec.library, spec.capabilities)
        staged = staged_for(self.config, self.library)
        try:
            j, executions = run_pair(spec, trial, members, self.names, scenarios, eager=not staged)
        except RuntimeUnavailable:
            raise
        except WorkerError as exc:  # the API is not in one of the releases (added or removed): nothing to compare
            obs = Observation(spec.id, index, trial_key(trial), trial.dtype, False, 0, (), (), (),
                              time.monotonic() - start, "", str(exc)[:160], regime=trial.regime)
            return TrialResult(obs, (), members.versions(list(self.names)))
        if j.findings and staged:  # re-established eagerly, as its repro runs it
            j, executions = run_pair(spec, trial, members, self.names, scenarios, eager=True)

        def again() -> Tuple[Finding, ...]:  # both workers fresh (Note [confirmation])
            for name in self.names:
                members[name].restart()
            return run_pair(spec, trial, members, self.names, scenarios, eager=True)[0].findings
        confirmed, unconfirmed = self.campaign.confirm(j.findings, again)
        reported = tuple(self._representative(f, spec, members, scenarios) for f in confirmed)
        direct = [ex.get("direct") for ex in executions.values()]
        valid = any(d is not None and d.outcome is Outcome.OK for d in direct)
        deaths = ", ".join(f"{name} {ex.death.kind}" for name, ex in executions.items() if ex.death)
        why = "" if valid else "; ".join(f"{name}: {d.error.type}: {d.error.message}"[:80]
                                         for name, d in zip(executions, direct) if d is not None and d.error)
        dismissed = merge_counts([(name, 1) for name in j.dismissed] + [("not_confirmed", unconfirmed)] * bool(unconfirmed))
        obs = Observation(spec.id, index, trial_key(trial), trial.dtype, valid, len(j.findings) + len(j.dismissed),
                          dismissed,
                          tuple(fingerprint_key(f.fingerprint) for f in confirmed), (), time.monotonic() - start,
                          deaths, why[:160], regime=trial.regime,
                          changes=tuple((self.pair, fingerprint_key(f.fingerprint), j.kind) for f in confirmed))
        return TrialResult(obs, reported, members.versions(list(self.names)))

    def _representative(self, finding: Finding, spec: ApiSpec, members: Members,
                        scenarios: Sequence[str]) -> Tuple[Finding, Trial]:
        """The minimised trial that still shows the change, with the finding judged on it."""
        if not self.campaign.to_minimise(finding):
            return finding, finding.trial
        return representative(finding, spec,
                              lambda t: run_pair(spec, t, members, self.names, scenarios, eager=True)[0].findings)

    # ---- the campaign's end ------------------------------------------------------------------
    def covers(self, report: BugReport, covered: Set[str]) -> bool:
        fp = report.fingerprint
        return fp.oracle == self.oracle and f"{fp.library}:{fp.api}" in covered

    def agreement(self, observations: List[Observation]) -> tuple:
        return ()

    def replay(self, report: BugReport, runners: Dict) -> Optional[ReplayResult]:
        spec = next((s for s in self.specs if s.name == report.fingerprint.api), None)
        if spec is None:
            return None
        members = self.runner(runners, self.library, 0)
        return replay_release(report, spec, members, scenarios_for(self.config, spec.library, spec.capabilities))


def replay_release(report: BugReport, spec: ApiSpec, members: Members, scenarios: Sequence[str]) -> ReplayResult:
    """Re-run a release report's trial in both of its releases (eagerly) and judge it again."""
    names = report.fingerprint.releases
    wanted = tuple(scenarios) + tuple(s for s in report.fingerprint.scenarios if s not in scenarios)
    j, _ = run_pair(spec, report.trial, members, names, wanted, eager=True)
    return replay_result(report, j.findings, members.versions(list(names)))


class ReleaseReplayer:
    """`nablafuzz replay` of release-vs-release reports: one worker per release serves them all."""

    def __init__(self, python_path: Sequence[str]):
        self.members = Members(lambda name: Runner(resolve_runtime(name, python_path),
                                                   Path(f".nablafuzz/replay-{name}.log"), 60.0))

    def replay(self, report: BugReport, spec: ApiSpec) -> ReplayResult:
        return replay_release(report, spec, self.members, scenarios_for(Config(), spec.library, spec.capabilities))

    def close(self) -> None:
        self.members.close()
