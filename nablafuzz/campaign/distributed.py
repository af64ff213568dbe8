"""`campaign --executor ray`: each worker thread's slots run in a Ray actor, on this machine or
on a cluster (the optional extra `nablafuzz[ray]`).

Note [ray executor]
The campaign's driver is today's loop (loop.py): its schedule, its worker threads and its main
thread, the only writer of the report store and the observation log.  A worker thread's lane is
a Ray actor (`ShardWorker`, Python 3.11) holding a `Campaign` of the driver's round, whose
runners start each library's own worker interpreter over the pipe protocol, as a thread's do;
Ray never runs inside a library runtime (OneFlow's is Python 3.10).  A slot is dealt as a
shard: one API and a range of trial indices, with what the thread running it would know (the
trials already done, the API's logged trials for its validity model, the signatures run
eagerly, the fingerprints confirmed and claimed, the runtimes given up).  The actor streams each
trial's result back as it is judged; the driver's thread queues it for the main thread, which
logs it, so a resumed campaign skips exactly what was logged.  The shard's end carries the
shared state back.  An API's further trials are dealt only after its first has come back, as
with threads, so both executors run the same trials with the same models and give the same
report keys and occurrence counts.

A killed actor is restarted by Ray (`max_restarts`) and its shard dealt again without the
trials whose results came back: the trial in flight re-runs, as after a kill -9 of a threaded
campaign, and nothing is counted twice.  Actors ask for one unit of the custom resource
`nablafuzz-<library>` of each library of the campaign, so they run only on machines that
declare it (`ray start --resources '{"nablafuzz-jax": 4}'`, where that runtime is installed);
a private cluster started here declares every library with one unit per worker.
"""
from __future__ import annotations

import collections
import os
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterator, List, Optional, Set, Tuple, Union

from ..core.config import Config
from ..core.errors import ConfigError, WorkerError
from ..core.model import ApiSpec, Fingerprint
from ..runtime.pool import runners_of
from ..runtime.process import RuntimeUnavailable
from ..specs.spec import SpecSet
from .loop import Campaign, ThreadLane
from .stats import Observation, TrialResult

RETRIES = 3  # deals of one shard after its actor died, before the campaign gives up


def resource(library: str) -> str:
    """The custom Ray resource a machine declares when `library`'s runtime is installed there."""
    return f"nablafuzz-{library}"


@dataclass(frozen=True)
class Shared:
    """What worker threads share (loop._Shared), as it travels to and from an actor."""

    signatures: FrozenSet[Tuple[str, int]] = frozenset()
    confirmed: FrozenSet[Fingerprint] = frozenset()
    claimed: FrozenSet[str] = frozenset()
    stopped: Tuple[Tuple[str, str], ...] = ()

    @staticmethod
    def of(s, spec_id: str = "") -> "Shared":
        """A snapshot of a campaign's shared state (loop._Shared; the signatures of `spec_id` only, if named)."""
        with s.lock:
            return Shared(frozenset(k for k in s.signatures if not spec_id or k[0] == spec_id), frozenset(s.confirmed),
                          frozenset(s.claimed), tuple(sorted(s.stopped.items())))


@dataclass(frozen=True)
class Shard:
    """One API's trials `start`..`stop`-1 less `done`, the first of them whatever the time, the
    others until `api_seconds` from now; `prior`: the API's trials so far, in the order they ran."""

    spec: ApiSpec
    start: int
    stop: int
    done: FrozenSet[int]
    seconds: float  # until the campaign's deadline
    api_seconds: float
    prior: Tuple[Observation, ...]
    shared: Shared


@dataclass(frozen=True)
class ShardEnd:
    """The last item of a shard: whether it ran to its end (False: the budget ran out), the
    shared state, and the runtime it gave up on, if any (library, why)."""

    finished: bool
    shared: Shared
    gave_up: Optional[Tuple[str, str]] = None


