"""`nablafuzz replay REPORT`: rebuild a report's trial from data and run it again.

Nothing read from a report is executed as code: the API is resolved only through a loaded
spec of the report's library, so a report naming `os.system` is refused.
Exit codes: 0 reproduced (the bug is still there), 1 not reproduced (fixed in this runtime),
3 changed (the trial now gives other findings), 2 error (refused, corrupt report, no runtime).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Tuple

from ..core.errors import RefusedError
from ..core.fingerprint import describe
from ..core.fingerprint import key as fingerprint_key
from ..core.model import ApiSpec, BugReport, Finding, Verdict
from ..core.quantities import ALL
from ..oracle.verdict import judge, uninitialised
from ..runtime.runner import Runner, versions_of
from ..specs.reference import flat_only
from ..specs.spec import SpecSet
from ..worker.programs import is_program, program_spec
from .store import read_report


class ReplayOutcome(enum.Enum):
    REPRODUCED = 0
    NOT_REPRODUCED = 1
    CHANGED = 3


@dataclass(frozen=True)
class ReplayResult:
    outcome: ReplayOutcome
    report: BugReport
    found: Tuple[str, ...]
    versions: Tuple[str, ...]

    def message(self) -> str:
        fp = describe(self.report.fingerprint)
        if self.outcome is ReplayOutcome.REPRODUCED:
            return f"reproduced: {fp}"
        if self.outcome is ReplayOutcome.NOT_REPRODUCED:
            return f"not reproduced (fixed here?): {fp}"
        return f"changed: expected {fp}; now: {'; '.join(self.found)}"


def spec_for(report: BugReport, specs: SpecSet) -> ApiSpec:
    fp = report.fingerprint
    if is_program(fp.api):  # rebuilt from its name; refused unless every step is a loaded spec
        spec = program_spec(fp.library, fp.api, specs.by_id(), specs.conventions)
    else:
        spec = specs.get(fp.library, fp.api)
    if spec is not None and not any(s.split(".")[0] == "mp" for d in report.evidence.disagreements
                                    for s in d.scenarios):
        spec = flat_only(spec)  # judged as the campaign that found it did
    if spec is None or fp.library != report.trial.library or fp.api != report.trial.api:
        raise RefusedError(f"report names API {fp.api!r} of library {fp.library!r}, which no loaded spec "
                           "declares; refusing to run it (reports are data, never code). Fix: if it is your "
                           "own function, pass its spec file with --specs")
    return spec


def replay_report(report: BugReport, spec: ApiSpec, runner: Runner, scenarios: Sequence[str] = ALL) -> ReplayResult:
    """Re-run the report's trial; the scenarios its fingerprint names (e.g. `jit`) always run."""
    # the fingerprint's scenarios and the references its evidence was judged against (fd.rev.rev
    # for a third-order report) always run, whatever the default set
    wanted = report.fingerprint.scenarios + tuple(s for d in report.evidence.disagreements for s in d.scenarios
                                                  if s.split(".")[0] not in ("mp", "others"))
    names = tuple(scenarios) + tuple(dict.fromkeys(s for s in wanted if s not in scenarios))
    first = runner.run(report.trial, spec, names)
    findings = judge(first, spec, runner).findings
    if report.fingerprint.verdict is Verdict.UNINITIALISED_READ:  # Note [uninitialised read]: a fresh process
        runner.restart()
        fresh = runner.run(report.trial, spec, names)
        findings = tuple(uninitialised(first, fresh, f) or f for f in findings)
    return replay_result(report, findings, versions_of(runner))


def replay_result(report: BugReport, findings: Sequence[Finding], versions: Tuple[str, ...]) -> ReplayResult:
    """Reproduced (the report's fingerprint is among the findings), changed (others are) or not."""
    found = {f.fingerprint for f in findings}
    if report.fingerprint in found:
        outcome = ReplayOutcome.REPRODUCED
    elif found:
        outcome = ReplayOutcome.CHANGED
    else:
        outcome = ReplayOutcome.NOT_REPRODUCED
    return ReplayResult(outcome, report, tuple(sorted(f"{describe(f)} [{fingerprint_key(f)}]" for f in found)), versions)


def load_for_replay(path: Path, specs: SpecSet) -> Tuple[BugReport, ApiSpec]:
    report = read_report(path)
    return report, spec_for(report, specs)


