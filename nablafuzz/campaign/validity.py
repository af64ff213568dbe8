"""Learned input validity (`campaign --validity-model`): one small classifier per API, trained
on the campaign's own trials, picks which of a few candidate trials to run.

Note [validity model]
A third of JAX and TensorFlow trials used to be invalid: the call raises on inputs its
documentation forbids (ranks, broadcasting, an axis out of range), and such a trial compares
nothing.  Each API's trials are labelled as they are judged (`label`: valid as the summary's
valid rate counts, a non-empty derivative was compared, and the worker did not die) and
described by features of the trial alone (specs/features.py, Note [validity features]).
Once an API has MIN_EACH invalid labelled trials and MIN_VALID valid ones (however few
trials that takes: its first dozen trials used to run unguided, 10 points of the valid rate of
an API run 60 times), a random forest (scikit-learn) is fitted on its last KEEP trials, and refitted
whenever its rows have grown by REFIT.  APIs whose trials are nearly all valid (most of them)
run as before (Note [validity where needed]).

Note [validity candidates]
With a model, a trial slot draws CANDIDATES trials, or more for an API whose trials are rarely
valid: enough that one of them is valid with probability TARGET at the valid rate of the API's
trials not picked by the model (those before it, and those exploring), up to MAX_CANDIDATES (at a 6 % valid rate 4 candidates hold a valid one a fifth of the time).
Candidate 0 is the unguided trial; the others have sub-seeds of their own, and in a pooled
campaign rotating signatures of their own (specs/pool.py).  The slot runs the one the model
thinks likeliest valid, preferring the lowest
candidate within MARGIN of the best (so a campaign whose unguided trial looks valid runs it,
and keeps its signature pool).  With probability EPSILON (drawn from the trial's seed) it runs
a uniformly drawn candidate instead, so that crashes on invalid inputs stay reachable and the
model keeps seeing both labels.  The observation log records the candidate run, so every trial
regenerates exactly from (spec, seed, index, candidate), and a resumed campaign refits its
models from the log.  The model's probability for the trial it picked is logged too: compared
with the trial's label it gives the held-out accuracy (each trial is predicted before it runs).
"""
from __future__ import annotations

import collections
import importlib.util
import math
import threading
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, Iterable, List, Optional, Set, Tuple

import numpy as np

from ..core.errors import ConfigError
from ..core.model import ApiSpec, Trial
from ..oracle.compare import empty_derivative
from ..specs import pool
from ..specs.features import Features, features
from .stats import Observation, label

# Note [validity cold start]
# An API has no model until one of its trials is valid, and in a pooled campaign its trials
# share a few signatures (specs/pool.py): an API whose pool holds no valid signature (an axes
# argument longer than every pooled rank) used to run candidate 0 for a hundred trials or more
# before its third valid one (the model then waited for three).  So once an API without a
# model has MIN_EACH invalid trials, its slots run a uniformly drawn candidate (each with a
# signature of its own), as exploring does, until the model exists; and the model is fitted
# from the first valid trial (MIN_VALID): a forest that has seen one valid trial already ranks
# the candidates like it first, and each valid pick it makes sharpens the next fit.  An API
# none of whose first HOPELESS drawn trials was valid (a signature or value constraint no
# candidate meets, or an API with no derivative to compare) gets no more guided trials: at a
# valid rate of 4 % all of them are invalid with probability 1.7 %.  The summary lists it among
# the APIs whose constraints were not learnt.

# Note [validity where needed]
# A model costs the orchestrator a fit now and then and, per trial, the candidates' generation,
# features and a prediction: 58 % of its CPU in a two-worker torch campaign whose trials were
# 99 % valid anyway, and in a pooled campaign each candidate other than 0 brings signatures of
# its own to compile.  So an API whose drawn trials (not picked by a model) are valid at least
# NEED of the time, over at least MIN_ROWS of them, runs its unguided trial, as an API without a
# model does, and is neither predicted nor refitted; every trial it runs is drawn, so its rate
# stays current, and once it falls below NEED (another signature in its pool) the model is
# refitted and steers again.  Guidance could raise such an API's valid rate by a tenth at most.
# An API one of whose drawn trials killed its worker stays steered whatever its rate: a restart
# costs the time of tens of trials (`label`).

