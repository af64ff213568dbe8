"""Root causes: the reports of a store grouped by what their evidence says, above fingerprints.

A fingerprint is one (API, verdict, culprit modes, order); one defect often has several: the
function and its `Tensor` method, the raw op and its wrapper (`torch.X`, `torch.special.X`,
`torch.nn.functional.X`), or one error raised by a shared backward formula under a dozen APIs.
Two reports belong to one root cause when:

- they name the same operation of one library (the API's last name, lower-cased, leading
  underscores, a `reduce_` prefix and the namespace dropped: `tf.reduce_prod` is `tf.raw_ops.Prod`)
  with the same verdict and order, and the culprit modes of one are among the other's (an
  emulated forward mode beside another culprit left out): one defect shows through more modes
  at one input than at another (a second derivative that overflows in fwd.fwd and rev.fwd at one
  trial, in fwd.rev too at another), whether the in-library or the cross-library oracle found
  it; or
- they are errors of one library (a status mismatch: not a crash, whose "killed by SIGSEGV"
  says nothing of its cause) with the same error type and the
  same normalised message (numbers, shapes, hex addresses and quoted names blanked); or
- they name the same operation with the same value or status mismatch, and one trial witnesses
  both: one disagreement seen through several modes, whose fingerprints are per mode or per
  error (the primal output of `rev`, `fwd` and `jit` each differing from the direct call's:
  three fingerprints of one trial).  A derivative mismatch's culprit modes are already one
  fingerprint.

The groups are the connected components of those relations.  Each root cause has a title,
its member reports, a best witness (most severe, then smallest trial, then most occurrences)
and a severity (model.Severity, most severe first).  Pure functions of the reports: nothing
is stored, so a new campaign regroups what it finds.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from ..core.codec import digest
from ..core.model import BugReport, ReportStatus, Severity, Verdict
from ..oracle.compare import EMULATED

# verdicts whose message is the library's own error text; a crash says only "killed by SIGSEGV",
# which two unrelated defects share, so crashes group by operation alone
ERRORS = (Verdict.STATUS_MISMATCH, Verdict.MISSING_SUPPORT, Verdict.WRONG_SHAPE)
PER_MODE = (Verdict.VALUE_MISMATCH, Verdict.STATUS_MISMATCH)  # fingerprints of one trial per mode or error


@dataclass(frozen=True)
class RootCause:
    id: str
    title: str
    library: str
    verdict: Verdict
    severity: str
    members: Tuple[str, ...]  # report keys, the witness first
    apis: Tuple[str, ...]

    @property
    def witness(self) -> str:
        return self.members[0]


def op_name(api: str) -> str:
    """`torch.Tensor.scatter_add` and `torch.scatter_add` -> 'scatteradd'; `tf.raw_ops.Mul` -> 'mul';
    `tf.reduce_prod` -> 'prod'; `tf.math.cumulative_logsumexp` and its raw op
    `tf.raw_ops.CumulativeLogsumexp` -> 'cumulativelogsumexp'."""
    name = api.rpartition(".")[2].rpartition(":")[2].lower()
    name = name[len("reduce_"):] if name.startswith("reduce_") and len(name) > len("reduce_") else name
    return name.replace("_", "")


_NOISE = [(re.compile(r"0x[0-9a-fA-F]+"), "<addr>"), (re.compile(r"\[[^\]]*\]"), "[…]"),
          (re.compile(r"'[^']*'|\"[^\"]*\""), "<name>"), (re.compile(r"\d+(\.\d+)?([eE][-+]?\d+)?"), "<n>"),
          (re.compile(r"\s+"), " ")]


def normalised(message: str) -> str:
    """An error message with what varies between inputs blanked, for grouping across APIs."""
    text = message.partition(" raised ")[2] or message  # after "direct call succeeded but rev raised"
    for pattern, blank in _NOISE:
        text = pattern.sub(blank, text)
    return text.strip()[:200]


def culprit_modes(r: BugReport) -> Tuple[str, ...]:
    """The fingerprint's culprit modes, less those of a forward mode emulated by two reverse passes
    (OneFlow's) where another is left: a reverse-mode defect shows in them too, and whether an
    emulation could run at all depends on the input."""
    emulated = {d.scenarios[0] for d in r.evidence.disagreements if EMULATED in d.detail}
    return tuple(s for s in r.fingerprint.scenarios if s not in emulated) or r.fingerprint.scenarios


def _keys(r: BugReport) -> List[Tuple]:
    fp = r.fingerprint
    keys: List[Tuple] = []
    if fp.verdict in PER_MODE:
        keys.append(("trial", fp.library, op_name(fp.api), fp.verdict, fp.order, digest(r.trial)))
    if fp.verdict in ERRORS and r.evidence.message:
        keys.append(("error", fp.library, fp.verdict, fp.error_type, normalised(r.evidence.message)))
    return keys


def severity_rank(severity: str) -> int:
    """Severity.rank of a severity or its value (an unknown one after every known one)."""
    try:
        return Severity(severity).rank
    except ValueError:
        return len(Severity)


def _witness_order(r: BugReport) -> tuple:
    return (r.status is ReportStatus.FIXED, severity_rank(r.evidence.severity), r.minimised_size, -r.occurrences, r.key)


def root_causes(reports: Sequence[BugReport]) -> List[RootCause]:
    """The connected components of the same-operation, same-trial and same-error relations, most
    severe first."""
    parent = list(range(len(reports)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    first: Dict[Tuple, int] = {}
    same_op: Dict[Tuple, List[int]] = {}
    for i, r in enumerate(reports):
        for k in _keys(r):
            j = first.setdefault(k, i)
            parent[find(i)] = find(j)
        fp = r.fingerprint  # a cross-library finding and the in-library one of an operation are one defect
        same_op.setdefault((fp.library, op_name(fp.api), fp.verdict, fp.order), []).append(i)
    for members in same_op.values():  # culprit modes nested: one defect seen through more or fewer modes
        modes = {i: set(culprit_modes(reports[i])) for i in members}
        for a, b in itertools.combinations(members, 2):
            if modes[a] <= modes[b] or modes[b] <= modes[a]:
                parent[find(a)] = find(b)
    groups: Dict[int, List[BugReport]] = {}
    for i, r in enumerate(reports):
        groups.setdefault(find(i), []).append(r)
    out = [_root_cause(sorted(g, key=_witness_order)) for g in groups.values()]
    return sorted(out, key=lambda c: (severity_rank(c.severity), c.library, c.apis, c.id))


def _root_cause(members: List[BugReport]) -> RootCause:
    w = members[0]
    fp = w.fingerprint
    apis = tuple(sorted({m.fingerprint.api for m in members}))
    shown = ", ".join(f"`{a}`" for a in apis[:3]) + (f" and {len(apis) - 3} more" if len(apis) > 3 else "")
    what = fp.verdict.value.replace("_", " ")
    modes = "+".join(fp.scenarios)
    title = f"{fp.library}: {what} in {modes} (order {fp.order}) of {shown}"
    return RootCause(digest(tuple(sorted(m.key for m in members)), 12), title, fp.library, fp.verdict,
                     min((m.evidence.severity for m in members), key=severity_rank),
                     tuple(m.key for m in members), apis)
