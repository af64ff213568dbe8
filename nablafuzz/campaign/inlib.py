"""The in-library oracle: one library's call computed every way it offers (reverse and forward
mode, their compositions, the transforms users call, the compiled function), judged against
each other and against finite differences or the 50-digit reference (oracle/verdict.py).

Its tasks are the selected specs, taking turns with programs built from them; a finding is
confirmed in a fresh worker, re-checked there for uninitialised reads, minimised, and a
program's finding is blamed on the shortest part that explains it.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from ..core.config import Config
from ..core.errors import BudgetExhausted, WorkerError
from ..core.fingerprint import key as fingerprint_key
from ..core.model import ApiSpec, BugReport, Execution, Finding, Trial, Verdict
from ..libraries import scenarios_for
from ..oracle.compare import empty_derivative
from ..oracle.filters import Peers
from ..oracle.verdict import Judgement, judge, uninitialised
from ..reports.replay import ReplayResult, replay_report
from ..reports.store import trial_key
from ..runtime.process import RuntimeUnavailable
from ..runtime.runner import Runner, versions_of
from ..specs.equivalence import Resolved, canonical_trial, equivalence_path, load_classes, member_trial, resolve
from ..specs.reference import flat_only
from ..specs.spec import SpecSet
from ..worker.programs import BlameStopped, alternate, blame, generate_programs, is_program, probe_steps, program_spec
from .minimize import representative
from .stats import Observation, TrialResult, with_count


def peer_classes(config: Config, specs: SpecSet) -> Dict[str, Resolved]:
    """Spec id -> its equivalence class, over every loaded library (Note [float32 formula])."""
    path = equivalence_path(config.spec_dir, config.equivalence_file)
    if not path.is_file():
        return {}
    resolved = resolve(load_classes(path), specs, sorted({s.library for s in specs.specs}))
    return {f"{lib}:{s.name}": r for r in resolved for lib, s in r.specs}


def structures_of(spec: ApiSpec, trial: Trial) -> str:
    """The structures a trial's inputs take, comma-separated (for the per-structure counts);
    a batch broadcast across its operands counts as `batched`."""
    kinds = {a.structure for args in (spec.args,) + spec.overloads for a in args if a.structure}
    return ",".join(sorted(kinds | ({"batched"} if trial.batched else set())))


class InLibrary:
    """The oracle `campaign/loop.py` runs for a campaign without --cross."""

    def __init__(self, campaign, specs: SpecSet):
        self.campaign, self.config = campaign, campaign.config
        # the 50-digit reference judges tails only where switched on (its reports are not vetted
        # at scale yet); otherwise it only settles a flat forward (Note [exact reference])
        self.specs = [s if self.config.reference else flat_only(s)
                      for s in specs.select(self.config.libraries, self.config.apis)]
        self.loaded, self.conventions = specs.by_id(), specs.conventions  # what programs are built from
        self.blamed: Dict[str, str] = {}  # program fingerprint key -> what explained it ("": the program)
        self.peer_classes = peer_classes(self.config, specs)

    def prepare(self) -> None:
        """Programs join the tasks (they need a worker to find their steps)."""
        if self.config.programs:
            self.specs = self._with_programs(self.specs)

    def runner(self, runners: Dict[str, Runner], library: str, n: int) -> Runner:
        return self.campaign.runner(runners, library, n)

    def _peers(self, spec: ApiSpec) -> Optional[Peers]:
        """The other members of the spec's equivalence class, run in this thread's runners."""
        r = self.peer_classes.get(spec.id)
        if r is None or not hasattr(self.campaign.local, "runners"):
            return None

        def run(trial: Trial, scenarios: Tuple[str, ...]) -> Dict[str, Execution]:
            canonical, out = canonical_trial(r, trial), {}
            for library in r.libraries:
                member = r.spec(library)
                if library == spec.library or library in self.campaign.shared.stopped or trial.dtype not in member.dtypes:
                    continue
                try:
                    runner = self.campaign.runner(self.campaign.local.runners, library, self.campaign.local.n)
                    out[library] = runner.run(member_trial(r, library, canonical), member, scenarios)
                except RuntimeUnavailable:  # a peer is a second opinion: none is no verdict
                    continue
            return out
        return run

    def trial(self, spec: ApiSpec, index: int, candidate: int = 0) -> Trial:
        """Trial `index` of `spec` (or another candidate for its slot, Note [validity candidates])."""
        return self.campaign.draw(spec, index, candidate)

    def run_trial(self, spec: ApiSpec, runner: Runner, index: int) -> TrialResult:
        start = time.monotonic()
        pick = self.campaign.pick(spec, lambda c: self.trial(spec, index, c))
        result = self._run(spec, runner, index, pick.trial, pick.candidate, start)
        return self.campaign.picked(spec, pick, result)

    def _run(self, spec: ApiSpec, runner: Runner, index: int, trial: Trial, candidate: int, start: float) -> TrialResult:
        scenarios = scenarios_for(self.config, spec.library, spec.capabilities)
        peers = self._peers(spec)
        if runner.staged and not self.campaign.eager_first(spec, index, trial, [spec.library], candidate):  # Note [eager first]
            execution = runner.run(trial, spec, scenarios)
            if not execution.timed_out:  # a staged hang is judged eagerly only (Note [staged findings])
                j = judge(execution, spec, runner, peers)
                if not j.findings:
                    return self._judged(spec, runner, index, trial, scenarios, start, execution, j, peers)
        with runner.eager():  # a staged trial with findings runs again eagerly (Note [staged findings])
            execution = runner.run(trial, spec, scenarios)
            return self._judged(spec, runner, index, trial, scenarios, start, execution,
                                judge(execution, spec, runner, peers), peers)

    # Note [staged findings]
    # Staged scenarios (compiled kernels, Note [staged scenarios]) screen the trials.  A trial
    # whose judgement has findings is run again eagerly, as its repro script will run it, and
    # only that run's findings go on (to confirmation, minimisation and the store), so no
    # report rests on a compiled program the maintainer's script does not run.  A staged trial
    # that timed out goes to the eager run unjudged: judging it would re-run it staged for the
    # slow filter (four times the timeout) before the eager run and its own re-run:
    # `tf.math.zeta`'s hang cost one TensorFlow worker 300 s of a 20-minute night so, 180 s now
    # (bench/results/throughput-same-machine.md, twelfth session).
    def _judged(self, spec: ApiSpec, runner: Runner, index: int, trial: Trial, scenarios: Sequence[str],
                start: float, execution: Execution, j: Judgement, peers: Optional[Peers]) -> TrialResult:
        fresh: List[Execution] = []

        def again() -> Tuple[Finding, ...]:
            runner.restart()
            fresh.append(runner.run(trial, spec, scenarios))
            return judge(fresh[0], spec, runner, peers).findings
        confirmed, unconfirmed = self.campaign.confirm(j.findings, again)
        if fresh and not spec.random:
            confirmed = self._uninitialised(confirmed, execution, fresh[0])
        findings = tuple(self._reported(f, spec, runner) for f in confirmed)
        direct = execution.get("direct")
        why = "" if j.valid or direct is None or direct.error is None else f"{direct.error.type}: {direct.error.message}"
        empty = not j.valid and empty_derivative(trial, direct.outputs if direct else ())  # nothing non-empty compared
        obs = Observation(spec.id, index, trial_key(trial), trial.dtype, j.valid, j.candidates,
                          with_count(j.dismissed, "not_confirmed", unconfirmed),
                          tuple(fingerprint_key(f.fingerprint) for f in confirmed), (),
                          time.monotonic() - start, execution.death.kind if execution.death else "", why[:160],
                          j.conventions, empty=empty, regime=trial.regime, structure=structures_of(spec, trial))
        return TrialResult(obs, findings, versions_of(runner))

    def _uninitialised(self, findings: Tuple[Finding, ...], first: Execution, fresh: Execution) -> Tuple[Finding, ...]:
        """Findings whose results a fresh process changed, as uninitialised reads (Note
        [uninitialised read]); their own fingerprints stay unconfirmed, so that every later
        occurrence is checked in a fresh worker too."""
        out = []
        for f in findings:
            read = uninitialised(first, fresh, f)
            if read is not None:
                with self.campaign.shared.lock:
                    self.campaign.shared.confirmed.discard(f.fingerprint)
                    self.campaign.shared.confirmed.add(read.fingerprint)
            out.append(read or f)
        return tuple(out)

    def _reported(self, finding: Finding, spec: ApiSpec, runner: Runner) -> Tuple[Finding, Trial]:
        """The finding as it is reported, with its representative trial: a program's finding,
        once its trial is minimised, goes to the shortest part of the program that explains it
        (Note [program blame] in programs.py), whose own trial is then minimised in turn."""
        found, small = self._representative(finding, spec, runner)
        if not is_program(spec.name) or finding.fingerprint.verdict is Verdict.TIMEOUT:
            return found, small
        blamed, part = self._blame(replace(found, trial=small), spec, runner)
        if part is spec:
            return found, small
        return self._representative(blamed, part, runner)

    def _blame(self, finding: Finding, spec: ApiSpec, runner: Runner) -> Tuple[Finding, ApiSpec]:
        key = fingerprint_key(finding.fingerprint)
        with self.campaign.shared.lock:
            prefer = self.blamed.get(key)
        if prefer == "":  # nothing shorter explained this fingerprint before
            return finding, spec
        scenarios = scenarios_for(self.config, spec.library, spec.capabilities)

        def run(t: Trial, s: ApiSpec, names: Sequence[str]):
            try:
                return runner.run(t, s, names)
            except BudgetExhausted:
                raise BlameStopped() from None
            except WorkerError:  # a part the worker refuses explains nothing
                return None

        def direct(t: Trial, s: ApiSpec):
            ex = run(t, s, ("direct",))
            d = ex.get("direct") if ex is not None else None
            return None if d is None or d.error is not None or len(d.outputs) != 1 else np.asarray(d.outputs[0])

        def findings_of(t: Trial, s: ApiSpec):
            ex = run(t, s, scenarios)
            try:
                return () if ex is None else judge(ex, s, runner).findings
            except BudgetExhausted:
                raise BlameStopped() from None
        blamed, blamed_spec = blame(finding, spec, self.loaded, direct, findings_of, prefer or "", self.conventions)
        with self.campaign.shared.lock:
            self.blamed[key] = "" if blamed_spec is spec else blamed_spec.name
        return blamed, blamed_spec

    def _representative(self, finding: Finding, spec: ApiSpec, runner: Runner) -> Tuple[Finding, Trial]:
        """The minimised trial, and the finding judged on it (minimize.representative)."""
        if not self.campaign.to_minimise(finding):
            return finding, finding.trial
        scenarios = scenarios_for(self.config, spec.library, spec.capabilities)
        return representative(finding, spec, lambda t: judge(runner.run(t, spec, scenarios), spec, runner).findings)

    def _with_programs(self, specs: List[ApiSpec]) -> List[ApiSpec]:
        """Each library's selected specs taking turns with at most `max_programs` programs of
        them (programs.py): steps are found by a probe in the library's worker, programs are
        drawn from (campaign seed, index), and every program spec is built by `program_spec`
        from the selected specs alone."""
        out: List[ApiSpec] = []
        for library in dict.fromkeys(s.library for s in specs):
            singles = [s for s in specs if s.library == library]
            runner = self.campaign.runner(self.campaign.main_runners, library, 0)

            def direct(t: Trial, s: ApiSpec, runner: Runner = runner):
                try:
                    ex = runner.run(t, s, ("direct",), min(self.config.trial_timeout_s, 10.0))
                except (BudgetExhausted, WorkerError):
                    return None
                d = ex.get("direct")
                return None if d is None or d.error is not None or len(d.outputs) != 1 else np.asarray(d.outputs[0])
            try:
                steps = probe_steps(singles, direct, self.campaign.seed,
                                    keep_going=lambda runner=runner: runner.left() > self.config.trial_timeout_s)
            except RuntimeUnavailable as exc:
                with self.campaign.shared.lock:
                    self.campaign.shared.stopped.setdefault(exc.library, str(exc))
                steps = []
            names = generate_programs(library, steps, self.campaign.seed, self.config.max_programs)
            out += alternate(singles, [program_spec(library, n, self.loaded, self.conventions) for n in names])
        return out

    # ---- the campaign's end ------------------------------------------------------------------
    def covers(self, report: BugReport, covered: Set[str]) -> bool:
        """Whether this campaign tried what the report is about (in-library reports only here)."""
        fp = report.fingerprint
        return not fp.oracle and f"{fp.library}:{fp.api}" in covered

    def agreement(self, observations: List[Observation]) -> tuple:
        return ()

    def replay(self, report: BugReport, runners: Dict[str, Runner]) -> Optional[ReplayResult]:
        spec = next((s for s in self.specs if s.id == f"{report.fingerprint.library}:{report.fingerprint.api}"), None)
        if spec is None:
            return None
        runner = self.campaign.runner(runners, spec.library, 0)
        with runner.eager():  # as the report was established (Note [staged findings])
            return replay_report(report, spec, runner, scenarios_for(self.config, spec.library, spec.capabilities))
