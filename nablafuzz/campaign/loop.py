"""`nablafuzz campaign`: many trials over many APIs, unattended, resumable.

Worker threads (one runner per thread and library) generate, run and judge trials and
minimise the first occurrence of each fingerprint; the main thread is the only writer of the
report store and of the campaign's observation log (`observations.jsonl`, one JSON line per
trial).  A trial's report is written before its observation line, so after Ctrl-C or SIGKILL
re-running the same command skips what is logged and re-runs at most the trials in flight,
whose occurrences the store recognises and does not count twice.

One campaign writes to a store at a time (`lock.exclusive`, held for the campaign's
lifetime).  `--budget` bounds every request to a worker (`Runner.deadline`): what the budget
cuts short is abandoned, never reported as a timeout.  A finding is reported only once its
fingerprint has come out again in a fresh worker (Note [confirmation]); a runtime whose
worker will not restart ends its own queue, not the campaign.  Every API's first trial runs
before any API's second (Note [breadth first] in `schedule.py`).
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol, Sequence, Set, Tuple

from ..core.codec import digest
from ..core.config import Config
from ..core.errors import BudgetExhausted, RefusedError, WorkerError
from ..core.fingerprint import key as fingerprint_key
from ..core.model import ApiSpec, BugReport, CampaignRecord, Finding, Fingerprint, ReportStatus, Trial, Verdict
from ..core.tensors import representative_rank, trial_size
from ..reports.lock import exclusive
from ..reports.replay import ReplayOutcome, ReplayResult
from ..reports.store import Store, now, path_of, remove_leftovers
from ..reports.vetting import dismissed
from ..runtime.process import RuntimeUnavailable
from ..runtime.registry import resolve_runtime
from ..libraries import record, staged_for
from ..runtime.pool import Members, runners_of
from ..runtime.runner import Runner
from ..specs import pool
from ..specs.generate import generate
from ..specs.spec import SpecSet
from .schedule import Schedule
from .validity import Guide, Pick, label, validity_on
from .stats import Observation, Summary, TrialResult, picks, predicted, release_classes, summarise

_DONE = object()


@dataclass
class _Shared:
    """State the worker threads share, guarded by one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    claimed: Set[str] = field(default_factory=set)
    signatures: Set[Tuple[str, int]] = field(default_factory=set)  # (spec id, signature seed) run eagerly
    confirmed: Set[Fingerprint] = field(default_factory=set)
    stopped: Dict[str, str] = field(default_factory=dict)  # library -> why its runtime was given up
    stop: threading.Event = field(default_factory=threading.Event)

    def claim(self, key: str) -> bool:
        with self.lock:
            if key in self.claimed:
                return False
            self.claimed.add(key)
            return True


UNCONFIRMABLE = (Verdict.CRASH, Verdict.TIMEOUT, Verdict.NONDETERMINISTIC, Verdict.UNINITIALISED_READ)


def established(store: Store) -> Set[Fingerprint]:
    """The fingerprints a campaign takes as confirmed from its start: the store's new and open
    reports, but for crashes and what only a fresh worker shows (Note [confirmation])."""
    return {r.fingerprint for r in store if r.standing and r.fingerprint.verdict not in UNCONFIRMABLE}


def campaign_id(config: Config) -> str:
    basis = (config.libraries, config.apis, config.spec_files, config.seed, config.trials_per_api,
             config.scenarios, config.max_tensor_size, config.profile) + (("cross",) if config.cross else ()) \
        + ((("regime_share", config.regime_share),) if config.regime_share != Config.regime_share else ()) \
        + ((("programs", config.max_programs),) if config.programs and not config.cross else ()) \
        + ((("staged", config.staged),) if config.staged is not None else ()) \
        + ((("validity_model", config.validity_model),) if config.validity_model is not Config.validity_model else ())\
        + ((("versions",) + tuple(config.versions),) if config.versions else ())
    return config.name or f"c-{digest(basis, 10)}"


def campaign_dir(config: Config) -> Tuple[str, Path, int]:
    """The unfinished campaign of this configuration, or a new round after a finished one:
    (its id, its directory, its round number)."""
    base = campaign_id(config)
    root = Path(config.campaign_dir)
    n = 1
    while (root / _round(base, n) / "complete").exists():
        n += 1
    return _round(base, n), root / _round(base, n), n