class ShardWorker:
    """The Ray actor: a `Campaign` of the driver's round that runs shards with its own runners."""

    def __init__(self, config: Config, specs: SpecSet, oracle, round: Tuple[str, str, int], python_path: Tuple[str, ...],
                 n: int):
        name, directory, number = round
        self.campaign = Campaign(config, specs, oracle, round=(name, _writable(Path(directory)), number))
        self.campaign.python_path = python_path
        self.lane = ThreadLane(self.campaign, n, set())  # its runners, as a worker thread's

    def run(self, shard: Shard) -> Iterator[Union[TrialResult, ShardEnd]]:
        c, spec = self.campaign, shard.spec
        began = time.monotonic()
        c.local.runners, c.local.n = self.lane.runners, self.lane.n
        c.deadline = began + shard.seconds
        for r in runners_of(self.lane.runners):
            r.deadline = c.deadline
        with c.shared.lock:
            c.shared.signatures, c.shared.confirmed = set(shard.shared.signatures), set(shard.shared.confirmed)
            c.shared.claimed, c.shared.stopped = set(shard.shared.claimed), dict(shard.shared.stopped)
        if c.guide is not None:
            c.guide.replay(spec, shard.prior, c.oracle.trial)
        done = {(spec.id, i) for i in shard.done}
        try:
            runner = c.oracle.runner(self.lane.runners, spec.library, self.lane.n)
            for result in c.trials(spec, runner, done, range(shard.start, shard.stop), began + shard.api_seconds):
                if result is None:
                    yield ShardEnd(False, Shared.of(c.shared))
                    return
                yield result
        except RuntimeUnavailable as exc:
            self.lane.drop(spec.library)
            yield ShardEnd(False, Shared.of(c.shared), (exc.library, str(exc)))
            return
        yield ShardEnd(True, Shared.of(c.shared))

    def close(self) -> None:
        self.lane.close()
        self.campaign.close_runners()


