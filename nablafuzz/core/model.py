"""Core data types that cross module (and process) boundaries.

Everything here is a frozen dataclass or an enum and depends only on the standard library, so
the worker side (Python 3.10, numpy 1.26) can import it too.  JSON encoding lives in
`codec.py`; identity hashes are taken over that canonical JSON.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple, Union


class ArgKind(str, enum.Enum):
    TENSOR = "tensor"
    TENSOR_LIST = "tensor_list"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    CHOICE = "choice"
    SHAPE = "shape"
    AXIS = "axis"
    DTYPE = "dtype"


class Outcome(str, enum.Enum):
    OK = "ok"
    RAISED = "raised"
    UNSUPPORTED = "unsupported"
    CRASHED = "crashed"
    TIMEOUT = "timeout"


class Aspect(str, enum.Enum):
    STATUS = "status"
    VALUE = "value"
    DERIVATIVE = "derivative"


class Verdict(str, enum.Enum):
    CRASH = "crash"
    TIMEOUT = "timeout"
    STATUS_MISMATCH = "status_mismatch"
    VALUE_MISMATCH = "value_mismatch"
    DERIVATIVE_MISMATCH = "derivative_mismatch"
    NONFINITE_DERIVATIVE = "nonfinite_derivative"
    WRONG_SHAPE = "wrong_shape"
    UNDECLARED_SUPPORT = "undeclared_support"
    MISSING_SUPPORT = "missing_support"
    NONDETERMINISTIC = "nondeterministic"
    UNINITIALISED_READ = "uninitialised_read"
    NONFINITE_VALUE = "nonfinite_value"  # a model's loss (modelfuzz)
    PRECISION_MISMATCH = "precision_mismatch"  # a model in float16/bfloat16 against float32 (modelfuzz)
    NUMERICAL_DEFECT = "numerical_defect"  # an operation proved able to fail, and confirmed (numerics)
    RELEASE_CHANGE = "release_change"  # one trial, two releases of a library, a different result (campaign --versions)


class Severity(str, enum.Enum):
    """How bad a finding is, most severe first (verdict.severity assigns it; triage and root
    causes rank by it).  Stored and printed as its value."""

    CRASH = "crash"
    WRONG = "wrong"
    TAIL = "tail"
    ACCURACY = "accuracy"
    METADATA = "metadata"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def rank(self) -> int:
        """0 for the most severe."""
        return list(Severity).index(self)


# a cross-library finding's Fingerprint.oracle: "cross:<equivalence class>" (made and read here only)
CROSS_ORACLE = "cross:"


def cross_oracle(class_id: str) -> str:
    return CROSS_ORACLE + class_id


# a release-vs-release finding's Fingerprint.oracle: "release:<old>..<new>" (runtime names, jax@0.10.1)
RELEASE_ORACLE = "release:"


def release_oracle(old: str, new: str) -> str:
    return f"{RELEASE_ORACLE}{old}..{new}"


# Note [release change] (oracle/releases.py): what changed, a release finding's error_type; and
# its class on a trial, and over a campaign
BROKE, WORKS, VALUE = "broke", "works", "value"
NEW, FIXED, CHANGED = "new", "fixed", "changed"


def decisive(classes) -> str:
    """The class of a fingerprint seen with several: one trial whose reference decided (new,
    fixed) outweighs any number whose reference did not (changed)."""
    return NEW if NEW in classes else FIXED if FIXED in classes else CHANGED


def class_of(error_type: str) -> str:
    """What a release finding's error_type alone says of its class (a value change: changed)."""
    return {BROKE: NEW, WORKS: FIXED}.get(error_type, CHANGED)


class ReportStatus(str, enum.Enum):
    NEW = "new"
    OPEN = "open"
    FIXED = "fixed"
    FLAKY = "flaky"


@dataclass(frozen=True)
class TensorRecord:
    """A literal tensor: dtype name, shape and values in C order (floats exact via repr)."""

    dtype: str
    shape: Tuple[int, ...]
    values: Tuple[Union[float, int, bool], ...]

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


Scalar = Union[int, float, bool, str, None]
Value = Union[TensorRecord, Tuple[TensorRecord, ...], Tuple[int, ...], Scalar]


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