# Note [validity edges]
# An empty trial compares nothing, so it is labelled invalid (stats.label) and the models steer
# away from it; yet gradients and forward modes fail on empty tensors that the call accepts
# (tf.gather's and tf.signal.idct's, vetted bugs), and a guided TensorFlow bench missed one
# such fingerprint that its unguided half found.  The same holds for a pooled campaign's other
# edge signatures (specs/pool.py): the smallest (0-d, size 1) and the largest are where
# degenerate-shape failures live, and a model that learnt "rank 2 only" never picks a 0-d
# candidate again.  So each API's first trial of each edge drawn as candidate 0 runs, whatever
# the model says: an empty one (its derivative is empty), and in a pooled campaign one of the
# smallest and one of the largest signature, each fixed for the campaign, so one trial covers
# it; at most three trials per API.  Later ones are the model's to pick or exploration's to
# draw.  The guide learns which edges an API ran from any trial it is told of, so a resumed
# campaign decides as the first run did.

CANDIDATES = 4
MAX_CANDIDATES = 32
TARGET = 0.95
EPSILON = 0.05
MARGIN = 0.05
MIN_ROWS = 12
MIN_EACH = 2  # invalid trials before a model (and before the cold start draws candidates)
MIN_VALID = 1  # valid trials before a model (Note [validity cold start])
KEEP = 400
REFIT = 1.25
TREES = 20
HOPELESS = 100  # trials drawn, none of them valid: the API's guided trials end (Note [validity cold start])
NEED = 0.9  # an API whose drawn trials are valid this often runs unguided (Note [validity where needed])

UNGUIDED, MODEL, EXPLORE = "", "model", "explore"


def _sklearn() -> bool:
    return importlib.util.find_spec("sklearn") is not None


def validity_on(config) -> bool:
    """Whether a campaign is guided: --validity-model (which needs scikit-learn, the `learn`
    extra), or the profile's default (None: when scikit-learn is installed); never --cross,
    whose trials are one per equivalence class, run by every member, nor --versions, whose
    trials are the same in both releases."""
    if config.cross or config.versions or config.validity_model is False:
        return False
    if config.validity_model and not _sklearn():
        raise ConfigError("--validity-model needs scikit-learn (fix: pip install 'nablafuzz[learn]', "
                          "or run with --no-validity-model)")
    return _sklearn()


@dataclass(frozen=True)
class Pick:
    """The trial a slot runs: its candidate number, how it was picked (UNGUIDED: the API has no
    model; MODEL; EXPLORE: uniformly), the model's probability that it is valid (-1: none), and
    its features where the pick computed them (for `Guide.learn`)."""

    trial: Trial
    candidate: int = 0
    how: str = UNGUIDED
    guess: float = -1.0
    row: Optional[Features] = None


def argument_names(spec: ApiSpec) -> Tuple[str, ...]:
    """Every argument name of the API's overloads (`features` marks those a trial lacks)."""
    return tuple(dict.fromkeys(a.name for args in (spec.args,) + spec.overloads for a in args))


@dataclass
class _Api:
    rows: Deque[Features] = field(default_factory=lambda: collections.deque(maxlen=KEEP))
    labels: Deque[bool] = field(default_factory=lambda: collections.deque(maxlen=KEEP))
    seen: int = 0  # rows ever added
    drawn: int = 0  # trials not picked by the model (before it, or exploring) ..
    drawn_valid: int = 0  # .. and how many of them were valid
    died: int = 0  # .. and how many killed their worker
    edges: Set[str] = field(default_factory=set)  # the edges its trials ran, and "" (Note [validity edges])
    fitted_at: int = 0  # `seen` at the last fit
    model: object = None  # a fitted sklearn Pipeline (DictVectorizer, RandomForestClassifier)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def needed(self) -> bool:
        """Whether the API's trials are steered (Note [validity where needed]); under `lock`."""
        return self.drawn < MIN_ROWS or self.drawn_valid < NEED * self.drawn or self.died > 0