def _writable(directory: Path) -> Path:
    """The campaign directory for the actor's worker logs: the driver's (same machine, or a
    shared file system), else a private one on this machine."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    except OSError:
        return Path(tempfile.mkdtemp(prefix=f"nablafuzz-{directory.name}-"))


def _ray(private: bool):
    """Ray, imported; for a `private` cluster told first to keep to the loopback interface (Ray
    otherwise advertises, and listens on, this machine's network address)."""
    if private:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read when Ray is imported
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray (fix: pip install 'nablafuzz[ray]', or run with the default "
                          "--executor threads)") from None
    return ray


def _absolute(config: Config) -> Config:
    """The settings an actor gets: paths made absolute (an actor's working directory is Ray's)."""
    return replace(config, spec_dir=str(Path(config.spec_dir).resolve()),
                   store_dir=str(Path(config.store_dir).resolve()),
                   campaign_dir=str(Path(config.campaign_dir).resolve()),
                   spec_files=tuple(str(Path(f).resolve()) for f in config.spec_files),
                   equivalence_file=str(Path(config.equivalence_file).resolve()) if config.equivalence_file else "")


class RayExecutor:
    """The driver's side: joins (or starts) the Ray cluster and makes one actor per lane."""

    def __init__(self, campaign: Campaign, previous: List[Observation], done: Set[Tuple[str, int]]):
        config = campaign.config
        ray = self.ray = _ray(private=not config.address)
        self.campaign, self.done = campaign, done
        self.lock = threading.Lock()
        self.seen: Dict[str, List[Observation]] = collections.defaultdict(list)  # spec id -> its trials, in order
        for o in previous:
            self.seen[o.api].append(o)
        self.started = not ray.is_initialized()
        if self.started:
            if config.address:
                ray.init(address=config.address, log_to_driver=False, logging_level="ERROR")
            else:  # a private cluster on this machine, loopback only
                ray.init(num_cpus=max(config.workers, os.cpu_count() or 1), include_dashboard=False,
                         log_to_driver=False, logging_level="ERROR",
                         resources={resource(lib): config.workers for lib in config.libraries})
        needs = {resource(lib): 1 for lib in config.libraries}
        offered = ray.cluster_resources()
        missing = [r for r in needs if r not in offered]
        if missing:
            raise ConfigError(f"no machine of the Ray cluster at {config.address or 'this machine'} declares "
                              f"{', '.join(missing)} (fix: start the machines where those runtimes are installed with "
                              f"`ray start --resources '{{\"{missing[0]}\": 4}}'`, one unit per worker)")
        self.actor = ray.remote(ShardWorker).options(max_restarts=-1, num_cpus=1, resources=needs)
        # put once and held here, so a restarted actor finds its constructor's arguments (Ray
        # warns that a restart fails if they went out of scope)
        self.args = tuple(ray.put(a) for a in (_absolute(config), campaign.specs, campaign.oracle_class,
                                                (campaign.id, str(campaign.dir.resolve()), campaign.round),
                                                campaign.python_path))
        self.actors: List[Any] = []

    def lane(self, n: int) -> "RayLane":
        actor = self.actor.remote(*self.args, n)
        with self.lock:
            self.actors.append(actor)
        return RayLane(self, actor)

    def saw(self, obs: Observation) -> None:
        with self.lock:
            self.seen[obs.api].append(obs)

    def prior(self, spec: ApiSpec) -> Tuple[Observation, ...]:
        with self.lock:
            return tuple(self.seen.get(spec.id, ()))

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        if self.started:
            self.ray.shutdown()


class RayLane:
    """A worker thread's lane: its actor, dealt one shard at a time."""

    def __init__(self, executor: RayExecutor, actor):
        self.executor, self.actor = executor, actor

    def _merge(self, shared: Shared) -> None:
        s = self.executor.campaign.shared
        with s.lock:
            s.signatures |= shared.signatures
            s.confirmed |= shared.confirmed
            s.claimed |= shared.claimed
            for library, why in shared.stopped:
                s.stopped.setdefault(library, why)

    def drop(self, library: str) -> None:
        """Nothing to do: the actor closed the runner it gave up on (ShardWorker.run)."""

    def close(self) -> None:
        """The actor's library workers end with it (RayExecutor.close); closed here first so they
        exit cleanly."""
        ray = self.executor.ray
        try:
            ray.get(self.actor.close.remote(), timeout=30)
        except (ray.exceptions.RayError, TimeoutError):
            pass

    def run(self, spec: ApiSpec, indices: range, api_deadline: float) -> bool:
        ray, c = self.executor.ray, self.executor.campaign
        got: Set[int] = set()
        for attempt in range(RETRIES + 1):
            now = time.monotonic()
            shard = Shard(spec, indices.start, indices.stop,
                          frozenset(i for i in indices if (spec.id, i) in self.executor.done or i in got),
                          max(0.0, c.deadline - now), max(0.0, api_deadline - now), self.executor.prior(spec),
                          Shared.of(c.shared, spec.id))
            try:
                for ref in self.actor.run.options(num_returns="streaming").remote(shard):
                    item = ray.get(ref)
                    if isinstance(item, ShardEnd):
                        self._merge(item.shared)
                        if item.gave_up is not None:
                            raise RuntimeUnavailable(*item.gave_up)
                        return item.finished
                    got.add(item.observation.index)
                    self.executor.saw(item.observation)
                    c.results.put(item)
                    if c.shared.stop.is_set():  # Ctrl-C: the actor is killed when the campaign closes
                        return False
            except ray.exceptions.RayTaskError as exc:  # the engine failed in the actor: as in a thread
                raise (exc.cause if isinstance(exc.cause, BaseException) else WorkerError(str(exc))) from None
            except ray.exceptions.RayActorError as exc:  # killed or lost: Ray restarts it; the shard is dealt again
                if attempt == RETRIES:
                    raise WorkerError(f"the Ray actor running {spec.id} died {RETRIES + 1} times; last: {exc}") from None
                with open(c.dir / "engine-errors.log", "a") as log:
                    log.write(f"{spec.id}: Ray actor lost ({type(exc).__name__}), shard dealt again "
                              f"without the {len(got)} trials that came back\n")
        return False