@dataclass(frozen=True)
class KnownIssue:
    """An upstream-documented disagreement.  `convention`: a library's documented choice, not a
    bug (classified as such, never reported); `when: kink` applies it only where the kink filter
    finds the input at a kink or tie."""

    reason: str
    url: str
    scenarios: Tuple[str, ...] = ()
    verdict: Optional[str] = None
    convention: bool = False
    when: str = ""
    order: Optional[int] = None  # only candidates of this derivative order (a vetted report's; vetting.py)


@dataclass(frozen=True)
class ArgSpec:
    name: str
    kind: ArgKind
    dtypes: Tuple[str, ...] = ()
    rank: Tuple[int, int] = (0, 3)
    same_shape_as: Optional[str] = None
    broadcast_with: Optional[str] = None
    domain: str = "real"
    differentiable: bool = True
    default: Scalar = None
    choices: Tuple[Scalar, ...] = ()
    low: Optional[float] = None
    high: Optional[float] = None
    keyword: bool = False
    length: Tuple[int, int] = (1, 3)
    dims: Tuple[str, ...] = ()
    of: Optional[str] = None
    optional: bool = False
    values: Tuple[float, ...] = ()
    structure: str = ""  # structures.STRUCTURES: lower_triangular, spd, sorted, ... ("" none)


@dataclass(frozen=True)
class ApiSpec:
    library: str
    name: str
    args: Tuple[ArgSpec, ...]
    dtypes: Tuple[str, ...] = ("float64", "float32")
    capabilities: Tuple[str, ...] = ("rev", "fwd", "rev.rev", "fwd.rev", "rev.fwd", "fwd.fwd")
    unsupported: Tuple[str, ...] = ()
    overloads: Tuple[Tuple[ArgSpec, ...], ...] = ()
    module: bool = False
    init: Tuple[Scalar, ...] = ()
    init_kwargs: Tuple[Tuple[str, Scalar], ...] = ()
    differentiable_outputs: Optional[Tuple[int, ...]] = None
    tolerance: Tuple[Tuple[str, Tolerance], ...] = ()
    known_issues: Tuple[KnownIssue, ...] = ()
    random: bool = False
    kinks: str = "subgradient"
    max_size: Optional[int] = None
    source: str = ""
    notes: str = ""
    # "declared": capabilities/unsupported are the library's own word (OpInfo), so a mode that
    # works or fails against them is a finding; "observed": probing saw them on a few trials,
    # and support that varies with the input (OneFlow's broadcast backward paths) is not one
    support: str = "declared"
    # where the output turns infinite, zero or NaN, per dtype (api_specs/regimes.yaml)
    edges: Tuple[Tuple[str, Tuple[float, ...]], ...] = ()
    # maps over leading batch axes of its tensor arguments, broadcasting them (batching.py)
    batched: bool = False
    # the elementwise function of reference.FUNCTIONS it computes ("" none): a 50-digit reference
    reference: str = ""
    # where judging uses it (Note [exact reference] in oracle/compare.py): "judge", wherever finite
    # differences cannot judge; "flat", only where they are exactly 0 and an AD result is not
    reference_use: str = "judge"

    @property
    def id(self) -> str:
        return f"{self.library}:{self.name}"


@dataclass(frozen=True)
class InputValue:
    name: str
    kind: ArgKind
    value: Value
    differentiable: bool = False
    keyword: bool = False


@dataclass(frozen=True)
class Trial:
    library: str
    api: str
    seed: int
    dtype: str
    inputs: Tuple[InputValue, ...]
    diff_outputs: Optional[Tuple[int, ...]] = None
    module: Optional[Tuple[Tuple[Scalar, ...], Tuple[Tuple[str, Scalar], ...]]] = None
    # axes permuted inside the call: (input name, permutation), and ("", perm) for the output
    # (a cross-library member with another layout: NHWC against the canonical NCHW)
    layout: Tuple[Tuple[str, Tuple[int, ...]], ...] = ()
    # inputs whose directions keep a structure inside the differentiated call (name, "symmetric")
    projections: Tuple[Tuple[str, str], ...] = ()
    regime: str = ""  # regimes.REGIMES: the value regime its float inputs were drawn from ("" the domain's)
    batched: bool = False  # its tensor arguments carry a batch, broadcast against each other (batching.py)

    @property
    def spec_id(self) -> str:
        return f"{self.library}:{self.api}"