class Guide:
    """The campaign's validity models, one per API; thread-safe (one lock per API)."""

    def __init__(self, seed: int = 0, pooled: Callable[[str], bool] = lambda library: False):
        self.seed = seed
        self.pooled = pooled  # whether a library's trials draw pooled signatures (specs/pool.py)
        self._apis: Dict[str, _Api] = collections.defaultdict(_Api)
        self._lock = threading.Lock()

    def warm(self) -> threading.Thread:
        """scikit-learn imported in a thread started now (1-2 s, while the workers start): the
        first fit would otherwise import it in a trial slot, its worker waiting.  Join it."""
        thread = threading.Thread(target=classifier, args=(self.seed,), name="nablafuzz-sklearn-import")
        thread.start()
        return thread

    def _api(self, spec_id: str) -> _Api:
        with self._lock:
            return self._apis[spec_id]

    def pick(self, spec: ApiSpec, make: Callable[[int], Trial]) -> Pick:
        """The trial to run of the candidates `make(0)`, `make(1)`, .. (Note [validity candidates])."""
        first = make(0)
        api = self._api(spec.id)
        with api.lock:
            if not self.edges(spec.library) <= api.edges:  # Note [validity edges]: one still to run
                edge = self.edge(first)
                if edge and edge not in api.edges:
                    return Pick(first)
            model, k = api.model, _candidates(api.drawn_valid / max(1, api.drawn))
            cold = model is None and api.drawn - api.drawn_valid >= MIN_EACH  # Note [validity cold start]
            needed = api.needed()
        if not needed or (model is None and not cold):
            return Pick(first)
        names = argument_names(spec)
        rng = np.random.default_rng([first.seed, 7])
        if cold or rng.random() < EPSILON:
            c = int(rng.integers(0, k))
            trial = make(c) if c else first
            row = features(trial, names)
            return Pick(trial, c, EXPLORE, float(_valid_probability(model, [row])[0]) if model else -1.0, row)
        trials: List[Trial] = []
        rows: List[Features] = []
        p = np.empty(0)
        while True:  # more candidates while none looks valid (the valid rate was overestimated)
            trials += [first if c == 0 else make(c) for c in range(len(trials), k)]
            more = [features(t, names) for t in trials[len(rows):]]
            rows += more
            p = np.concatenate([p, _valid_probability(model, more)])
            if p.max() >= 0.5 or k >= MAX_CANDIDATES:
                break
            k = min(MAX_CANDIDATES, 2 * k)
        c = next(i for i in range(len(trials)) if p[i] >= p.max() - MARGIN)
        return Pick(trials[c], c, MODEL, float(p[c]), rows[c])

    def learn(self, spec: ApiSpec, trial: Trial, valid: bool, how: str = UNGUIDED,
              row: Optional[Features] = None, died: bool = False) -> None:
        """One more labelled trial of `spec`, picked `how` (`row`: its features, if known;
        `died`: it killed its worker); refits its model when due."""
        row = row if row is not None else features(trial, argument_names(spec))
        api = self._api(spec.id)
        with api.lock:
            if not self.edges(spec.library) <= api.edges:
                api.edges.add(self.edge(trial))
            if how != MODEL:  # drawn as any candidate is: these give the valid rate of a draw
                api.drawn += 1
                api.drawn_valid += bool(valid)
                api.died += bool(died)
            api.rows.append(row)
            api.labels.append(bool(valid))
            api.seen += 1
            n_valid = sum(api.labels)
            due = n_valid >= MIN_VALID and len(api.labels) - n_valid >= MIN_EACH \
                and (api.model is None or api.seen >= api.fitted_at * REFIT) and api.needed()
            if due:
                api.model = _fit(list(api.rows), list(api.labels), self.seed)
                api.fitted_at = api.seen

    def edges(self, library: str) -> Set[str]:
        """The edges each API of `library` runs once (Note [validity edges])."""
        return {pool.EMPTY, pool.SMALLEST, pool.LARGEST} if self.pooled(library) else {pool.EMPTY}

    def edge(self, trial: Trial) -> str:
        """The edge `trial` stands for (Note [validity edges]): EMPTY if its derivative is empty,
        else a pooled trial's edge signature (SMALLEST, LARGEST, or EMPTY with a non-empty
        derivative), else ""."""
        if empty_derivative(trial):
            return pool.EMPTY
        return pool.edge(trial.seed) if self.pooled(trial.library) else ""

    def hopeless(self, spec_id: str) -> bool:
        """Whether none of the API's first HOPELESS drawn trials was valid (Note [validity cold start])."""
        api = self._api(spec_id)
        with api.lock:
            return api.model is None and api.drawn >= HOPELESS and api.drawn_valid == 0

    def resume(self, specs: Dict[str, ApiSpec], observations: Iterable[Observation],
               make: Callable[[ApiSpec, int, int], Trial]) -> None:
        """Refits from a resumed campaign's log: each logged trial regenerated by
        `make(spec, index, candidate)` and labelled as it was judged."""
        by_api: Dict[str, List[Observation]] = collections.defaultdict(list)
        for o in observations:
            if o.api in specs:
                by_api[o.api].append(o)
        for api, obs in by_api.items():
            if len({label(o) for o in obs}) == 1:  # one label: no model (and no regeneration) needed
                state = self._api(api)  # its counts kept (Note [validity cold start])
                state.drawn = state.seen = len(obs)
                state.drawn_valid = sum(label(o) for o in obs)
                state.died = sum(bool(o.death) for o in obs)
                unreplayed = obs
            else:
                self.replay(specs[api], obs[-KEEP:], make)
                state, unreplayed = self._api(api), obs[:-KEEP]
            # the trials `learn` did not see may hold the API's edges (Note [validity edges])
            edges = self.edges(specs[api].library)
            if state.drawn_valid == state.seen and edges == {pool.EMPTY}:
                continue  # no valid trial is empty, and an unpooled one has no other edge
            for o in unreplayed:
                if edges <= state.edges:
                    break
                state.edges.add(self.edge(make(specs[api], o.index, o.candidate)))

    def replay(self, spec: ApiSpec, observations: Iterable[Observation], make: Callable[[ApiSpec, int, int], Trial]) -> None:
        """`spec`'s model rebuilt from its trials so far, in the order they ran: the state of
        the guide that ran them (a Ray actor taking over an API, campaign/distributed.py)."""
        with self._lock:
            self._apis.pop(spec.id, None)
        for o in observations:
            self.learn(spec, make(spec, o.index, o.candidate), label(o), o.pick, died=bool(o.death))

    def fitted(self) -> int:
        with self._lock:
            return sum(a.model is not None for a in self._apis.values())