def _round(base: str, n: int) -> str:
    return base if n == 1 else f"{base}-r{n}"


def repair_log(path: Path) -> None:
    """Cut a last line that a kill or a power loss left without its newline, so the next
    record starts on a line of its own (that trial re-runs)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        f.seek(data.rfind(b"\n") + 1)
        f.truncate()


def not_reproduced(report: BugReport, versions: Set[str], campaign: str) -> BugReport:
    """A report a campaign did not see and whose replay did not reproduce it: fixed, unless the
    campaign ran its library's release that the report was seen on; then it is flaky (the
    same code gave another result), not fixed."""
    package = report.fingerprint.library + " "
    same = sorted(v for v in report.versions_seen if v.startswith(package) and v in versions)
    if same:
        return replace(report, status=ReportStatus.FLAKY,
                       notes=f"not reproduced by campaign {campaign} on the release it was seen on ({same[0]})")
    return replace(report, status=ReportStatus.FIXED, notes=f"not reproduced by campaign {campaign}")


def _reproduced_here(report: BugReport, versions: Set[str]) -> bool:
    """Whether the report's representative already reproduced at a campaign's end on the
    versions this campaign ran (Note [finishing budget]); never for what varies from run to run."""
    return bool(report.reproduced_on) and set(report.reproduced_on) <= versions \
        and report.fingerprint.verdict not in (Verdict.NONDETERMINISTIC, Verdict.UNINITIALISED_READ)


def read_observations(path: Path) -> List[Observation]:
    """Logged observations; a line cut short by a kill is ignored (its trial simply re-runs)."""
    out = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                out.append(Observation.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    return out


def _conventions(observations: List[Observation]) -> Tuple[Tuple[str, str, int], ...]:
    """(api, convention, candidates it classified) over the campaign; the reason's first
    clause (up to the first ';') names the convention."""
    counts: Dict[Tuple[str, str], int] = {}
    for o in observations:
        for why in o.conventions:
            key = (o.api, why.split("; ")[0])
            counts[key] = counts.get(key, 0) + 1
    return tuple((api, why, n) for (api, why), n in sorted(counts.items()))


def _interleaved(specs: List[ApiSpec]) -> List[ApiSpec]:
    """Specs taking turns across libraries (each library's own order kept), so a budget that
    runs out still leaves every library a fair share of APIs."""
    by_library: Dict[str, List[ApiSpec]] = {}
    for s in specs:
        by_library.setdefault(s.library, []).append(s)
    queues = list(by_library.values())
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


class Oracle(Protocol):
    """What the loop asks of the in-library (campaign/inlib.py) and the cross-library
    (campaign/cross.py) oracle: its tasks, a trial of one, and the campaign's end."""

    specs: List[ApiSpec]  # the tasks, one API (or equivalence class) each

    def prepare(self) -> None: ...  # before the threads start: more tasks (programs)

    def runner(self, runners: Dict[str, Any], library: str, n: int) -> Any: ...  # what run_trial takes

    def run_trial(self, spec: ApiSpec, runner: Any, index: int) -> TrialResult: ...

    def trial(self, spec: ApiSpec, index: int, candidate: int = 0) -> Trial: ...  # --validity-model: regenerates a logged trial

    def covers(self, report: BugReport, covered: Set[str]) -> bool: ...  # a report this campaign tried

    def agreement(self, observations: List[Observation]) -> tuple: ...  # the campaign record's votes

    def replay(self, report: BugReport, runners: Dict[str, Any]) -> Optional[ReplayResult]: ...  # eagerly, on these runners


class Lane(Protocol):
    """Where one worker thread's slots run: its own runners (`ThreadLane`), or a Ray actor
    (distributed.py)."""

    def run(self, spec: ApiSpec, indices: range, api_deadline: float) -> bool: ...  # Campaign.trials' rules; False: stopped

    def drop(self, library: str) -> None: ...  # that library's runtime was given up

    def close(self) -> None: ...


class Executor(Protocol):
    def lane(self, n: int) -> Lane: ...  # called in worker thread `n`

    def close(self) -> None: ...  # after the threads ended


class ThreadLane:
    """A worker thread's runners, one per library, started on first use."""

    def __init__(self, campaign: "Campaign", n: int, done: Set[Tuple[str, int]]):
        self.campaign, self.n, self.done = campaign, n, done
        self.runners: Dict[str, Any] = {}
        campaign.local.runners, campaign.local.n = self.runners, n

    def run(self, spec: ApiSpec, indices: range, api_deadline: float) -> bool:
        c = self.campaign
        for result in c.trials(spec, c.oracle.runner(self.runners, spec.library, self.n), self.done, indices, api_deadline):
            if result is None:
                return False
            c.results.put(result)
        return True

    def drop(self, library: str) -> None:
        gone = self.runners.pop(library, None)
        if gone is not None:
            gone.close()

    def close(self) -> None:
        """The thread's runners are handed over, warm, to the replays at the campaign's end
        (`Campaign._finish`), which would otherwise start fresh ones (2-3 s for torch, more for
        TensorFlow)."""
        with self.campaign.shared.lock:
            self.campaign.handed.append(self.runners)


@dataclass
class _Threads:
    campaign: "Campaign"
    done: Set[Tuple[str, int]]

    def lane(self, n: int) -> ThreadLane:
        return ThreadLane(self.campaign, n, self.done)

    def close(self) -> None:
        pass


class Campaign:
    """The loop: worker threads, the observation log, resuming, the store and the replays at
    the end, around the oracle that `oracle(campaign, specs)` builds."""

    def __init__(self, config: Config, specs: SpecSet, oracle: Callable[["Campaign", SpecSet], Oracle],
                 progress=None, round: Optional[Tuple[str, Path, int]] = None,
                 executor: Optional[Callable[["Campaign", List[Observation], Set[Tuple[str, int]]], "Executor"]] = None):
        self.config, self.specs = config, specs
        self.executor = executor  # where trials run (distributed.RayExecutor); None: worker threads here
        self.store = Store(Path(config.store_dir))
        self.id, self.dir, self.round = round or campaign_dir(config)  # a Ray actor is given its driver's
        self.seed = config.seed + self.round - 1
        self.deadline: Optional[float] = None  # time.monotonic() when the budget is spent
        self.shared = _Shared(confirmed=established(self.store))  # Note [confirmation]
        self.results: "queue.Queue" = queue.Queue()
        self.progress = progress
        self.main_runners: Dict[str, Runner] = {}  # the main thread's: programs' steps, replays
        self.handed: List[Dict[str, Any]] = []  # the lanes' runners, warm, for the replays at the end
        self.started_at = now()
        self.python_path = tuple(sorted({os.getcwd()} | {str(Path(f).parent) for f in config.spec_files}))
        self.local = threading.local()  # a worker thread's runners, for its peers
        self.oracle_class, self.oracle = oracle, oracle(self, specs)  # the class: what a Ray actor builds too
        self.guide = Guide(self.seed, lambda library: staged_for(config, library)) \
            if validity_on(config) else None  # Note [validity model]

    # ---- worker threads -------------------------------------------------------------------
    def runner(self, runners: Dict[str, Runner], library: str, n: int) -> Runner:
        """This thread's runner of `library`, started on first use."""
        if library not in runners:
            rt = resolve_runtime(library, self.python_path, self.config.memory_limit_mb)
            log = self.dir / "logs" / f"{library}-{n}.log"
            runners[library] = Runner(rt, log, self.config.trial_timeout_s, getattr(self.local, "until", self.deadline),
                                      staged=staged_for(self.config, rt.library))  # `jax` of `jax@0.10.1`
        return runners[library]

    def members(self, runners: Dict[str, Any], key: str, n: int) -> Members:
        """This thread's runners of several runtimes under `key` (a cross-library class's
        libraries, two releases), each started on first use."""
        if key not in runners:
            own: Dict[str, Runner] = {}
            runners[key] = Members(lambda name: self.runner(own, name, n), own, self.shared.stopped)
        return runners[key]

    def _work(self, schedule: Schedule, n: int, deadline: float, make_lane: Callable[[int], "Lane"]) -> None:
        """Worker thread `n`: takes slots from the schedule and runs them in its lane (its own
        runners, or a Ray actor: distributed.py) until none is left."""
        lane = None
        try:
            lane = make_lane(n)
            while not self.shared.stop.is_set():
                slot = schedule.next(n)
                if slot is None:
                    return
                if self._stopped(slot.spec):
                    continue
                try:
                    if slot.first:
                        began = time.monotonic()
                        if lane.run(slot.spec, range(1), deadline):
                            schedule.ran_first(n, slot.spec, time.monotonic() - began)
                    else:
                        budget = schedule.share(n, deadline, self.config.api_budget_s - slot.spent)
                        lane.run(slot.spec, range(1, self.config.trials_per_api), min(deadline, time.monotonic() + budget))
                except RuntimeUnavailable as exc:  # that runtime's queue ends here, not the campaign
                    with self.shared.lock:
                        self.shared.stopped.setdefault(exc.library, str(exc))
                    lane.drop(slot.spec.library)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread, campaign ends cleanly
            self.results.put(exc)
        finally:
            if lane is not None:
                lane.close()
            self.results.put(_DONE)

    def _stopped(self, spec: ApiSpec) -> bool:
        """Whether the runtime this spec needs was given up (its worker would not restart)."""
        return spec.library in self.shared.stopped

    def trials(self, spec: ApiSpec, runner: Runner, done: Set[Tuple[str, int]], indices: range,
               api_deadline: float) -> Iterator[Optional[TrialResult]]:
        """The results of `spec`'s trials `indices` not yet done, the first of them whatever the
        time, the others until `api_deadline`; a last None when the campaign stopped or its
        budget ran out (the trial in flight is abandoned)."""
        for index in indices:
            if self.shared.stop.is_set():
                yield None
                return
            if index > indices.start and time.monotonic() > api_deadline:
                return
            if self.guide is not None and self.guide.hopeless(spec.id):  # Note [validity cold start]
                return
            if (spec.id, index) not in done:
                result = self._guarded_trial(spec, runner, index)
                yield result
                if result is None:
                    return

    def _guarded_trial(self, spec: ApiSpec, runner: Runner, index: int) -> Optional[TrialResult]:
        """An engine error on one trial is logged with its traceback and costs that trial only."""
        try:
            return self.oracle.run_trial(spec, runner, index)
        except BudgetExhausted:
            return None
        except WorkerError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded; the campaign goes on
            with open(self.dir / "engine-errors.log", "a") as log:
                log.write(f"{spec.id} #{index}\n{traceback.format_exc()}\n")
            obs = Observation(spec.id, index, "", "", False, 0, (), (), (), 0.0, "engine-error",
                              f"{type(exc).__name__}: {exc}"[:160])
            return TrialResult(obs, (), ())

    # Note [confirmation]
    # A finding counts only if its fingerprint comes out again when the same trial runs in a
    # fresh worker.  What a previous trial's function left in the process (grad mode switched
    # off, a patched module), a kill from outside, or a stray frame on the pipe does not survive
    # a restart, so such a finding is counted as `not_confirmed` and never reported.  A
    # fingerprint is confirmed once per campaign; later occurrences are taken as they come.  A
    # timeout needs no second run: the slow filter has re-run it, after the kill, in a fresh
    # worker with more time.  The restart also leaves the next trial a clean worker.
    #
    # A fingerprint the store already holds as a new or open report counts as confirmed from the
    # campaign's start (`established`): its report was confirmed in a fresh worker when it was
    # made, and campaigns' ends replay it (Note [finishing budget]).  A fresh worker would only say
    # again what the store says, at the cost of a restart and a cold run.  On a TensorFlow
    # store's third night, the first occurrences of 40 stored fingerprints took 250 s, 6.25 s
    # each, and `tf.math.segment_sum`, whose stored bug shows on its first trial, ran 2 trials in
    # its budget; taken as confirmed, 1.45 s each, and 152 trials
    # (bench/results/throughput-same-machine.md, twelfth session).  A stored crash is still
    # confirmed (a campaign's end does not replay a crash it saw again), and so is what a fresh
    # worker decides: a nondeterministic result, an uninitialised read.  A fixed or flaky report's
    # fingerprint coming back is a regression or a flake to be checked, and is confirmed too.
    def confirm(self, findings: Sequence[Finding], again: Callable[[], Sequence[Finding]]) -> Tuple[Tuple[Finding, ...], int]:
        """(the findings that are confirmed, how many were not); `again` re-runs the trial in a
        fresh worker and returns its findings."""
        with self.shared.lock:
            todo = {f.fingerprint for f in findings
                    if f.fingerprint not in self.shared.confirmed and f.fingerprint.verdict is not Verdict.TIMEOUT}
        if not todo:
            return tuple(findings), 0
        seen = {f.fingerprint for f in again()} & todo
        with self.shared.lock:
            self.shared.confirmed |= seen
        kept = tuple(f for f in findings if f.fingerprint not in todo or f.fingerprint in seen)
        return kept, len(findings) - len(kept)

    # Note [eager first]
    # Staged scenarios (Note [staged scenarios]) are a library's compiled path, and a library's
    # eager path can fail where its compiled one does not: TensorFlow's forward-over-forward of
    # segment_sum raises in eager mode only (an IndexedSlices the accumulator cannot watch).
    # Such failures follow the signature (dtypes, shapes, Python values), not the values, so for
    # such a library (Library.eager_differs) the first trial of every signature a campaign draws
    # runs eagerly, the others staged.  The eager run also checks the eager path's values:
    # TensorFlow's eager forward-over-forward of lstsq is wrong where its graph is right, so a
    # signature checked on one night is checked again the next (keeping the checks from night to
    # night missed that bug, bench/results/throughput-same-machine.md).  JAX's eager and compiled
    # paths share their AD rules, and an eager first trial of each signature costs it a third of
    # its trials.
    def eager_first(self, spec: ApiSpec, index: int, trial: Trial, libraries: Sequence[str], candidate: int = 0) -> bool:
        """Whether this pooled trial, run by `libraries`, is the first of its signature in the
        campaign and one of them has an eager path that differs (it then runs eagerly, Note
        [eager first])."""
        if not any(record(library).eager_differs for library in libraries):
            return False
        key = (spec.id, pool.signature(self.seed, spec.id, index, trial.seed, candidate).seed)
        with self.shared.lock:
            if key in self.shared.signatures:
                return False
            self.shared.signatures.add(key)
            return True

    def draw(self, spec: ApiSpec, index: int, candidate: int = 0) -> Trial:
        """Trial `index` of `spec` in this campaign (or another candidate for its slot, Note
        [validity candidates]); pooled where the library's trials are staged."""
        return generate(spec, self.seed, index, self.config.max_tensor_size, self.config.max_rank,
                        regime_share=self.config.regime_share, pooled=staged_for(self.config, spec.library),
                        candidate=candidate)

    def pick(self, spec: ApiSpec, make: Callable[[int], Trial]) -> Pick:
        """The trial a slot runs: `make(0)`, or with --validity-model the candidate `make(c)` its
        API's model picks (Note [validity candidates])."""
        return self.guide.pick(spec, make) if self.guide else Pick(make(0))

    def picked(self, spec: ApiSpec, pick: Pick, result: TrialResult) -> TrialResult:
        """The trial's result, its observation saying which candidate ran and why; the model
        learns its label."""
        if self.guide is None:
            return result
        self.guide.learn(spec, pick.trial, label(result.observation), pick.how, pick.row,
                         died=bool(result.observation.death))
        obs = replace(result.observation, candidate=pick.candidate, pick=pick.how, guess=pick.guess)
        return replace(result, observation=obs)

    def to_minimise(self, finding: Finding) -> bool:
        """Whether this thread minimises the finding: the first occurrence of its fingerprint
        (claimed once) whose trial would beat the stored representative.  A timeout is never
        minimised (each step would wait for the hang again), nor what only a second process shows."""
        fp = finding.fingerprint
        k = fingerprint_key(fp)
        claim = k if trial_size(finding.trial) else f"{k}/empty"  # a non-empty example still gets its turn
        if not self.config.minimise or fp.verdict in (Verdict.NONDETERMINISTIC, Verdict.TIMEOUT, Verdict.UNINITIALISED_READ) \
                or not self.shared.claim(claim):
            return False
        with self.shared.lock:
            old = self.store.get(fp.library, fp.api, k)
        return old is None or representative_rank(old.minimised_size) > representative_rank(trial_size(finding.trial))

    # ---- main thread ----------------------------------------------------------------------
    def run(self) -> Summary:
        with exclusive(Path(self.config.store_dir), "report store"):
            remove_leftovers(Path(self.config.store_dir))  # a write a kill -9 cut short
            return self._run()

    def _run(self) -> Summary:
        self.dir.mkdir(parents=True, exist_ok=True)
        log_path = self.dir / "observations.jsonl"
        repair_log(log_path)
        previous = read_observations(log_path)
        done = {(o.api, o.index) for o in previous}
        if self.guide is not None:  # a resumed campaign's models, refitted from its log
            self.guide.resume({s.id: s for s in self.oracle.specs}, previous, self.oracle.trial)
        deadline = self.deadline = time.monotonic() + self.config.budget_s
        self.oracle.prepare()
        specs = self.oracle.specs
        workers = min(self.config.workers, max(1, len(specs)))
        schedule = Schedule(_interleaved(specs), workers, self.config.trials_per_api)
        executor = self._executor(previous, done)
        threads = [threading.Thread(target=self._work, args=(schedule, n, deadline, executor.lane), daemon=True)
                   for n in range(workers)]
        started, self.started_at = time.monotonic(), now()
        warming = self.guide.warm() if self.guide is not None else None
        try:
            for t in threads:
                t.start()
            fresh, versions, error = self._collect(log_path, len(threads))
        finally:
            executor.close()
            if warming is not None:
                warming.join()
        complete = error is None and not self.shared.stop.is_set() and not self.shared.stopped
        observations = previous + fresh
        if complete:
            self._finish(observations, versions)
            (self.dir / "complete").write_text(now() + "\n")
        summary = summarise(self.id, specs, observations, len(fresh), time.monotonic() - started, complete)
        summary = replace(summary, memory_limit_mb=self.config.memory_limit_mb,
                          stopped=tuple(sorted(f"{lib}: {why}" for lib, why in self.shared.stopped.items())))
        (self.dir / "summary.json").write_text(json.dumps(summary.to_json(), indent=1) + "\n")
        if error is not None:
            raise error
        return summary

    def _executor(self, previous: List[Observation], done: Set[Tuple[str, int]]) -> "Executor":
        """Where the trials run: worker threads here (the default), or as the campaign was told."""
        return self.executor(self, previous, done) if self.executor else _Threads(self, done)

    def _collect(self, log_path: Path, running: int):
        fresh: List[Observation] = []
        versions: Set[str] = set()
        error: Optional[BaseException] = None
        with open(log_path, "a") as log:
            while running:
                try:
                    item = self.results.get()
                except KeyboardInterrupt:
                    self.shared.stop.set()  # threads finish their trial in flight, then stop
                    continue
                if item is _DONE:
                    running -= 1
                elif isinstance(item, BaseException):
                    error = error or item
                    self.shared.stop.set()
                else:
                    fresh.append(self._record(item, log))
                    versions |= set(item.versions)
        return fresh, versions, error

    def _finish(self, observations: List[Observation], versions: Set[str]) -> None:
        """Replay every report of the covered APIs: those this campaign did not see and that no
        longer reproduce are fixed; those it saw whose representative does not replay are
        flaky (with what the replay found).  Then record the campaign."""
        seen = {k for o in observations for k in o.findings}
        covered = {o.api for o in observations if o.valid}
        fixed = []
        self.deadline = time.monotonic() + max(self.config.budget_s / 10, self.config.trial_timeout_s)
        todo = [r for r in self.store if self.oracle.covers(r, covered) and r.status is not ReportStatus.FIXED
                and not (r.key in seen and r.fingerprint.verdict in (Verdict.TIMEOUT, Verdict.CRASH))
                and not dismissed(r) and not _reproduced_here(r, versions)]
        for r, result in self._replays(todo):
            if isinstance(result, RefusedError):  # report data naming what no loaded spec declares: never run
                self.store.notify(f"{path_of(self.store.root, r)}: {result}")
                continue
            if result is None:
                continue
            if result.outcome is ReplayOutcome.REPRODUCED:
                if r.reproduced_on != result.versions:
                    self.store.save(replace(r, reproduced_on=result.versions))
                continue
            if r.key in seen:
                self.store.save(replace(r, status=ReportStatus.FLAKY, notes=f"campaign {self.id}: replay of the "
                                        f"representative gave {result.message()}"))
            else:
                r = not_reproduced(r, versions, self.id)
                fixed += [r] if r.status is ReportStatus.FIXED else []
                self.store.save(r)
        libs = tuple(self.config.libraries)
        self.store.save_campaign(CampaignRecord(self.id, self.started_at, now(), libs, tuple(sorted(versions)),
                                                tuple(sorted(covered)), tuple(sorted(seen)),
                                                tuple(r.key for r in fixed), True, _conventions(observations),
                                                self.oracle.agreement(observations), picks(observations),
                                                predicted(observations),
                                                tuple(sorted((k, c) for k, (_, c) in release_classes(observations).items()))))

    # Note [finishing budget]
    # The replays at the end get their own time, a tenth of --budget (at least one trial
    # timeout); a report they cannot replay in time keeps its status.  A report whose
    # representative reproduced at an earlier campaign's end on the versions this campaign ran
    # (`BugReport.reproduced_on`) is not replayed: the same code on the same input cannot have
    # been fixed since, and the next release replays it (a TensorFlow store's hundred replays
    # took 70 s of a 20-minute campaign's end, night after night); a nondeterministic or
    # uninitialised-read report is replayed every time.  Nor is a report vetted as a convention or
    # a false positive: the campaign dismisses its fingerprint (reports/vetting.py), so its
    # replay could only call it flaky.  The others run eagerly, as
    # every report was established (Note [staged findings]): a staged replay of an eager-path
    # bug (TensorFlow's forward-over-forward of lstsq) does not reproduce it and called it fixed.
    # They run on every lane's warm runners at once, each taking the next report.  A hang or a
    # crash this campaign saw again was just confirmed in a fresh worker (Note [confirmation]),
    # and is not run once more: each would cost a worker (a OneFlow store holds tens of crash
    # reports, 20-30 s of a short campaign's end).  A hang it did not see is given one trial
    # timeout, without the slow filter's longer re-run: still running then, it keeps its status,
    # as a replay cut short by the budget does; hangs go first where several lanes replay (one
    # lane waits on a hang while the others replay the rest), last where one does.
    def _replays(self, todo: List[BugReport]) -> List[Tuple[BugReport, Any]]:
        """(report, its ReplayResult, None where it could not be replayed in time, or the
        RefusedError that kept it from running), in the order of `todo`."""
        pools = self._replay_runners()

        def hang(r: BugReport) -> bool:
            return r.fingerprint.verdict is Verdict.TIMEOUT
        todo = sorted(todo, key=hang, reverse=len(pools) > 1)  # stable: the store's order otherwise
        free: "queue.Queue[Dict[str, Any]]" = queue.Queue()
        for runners in pools:
            free.put(runners)

        def replay(r: BugReport) -> Any:
            runners = free.get()
            try:
                until = min(self.deadline, time.monotonic() + self.config.trial_timeout_s) if hang(r) else self.deadline
                self.local.until = until  # for a runner the replay starts (Campaign.runner)
                for runner in runners_of(runners):
                    runner.deadline = until
                return self.oracle.replay(r, runners)
            except (BudgetExhausted, RuntimeUnavailable):
                return None
            except RefusedError as exc:
                return exc
            finally:
                free.put(runners)
        with concurrent.futures.ThreadPoolExecutor(len(pools)) as threads:
            return list(zip(todo, threads.map(replay, todo)))

    def _replay_runners(self) -> List[Dict[str, Any]]:
        """The runner sets the replays run on: the lanes' (the main thread's joined to the
        first), or the main thread's where no lane handed any over (Ray actors keep theirs)."""
        pools = [p for p in self.handed if p] or [self.main_runners]
        if pools[0] is not self.main_runners:
            for key, r in list(self.main_runners.items()):
                if key in pools[0]:
                    r.close()
                else:
                    pools[0][key] = r
            self.main_runners.clear()
        return pools

    def close_runners(self) -> None:
        """Every worker the campaign started: the main thread's and those the lanes handed over."""
        for runners in [self.main_runners] + self.handed:
            for r in runners.values():
                r.close()
            runners.clear()

    def _record(self, result: TrialResult, log) -> Observation:
        new = []
        for finding, representative in result.findings:
            report, created = self.store.record(finding, representative, result.versions, self.id)
            if created:
                new.append(report.key)
        obs = result.observation.with_new(tuple(new))
        log.write(json.dumps(obs.to_json()) + "\n")
        log.flush()
        if self.progress is not None:
            self.progress(obs)
        return obs