@dataclass(frozen=True)
class ErrorInfo:
    type: str
    message: str


@dataclass(frozen=True, eq=False)
class ScenarioResult:
    """One scenario's observation.  Arrays are numpy arrays (hence eq=False)."""

    scenario: str
    outcome: Outcome
    value: Optional[float] = None
    scale: Optional[float] = None
    error_estimate: Optional[float] = None
    outputs: tuple = ()
    gradient: tuple = ()
    error: Optional[ErrorInfo] = None
    seconds: float = 0.0
    emulated: bool = False


@dataclass(frozen=True)
class Disagreement:
    aspect: Aspect
    scenarios: Tuple[str, str]
    order: int
    dtype: str
    tolerance: Tolerance
    actual: Optional[float] = None
    expected: Optional[float] = None
    max_abs: float = 0.0
    max_rel: float = 0.0
    where: str = ""
    detail: str = ""


@dataclass(frozen=True)
class FilterOutcome:
    filter: str
    dismissed: bool
    reason: str
    scenarios: Tuple[str, ...] = ()


STORED_HANG = "stored_hang"  # the filter outcome of a timeout taken as a stored hang (Note [stored hang])


@dataclass(frozen=True)
class Fingerprint:
    library: str
    api: str
    verdict: Verdict
    scenarios: Tuple[str, ...]
    order: int
    error_type: str = ""
    # "" for the in-library oracle; cross_oracle(<class>) when other libraries computing the
    # same function (an equivalence class, api_specs/equivalence.yaml) are the reference
    oracle: str = ""

    @property
    def cross_class(self) -> str:
        """The equivalence class of a cross-library finding ("" for an in-library one)."""
        return self.oracle[len(CROSS_ORACLE):] if self.oracle.startswith(CROSS_ORACLE) else ""

    @property
    def task(self) -> str:
        """What a campaign record lists the finding under: `cross:<class>`, else `library:api`."""
        return f"cross:{self.cross_class}" if self.cross_class else f"{self.library}:{self.api}"

    @property
    def releases(self) -> Tuple[str, ...]:
        """The two runtimes (old, new) of a release-vs-release finding (() for any other)."""
        return tuple(self.oracle[len(RELEASE_ORACLE):].split("..", 1)) if self.oracle.startswith(RELEASE_ORACLE) else ()


@dataclass(frozen=True)
class Candidate:
    """A disagreement (or status problem) of one trial before filters have spoken."""

    verdict: Verdict
    scenarios: Tuple[str, ...]
    order: int
    disagreements: Tuple[Disagreement, ...] = ()
    error_type: str = ""
    message: str = ""
    ambiguous: bool = False
    oracle: str = ""
    expected: Tuple[TensorRecord, ...] = ()  # cross-library value mismatch: the others' outputs


@dataclass(frozen=True)
class Finding:
    trial: Trial
    candidate: Candidate
    filters: Tuple[FilterOutcome, ...]
    severity: Severity
    message: str

    @property
    def fingerprint(self) -> Fingerprint:
        c = self.candidate
        return Fingerprint(self.trial.library, self.trial.api, c.verdict, culprit_key(c.scenarios), c.order,
                           c.error_type, c.oracle)


def culprit_key(scenarios: Sequence[str]) -> Tuple[str, ...]:
    """The scenarios a fingerprint names: the plain modes among the culprits (compositions of
    rev and fwd), else all of them.  A wrong VJP rule is one entry whether or not the campaign
    also ran the transforms and kernels that share it (jacrev, vmap, jit, kernels)."""
    plain = tuple(sorted(s for s in scenarios if all(p in ("rev", "fwd") for p in s.split("."))))
    return plain or tuple(sorted(scenarios))


@dataclass(frozen=True)
class Evidence:
    message: str
    severity: Severity
    disagreements: Tuple[Disagreement, ...] = ()
    filters: Tuple[FilterOutcome, ...] = ()
    error: Optional[ErrorInfo] = None
    expected: Tuple[TensorRecord, ...] = ()  # cross-library value mismatch: the other libraries' outputs