def _candidates(valid_rate: float) -> int:
    """How many candidates give one valid with probability TARGET at this valid rate."""
    if valid_rate >= 1 - (1 - TARGET) ** (1 / CANDIDATES):
        return CANDIDATES
    if valid_rate <= 0:
        return MAX_CANDIDATES
    return min(MAX_CANDIDATES, max(CANDIDATES, math.ceil(math.log(1 - TARGET) / math.log(1 - valid_rate))))


def classifier(seed: int):
    """An unfitted model: features (dicts) one-hot encoded, then a small random forest."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.pipeline import make_pipeline
    return make_pipeline(DictVectorizer(sparse=False),
                         RandomForestClassifier(n_estimators=TREES, random_state=seed, n_jobs=1))


def _fit(rows: List[Features], labels: List[bool], seed: int):
    return classifier(seed).fit(rows, labels)


def _valid_probability(model, rows: List[Features]) -> np.ndarray:
    """The forest's probability that each row is valid, as its `predict_proba` gives it (the
    mean of its trees'), without the job dispatch that costs 4 ms a call: a guided trial
    predicts 4 to 32 candidates, one call each time the candidates double."""
    vectorizer, forest = model[0], model[-1]
    x = np.ascontiguousarray(vectorizer.transform(rows), dtype=np.float32)
    proba = sum(tree.predict_proba(x, check_input=False) for tree in forest.estimators_) / len(forest.estimators_)
    return proba[:, list(forest.classes_).index(True)]