VETTING = ("bug", "convention", "false_positive")


@dataclass(frozen=True)
class Vetting:
    """A person's verdict on a report (`nablafuzz vet`): a convention or a false positive is never
    reported again (campaigns read it as a known issue with the note)."""

    verdict: str  # one of VETTING
    note: str
    when: str


@dataclass(frozen=True)
class BugReport:
    fingerprint: Fingerprint
    key: str
    status: ReportStatus
    first_seen: str
    last_seen: str
    occurrences: int
    versions_seen: Tuple[str, ...]
    trial: Trial
    evidence: Evidence
    original_size: int
    minimised_size: int
    campaigns: Tuple[str, ...] = ()
    notes: str = ""
    history: Tuple[str, ...] = field(default=())
    vetted: Optional[Vetting] = None
    # the versions (`library version` lines) its representative last reproduced on at a
    # campaign's end; none since the representative changed (Note [finishing budget])
    reproduced_on: Tuple[str, ...] = ()

    @property
    def standing(self) -> bool:
        """New or open: neither fixed nor flaky."""
        return self.status in (ReportStatus.NEW, ReportStatus.OPEN)


@dataclass(frozen=True)
class CampaignRecord:
    """What one campaign covered and saw; kept in the store for 'new / open / fixed since'."""

    id: str
    started: str
    finished: str
    libraries: Tuple[str, ...]
    versions: Tuple[str, ...]
    apis: Tuple[str, ...]
    seen: Tuple[str, ...]
    fixed: Tuple[str, ...] = ()
    complete: bool = False
    conventions: Tuple[Tuple[str, str, int], ...] = ()  # (api id, why, candidates) classified as conventions
    # --cross: (class, library, quantity, agreed, deviated, no verdict) over the campaign's trials
    agreement: Tuple[Tuple[str, str, str, int, int, int], ...] = ()
    # --validity-model: ("library pick", trials, valid, findings), pick unguided / model / explore,
    # and (API, trials its model predicted, predicted right, valid rate of the model's picks)
    picks: Tuple[Tuple[str, int, int, int], ...] = ()
    predicted: Tuple[Tuple[str, int, int, float], ...] = ()  # Predicted
    changes: Tuple[Tuple[str, str], ...] = ()  # --versions: (report key, class new / fixed / changed)


Predicted = Tuple[Tuple[str, int, int, float], ...]  # CampaignRecord.predicted
NOT_LEARNT_TRIALS = 20  # an API whose model picked this many trials ..
NOT_LEARNT_RATE = 0.7  # .. of which fewer than this share were valid: its constraints were not learnt


def mean_accuracy(predicted: Predicted) -> Optional[float]:
    """The validity models' held-out accuracy, averaged over APIs (None: no model predicted)."""
    return sum(right / n for _, n, right, _ in predicted) / len(predicted) if predicted else None


def not_learnt(predicted: Predicted) -> Tuple[Tuple[str, int, float], ...]:
    """(API, model picks, their valid rate) for each API whose constraints were not learnt."""
    return tuple((a, n, rate) for a, n, _, rate in predicted if n >= NOT_LEARNT_TRIALS and rate < NOT_LEARNT_RATE)


def records(value: Value) -> Tuple[TensorRecord, ...]:
    """The tensor records inside an input value (none for scalars)."""
    if isinstance(value, TensorRecord):
        return (value,)
    if isinstance(value, tuple):
        return tuple(v for v in value if isinstance(v, TensorRecord))
    return ()


@dataclass(frozen=True)
class Execution:
    trial: Trial
    results: Tuple[ScenarioResult, ...]
    death: Optional[Death] = None

    def get(self, scenario: str) -> Optional[ScenarioResult]:
        return next((r for r in self.results if r.scenario == scenario), None)

    @property
    def timed_out(self) -> bool:
        """Whether the worker was killed for the trial timeout."""
        return self.death is not None and self.death.kind == "timeout"


@dataclass(frozen=True)
class Death:
    """Why a worker stopped answering: a signal, an exit code, or the timeout."""

    kind: str  # "crashed", "timeout" or "protocol"
    detail: str
    log: str
