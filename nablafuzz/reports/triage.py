"""Triage: the report store rendered as markdown for library maintainers.

Reads only JSON (bug reports and `_campaigns/*.json` campaign records), so it works with no
deep-learning library installed.  Reports are grouped library -> verdict -> API, the most
severe first (crash, wrong, accuracy); each says whether it is new, still open, fixed or not
seen since the previous campaign, and carries its evidence, filter verdicts, replay command and
repro script.  Unreadable files are named in a Problems section, never fatal.

A repro script calls the report's API only when a loaded spec (the spec directory, `--specs`
files, or a member of the equivalence map) declares it: report files are data, and a report
naming `os:system` gets no script.
"""
from __future__ import annotations

import functools
import json
import re
import shlex
from collections import defaultdict
from pathlib import Path
from typing import Container, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

from ..core.codec import from_json
from ..core.fingerprint import describe as describe_fingerprint
from ..core.model import (NOT_LEARNT_RATE, VETTING, BugReport, CampaignRecord, Disagreement, ReportStatus, Verdict, class_of,
                          mean_accuracy, not_learnt)
from ..core.errors import SpecError
from ..core.quantities import describe as describe_scenario
from ..libraries import record
from ..specs.models import MODELS_FILE, ModelSpec, load_model_specs, model_name
from .modelrepro import render_model
from .repro import ReproError, render, summarise_input
from .rootcause import RootCause, root_causes, severity_rank
from .store import Store, now, report_path, write_atomic
from .vetting import dismissed

CAMPAIGNS_DIR = "_campaigns"
CAMPAIGN_SCHEMA = 1
VERDICT_RANK = {v: i for i, v in enumerate((
    Verdict.CRASH, Verdict.TIMEOUT, Verdict.UNINITIALISED_READ, Verdict.NONFINITE_DERIVATIVE,
    Verdict.DERIVATIVE_MISMATCH, Verdict.WRONG_SHAPE,
    Verdict.VALUE_MISMATCH, Verdict.STATUS_MISMATCH, Verdict.MISSING_SUPPORT, Verdict.NONDETERMINISTIC,
    Verdict.UNDECLARED_SUPPORT))}
CHANGES = ("new", "still open", "fixed", "not seen")


def read_campaigns(store_root: Path) -> Tuple[List[CampaignRecord], List[str]]:
    """Campaign records, oldest first, and one warning per unreadable file (none is fatal)."""
    records, warnings = [], []
    for path in sorted((Path(store_root) / CAMPAIGNS_DIR).glob("*.json")):
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or data.get("schema") != CAMPAIGN_SCHEMA or "campaign" not in data:
                raise ValueError(f"field 'schema' must be {CAMPAIGN_SCHEMA} with a 'campaign' object")
            records.append(from_json(CampaignRecord, data["campaign"]))
        except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
            warnings.append(f"{path}: unreadable campaign record ({exc}); ignored. Fix: restore it or delete it")
    return sorted(records, key=lambda r: (r.started, r.id)), warnings


def change(report: BugReport, latest: Optional[CampaignRecord]) -> str:
    """new / still open / fixed / not seen (covered by the latest campaign) / not covered."""
    if report.status is ReportStatus.FIXED or (latest is not None and report.key in latest.fixed):
        return "fixed"
    if latest is None:
        return {ReportStatus.NEW: "new", ReportStatus.OPEN: "still open"}.get(report.status, report.status.value)
    if latest.id in report.campaigns or report.key in latest.seen:
        return "new" if report.campaigns[:1] == (latest.id,) else "still open"
    fp = report.fingerprint
    return "not seen" if fp.task in latest.apis or fp.api in latest.apis else "not covered"


def _severity(report: BugReport) -> int:
    return severity_rank(report.evidence.severity)


def _report_order(report: BugReport) -> tuple:
    return (report.status is ReportStatus.FIXED, _severity(report), -report.occurrences, report.key)


def _cell(x) -> str:
    if x is None:
        return "—"
    text = f"{x:.10g}" if isinstance(x, float) else str(x)
    return re.sub(r"\s+", " ", text).replace("|", "\\|")


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _header(root: Path, reports: Sequence[BugReport], campaigns: Sequence[CampaignRecord]) -> List[str]:
    lines = [f"# nablafuzz triage: `{root}`", "", f"Generated {now()} from {len(reports)} report(s)."]
    if campaigns:
        latest = campaigns[-1]
        state = "complete" if latest.complete else "incomplete"
        previous = f"; previous `{campaigns[-2].id}`" if len(campaigns) > 1 else ""
        lines += [f"Latest campaign `{latest.id}` ({latest.started} .. {latest.finished}, {state}, "
                  f"{len(latest.apis)} API(s)){previous}.",
                  f"Library versions (latest campaign): {', '.join(latest.versions) or 'unknown'}."]
    else:
        lines.append("No campaign records: new / still open are taken from each report's status.")
    vetted = [r.vetted.verdict for r in reports if r.vetted is not None]
    lines.append(f"Vetted by hand (`nablafuzz vet`): {len(vetted)} of {len(reports)} report(s)"
                 + (": " + ", ".join(f"{vetted.count(v)} {v.replace('_', ' ')}" for v in VETTING if v in vetted) if vetted else "")
                 + "; conventions and false positives are left out of the root causes.")
    seen: Dict[str, set] = defaultdict(set)
    for r in reports:
        seen[r.fingerprint.library].update(r.versions_seen)
    if seen:
        per_library = (f"{lib}: {', '.join(sorted(v)) or 'unknown'}" for lib, v in sorted(seen.items()))
        lines.append(f"Versions seen in reports: {'; '.join(per_library)}.")
    return lines + [""]


def _summary(reports: Sequence[BugReport], changes: Dict[str, str]) -> List[str]:
    rows: Dict[Tuple[str, Verdict], List[BugReport]] = defaultdict(list)
    for r in reports:
        rows[(r.fingerprint.library, r.fingerprint.verdict)].append(r)
    lines = ["## Summary", "", "| library | verdict | reports | occurrences | " + " | ".join(CHANGES) + " |",
             "|---|---|---:|---:|" + "---:|" * len(CHANGES)]
    for (lib, verdict), rs in sorted(rows.items(), key=lambda kv: (kv[0][0], VERDICT_RANK.get(kv[0][1], 99))):
        counts = [sum(changes[r.key] == c for r in rs) for c in CHANGES]
        lines.append(f"| {lib} | {verdict.value} | {len(rs)} | {sum(r.occurrences for r in rs)} | "
                     + " | ".join(str(n) for n in counts) + " |")
    if not rows:
        lines.append("| — | — | 0 | 0 |" + " 0 |" * len(CHANGES))
    return lines + [""]


def _conventions(campaigns: Sequence[CampaignRecord]) -> List[str]:
    """Candidates the convention table classified, per library from its latest campaign: shown,
    never mixed with bugs."""
    latest: Dict[str, CampaignRecord] = {}
    for c in campaigns:
        for lib in c.libraries:
            latest[lib] = c
    rows = sorted({row for lib, c in latest.items() for row in c.conventions if row[0].split(":")[0] in (lib, "cross")})
    if not rows:
        return []
    lines = ["## Conventions (documented library behaviour, not bugs)", "",
             "Disagreements explained by a row of the convention table (`api_specs/conventions.yaml`); "
             "each names its upstream reference.", "",
             "| API | candidates | convention |", "|---|---:|---|"]
    lines += [f"| `{api}` | {n} | {_cell(why)} |" for api, why, n in rows]
    return lines + [""]


def _validity(campaigns: Sequence[CampaignRecord]) -> List[str]:
    """The latest --validity-model campaign: valid rates by how trials were picked, per library,
    the models' held-out accuracy, and the APIs whose constraints they did not learn."""
    latest = next((c for c in reversed(campaigns) if c.picks), None)
    if latest is None:
        return []
    lines = ["## Input validity model", "",
             f"Campaign `{latest.id}` picked trials with a per-API classifier of valid inputs "
             "(`--validity-model`): `unguided` trials ran before an API had a model (or had no invalid "
             "trials), `model` ones are the classifier's pick among candidates, `explore` ones a random "
             "candidate.", "", "| library, pick | trials | valid | valid rate | findings |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {t} | {v} | {v / t:.1%} | {f} |" for k, t, v, f in latest.picks if t]
    if latest.predicted:
        n, right = sum(p[1] for p in latest.predicted), sum(p[2] for p in latest.predicted)
        lines += ["", f"Held-out accuracy (each trial predicted before it ran): {mean_accuracy(latest.predicted):.1%} "
                      f"averaged over {len(latest.predicted)} APIs ({right} of {n} trials)."]
        weak = not_learnt(latest.predicted)
        if weak:
            lines += ["", f"Constraints not learnt (the model's picks were under {NOT_LEARNT_RATE:.0%} valid; a probe "
                          "hint may help): " + ", ".join(f"`{a}` ({r:.0%} of {m})" for a, m, r in weak) + "."]
    return lines + [""]


def _cross(campaigns: Sequence[CampaignRecord]) -> List[str]:
    """Per equivalence class of the latest cross-library campaign: which libraries agree, which
    deviate (in which quantities), and how often no verdict was possible."""
    latest = next((c for c in reversed(campaigns) if c.agreement), None)
    if latest is None:
        return []
    table: Dict[str, Dict[str, List]] = defaultdict(lambda: defaultdict(lambda: [0, {}, 0]))
    for cls, lib, quantity, agreed, deviated, none in latest.agreement:
        row = table[cls][lib]
        row[0] += agreed
        row[2] += none
        if deviated:
            row[1][quantity] = row[1].get(quantity, 0) + deviated
    lines = ["## Cross-library agreement", "",
             f"Campaign `{latest.id}`: each class's libraries computed the same quantities (outputs, VJP, JVP, "
             "second order) on the same inputs. Counts are quantities judged; a library deviates when it "
             "disagrees with all the others while they agree (and finite differences side with them).", "",
             "| class | agree | deviate | no verdict |", "|---|---|---|---|"]
    for cls in sorted(table):
        libs = table[cls]
        agree = ", ".join(f"{lib} ({v[0]})" for lib, v in sorted(libs.items()) if not v[1]) or "—"
        dev = "; ".join(f"{lib}: " + ", ".join(f"{q} {n}" for q, n in sorted(v[1].items()))
                        for lib, v in sorted(libs.items()) if v[1]) or "—"
        none = ", ".join(f"{lib} ({v[2]})" for lib, v in sorted(libs.items()) if v[2]) or "—"
        lines.append(f"| `{cls}` | {agree} | {_cell(dev)} | {none} |")
    return lines + [""]


def _problems(errors: Iterable[Exception], warnings: Sequence[str]) -> List[str]:
    items = [f"- {_one_line(str(e))}" for e in errors] + [f"- warning: {_one_line(w)}" for w in warnings]
    return ["## Problems", "", *items, ""] if items else []


def _evidence(ds: Sequence[Disagreement]) -> List[str]:
    if not ds:
        return ["No numeric evidence (a status verdict)."]
    lines = ["| scenarios | aspect | actual | expected | max_abs | max_rel | atol | rtol | dtype | where |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for d in ds:
        pair = " vs ".join(f"{s} ({describe_scenario(s)})" if _known(s) else s for s in d.scenarios)
        lines.append("| " + " | ".join(_cell(x) for x in (
            pair, d.aspect.value, d.actual, d.expected, f"{d.max_abs:.3g}", f"{d.max_rel:.3g}",
            f"{d.tolerance.atol:.3g}", f"{d.tolerance.rtol:.3g}", d.dtype, d.where or "—")) + " |")
    return lines


def _known(scenario: str) -> bool:
    try:
        describe_scenario(scenario)
    except KeyError:
        return False
    return True


def _filters(report: BugReport) -> List[str]:
    if not report.evidence.filters:
        return ["- Filters: none ran."]
    return ["- Filters:"] + [f"  - `{f.filter}`: {'dismissed' if f.dismissed else 'kept'} — {_one_line(f.reason)}"
                            for f in report.evidence.filters]


def declared_apis(spec_dir: Path, spec_files: Sequence[Path], libraries: Iterable[str]) -> FrozenSet[str]:
    """The ids (`library:api`) that loaded specs declare: what repro scripts may call."""
    from ..specs.equivalence import EQUIVALENCE_FILE, load_classes
    from ..specs.spec import load_specs
    specs = load_specs(Path(spec_dir), sorted(set(libraries)), [Path(f) for f in spec_files])
    members = {m.id for c in load_classes(Path(spec_dir) / EQUIVALENCE_FILE) for m in c.members}
    return frozenset({s.id for s in specs.specs} | members)


@functools.lru_cache(maxsize=1)
def _models() -> Dict[str, ModelSpec]:
    """The shipped model specs (models/models.yaml of a checkout), for model reports' scripts."""
    try:
        return load_model_specs([MODELS_FILE]) if MODELS_FILE.exists() else {}
    except SpecError:
        return {}


def _repro(report: BugReport, declared: Container[str]) -> List[str]:
    try:
        script = render_model(report, _models()) if model_name(report.fingerprint.api) else render(report, declared)
    except ReproError as exc:
        return [f"Repro script: not available ({_one_line(str(exc))})."]
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", script)), default=0))
    return ["<details><summary>Repro script</summary>", "", f"{fence}python", script.rstrip("\n"), fence, "",
            "</details>"]


def _facts(report: BugReport, path: Path, what: str) -> List[str]:
    t, ev = report.trial, report.evidence
    shrunk = (f"shrunk from {report.original_size} to {report.minimised_size} elements"
              if report.minimised_size < report.original_size else f"not shrunk ({report.minimised_size} elements)")
    lines = [f"- Fingerprint: {_one_line(describe_fingerprint(report.fingerprint))} (key `{report.key}`)",
             f"- Status: {report.status.value}; since the previous campaign: **{what}**; severity: {ev.severity}; "
             f"occurrences: {report.occurrences}",
             f"- First seen {report.first_seen}, last seen {report.last_seen}; versions: "
             f"{', '.join(report.versions_seen) or 'unknown'}",
             f"- Message: {_one_line(ev.message) or '—'}"]
    if ev.error is not None:
        # codec.from_json returns Optional[ErrorInfo] fields as plain dicts; accept both forms
        err = ev.error if isinstance(ev.error, dict) else {"type": ev.error.type, "message": ev.error.message}
        lines.append(f"- Error: `{_one_line(str(err.get('type')))}`: {_one_line(str(err.get('message')))}")
    return lines + [f"- Inputs: {', '.join(summarise_input(i) for i in t.inputs)} (seed {t.seed}, dtype {t.dtype})",
                    f"- Minimisation: {shrunk}", f"- Report file: `{path}`",
                    f"- Replay: `nablafuzz replay {shlex.quote(str(path))}`"]


def _report(report: BugReport, root: Path, what: str, declared: Container[str]) -> List[str]:
    fp = report.fingerprint
    what_ran = (", ".join(fp.scenarios) + f" in {' vs '.join(fp.releases)}" if fp.releases
                else ", ".join(fp.scenarios) + " vs the other libraries" if fp.oracle else " vs ".join(fp.scenarios))
    title = f"##### {report.evidence.severity}: {what_ran or fp.verdict.value} — `{report.key}`"
    if report.status is ReportStatus.FIXED:
        title += " (fixed)"
    path = report_path(root, fp.library, fp.api, report.key)
    return ([title, ""] + _facts(report, path, what) + _filters(report) + ["", "Evidence:", ""]
            + _evidence(report.evidence.disagreements) + [""] + _repro(report, declared) + [""])


PAGES_DIR = "triage"  # beside the index: one page per root cause


def _status(members: Sequence[BugReport], changes: Dict[str, str]) -> str:
    seen = {changes[r.key] for r in members}
    return next(iter(seen)) if len(seen) == 1 else "open"


def _what(report: BugReport) -> str:
    ds = report.evidence.disagreements
    if ds:
        d = ds[0]
        return f"{d.scenarios[0]} {_cell(d.actual)} vs {d.scenarios[-1]} {_cell(d.expected)} (max_rel {d.max_rel:.2g}, {d.dtype})"
    return _cell(_one_line(report.evidence.message)[:160])


def _index(causes: Sequence[RootCause], by_key: Dict[str, BugReport], changes: Dict[str, str],
           pages: Optional[str]) -> List[str]:
    """One line per root cause, the most severe first (Note [triage index])."""
    if not causes:
        return ["No bug reports in this store.", ""]
    lines = ["## Root causes", "",
             f"{len(causes)} root cause(s) over {sum(len(c.members) for c in causes)} report(s); "
             "each line: severity, library, the API(s), what is wrong (the best witness's evidence), status, "
             "and the page with every member report, its evidence, filters and repro "
             "(`nablafuzz triage --issue ID` prints it as an upstream issue).", "",
             "| severity | library | API(s) | what is wrong | reports | status | root cause |",
             "|---|---|---|---|---:|---|---|"]
    for c in causes:
        w = by_key[c.witness]
        apis = ", ".join(f"`{a}`" for a in c.apis[:3]) + (f" +{len(c.apis) - 3}" if len(c.apis) > 3 else "")
        verdict = w.fingerprint.verdict.value
        link = f"[`{c.id}`]({pages}/{c.id}.md)" if pages else f"`{c.id}`"
        lines.append(f"| {c.severity} | {c.library} | {apis} | {verdict}: {_what(w)} | {len(c.members)} | "
                     f"{_status([by_key[k] for k in c.members], changes)} | {link} |")
    return lines + [""]


def _page(c: RootCause, by_key: Dict[str, BugReport], root: Path, changes: Dict[str, str],
          declared: Container[str]) -> str:
    members = [by_key[k] for k in c.members]
    lines = [f"# {c.title}", "", f"Root cause `{c.id}`; severity {c.severity}; {len(members)} report(s); best "
             f"witness `{c.witness}` (most severe, then smallest trial, then most occurrences). Members are grouped "
             "because they name one operation with the same verdict and modes, or raise the same normalised error "
             "(nablafuzz/rootcause.py).", ""]
    for r in members:
        lines += [f"## `{r.fingerprint.api}`", ""] + _report(r, root, changes[r.key], declared)
    return "\n".join(lines).rstrip("\n") + "\n"


# Note [metadata drift]
# `undeclared_support` (a mode works that the spec's source, OpInfo or a probe, says it does not)
# and `missing_support` (a mode the source claims raises "not implemented") say that test
# metadata is stale or conservative, not that users get a wrong derivative: they are listed for
# the test-suite owners in their own section, one line each, never among the bugs.
METADATA = (Verdict.UNDECLARED_SUPPORT, Verdict.MISSING_SUPPORT)


def _bugs(reports: Sequence[BugReport]) -> List[BugReport]:
    """The reports that may be bugs: neither metadata drift nor vetted as not a bug (model
    findings have their own section)."""
    return [r for r in reports if r.fingerprint.verdict not in METADATA and not dismissed(r)
            and not model_name(r.fingerprint.api) and not r.fingerprint.releases]


def _release_changes(reports: Sequence[BugReport], changes: Dict[str, str], pages: Optional[str],
                     campaigns: Sequence[CampaignRecord]) -> List[str]:
    """`campaign --versions` findings, per release pair: what the newer release broke (new),
    fixed, or changed without a reference to say which is right (Note [release change]); a
    report's class is the one its latest campaign recorded."""
    found = [r for r in reports if r.fingerprint.releases and not dismissed(r)]
    if not found:
        return []
    recorded = {key: cls for c in campaigns for key, cls in c.changes}  # later campaigns win
    classes = {r.key: recorded.get(r.key) or class_of(r.fingerprint.error_type) for r in found}
    lines = ["## Release changes (`campaign --versions`)", "",
             "One trial run by two releases of a library. *new*: a mode the older release computed now fails, or a "
             "derivative left the finite-difference reference the older release agreed with; *fixed*: the reverse; "
             "*changed*: the values differ and no converged reference says which is right.", ""]
    pairs = sorted({r.fingerprint.releases for r in found})
    for old, new in pairs:
        mine = [r for r in found if r.fingerprint.releases == (old, new)]
        count = {k: sum(classes[r.key] == k for r in mine) for k in ("new", "fixed", "changed")}
        lines += [f"### {old} → {new}: {count['new']} new, {count['fixed']} fixed, {count['changed']} changed", "",
                  "| class | severity | API | quantities | since last campaign | occurrences | what | report |",
                  "|---|---|---|---|---|---:|---|---|"]
        order = {"new": 0, "changed": 1, "fixed": 2}
        for r in sorted(mine, key=lambda r: (order.get(classes[r.key], 3),) + _report_order(r)):
            fp = r.fingerprint
            ref = f"[`{r.key}`]({pages}/release-{r.key}.md)" if pages else f"`{r.key}`"
            lines.append(f"| {classes[r.key]} | {r.evidence.severity} | `{fp.api}` | {', '.join(fp.scenarios)} | "
                         f"{changes[r.key]} | {r.occurrences} | {_cell(_one_line(r.evidence.message)[:200])} | {ref} |")
        lines.append("")
    return lines


def _model_findings(reports: Sequence[BugReport], changes: Dict[str, str], pages: Optional[str]) -> List[str]:
    """`nablafuzz modelfuzz` findings: one line each, most severe first; their pages hold the
    evidence, replay command and repro script."""
    found = sorted((r for r in reports if model_name(r.fingerprint.api) and not dismissed(r)), key=_report_order)
    if not found:
        return []
    lines = ["## Model findings (`nablafuzz modelfuzz`)", "",
             "Inputs of a model where its loss or gradient is not finite, AD modes disagree, or a lower precision "
             "changes the prediction: defects of the model (a planted one in the shipped `digits_unsafe`) unless "
             "the objective compares a library with itself or another library.", "",
             "| severity | library | model | objective | since last campaign | occurrences | what | report |",
             "|---|---|---|---|---|---:|---|---|"]
    for r in found:
        fp = r.fingerprint
        ref = f"[`{r.key}`]({pages}/model-{r.key}.md)" if pages else f"`{r.key}`"
        lines.append(f"| {r.evidence.severity} | {fp.library} | `{model_name(fp.api)}` | {', '.join(fp.scenarios)} | "
                     f"{changes[r.key]} | {r.occurrences} | {_cell(_one_line(r.evidence.message)[:160])} | {ref} |")
    return lines + [""]


def _metadata_drift(reports: Sequence[BugReport]) -> List[str]:
    drift = sorted((r for r in reports if r.fingerprint.verdict in METADATA),
                   key=lambda r: (r.fingerprint.library, r.fingerprint.api, r.key))
    if not drift:
        return []
    lines = ["## Metadata drift (for the test-suite owners, not bugs)", "",
             "A mode that works although the spec's source says it does not (`undeclared_support`), or that the "
             "source claims but the library refuses as not implemented (`missing_support`).", "",
             "| library | API | verdict | modes | occurrences | report |", "|---|---|---|---|---:|---|"]
    for r in drift:
        fp = r.fingerprint
        lines.append(f"| {fp.library} | `{fp.api}` | {fp.verdict.value} | {', '.join(fp.scenarios)} | {r.occurrences} | "
                     f"`{r.key}` |")
    return lines + [""]


def render_triage(store_root: Path, out: Optional[Path] = None, spec_dir: Path = Path("api_specs"),
                  spec_files: Sequence[Path] = ()) -> str:
    """The triage index of the store at `store_root` (Note [triage index]); written to `out` if
    given, with one page per root cause in `triage/` beside it.  Repro scripts are rendered for
    the APIs the specs under `spec_dir` and `spec_files` declare."""
    root = Path(store_root)
    reports, errors = Store(root).load_all()
    campaigns, warnings = read_campaigns(root)
    latest = campaigns[-1] if campaigns else None
    changes = {r.key: change(r, latest) for r in reports}
    bugs = _bugs(reports)
    causes = root_causes(bugs)
    by_key = {r.key: r for r in reports}
    text = "\n".join(_header(root, reports, campaigns) + _summary(bugs, changes) + _problems(errors, warnings)
                     + _index(causes, by_key, changes, PAGES_DIR if out is not None else None) + _cross(campaigns)
                     + _model_findings(reports, changes, PAGES_DIR if out is not None else None)
                     + _release_changes(reports, changes, PAGES_DIR if out is not None else None, campaigns)
                     + _validity(campaigns) + _conventions(campaigns) + _metadata_drift(reports)).rstrip("\n") + "\n"
    if out is not None:
        declared = declared_apis(spec_dir, spec_files, {r.fingerprint.library for r in reports})
        pages = Path(out).parent / PAGES_DIR
        for c in causes:
            write_atomic(pages / f"{c.id}.md", _page(c, by_key, root, changes, declared))
        for r in reports:
            if r.fingerprint.releases and not dismissed(r):
                write_atomic(pages / f"release-{r.key}.md", "\n".join(
                    [f"# `{r.fingerprint.api}`: {' → '.join(r.fingerprint.releases)}", ""]
                    + _report(r, root, changes[r.key], declared)))
            if model_name(r.fingerprint.api) and not dismissed(r):
                write_atomic(pages / f"model-{r.key}.md", "\n".join([f"# `{r.fingerprint.api}` ({r.fingerprint.library})", ""]
                                                                   + _report(r, root, changes[r.key], declared)))
        write_atomic(Path(out), text)
    return text


# Note [triage index]
# The index is what people read: one line per root cause (rootcause.py), ranked by severity,
# with the campaign summary, cross-library agreement, conventions and metadata drift in their own
# short sections; everything else (each member report's evidence table, filter verdicts, replay
# command and repro script) lives on the root cause's own page, so the index stays small however
# many reports the store holds.
def find_root_cause(store_root: Path, wanted: str) -> Tuple[RootCause, List[BugReport]]:
    """The root cause whose id starts with `wanted`, and its member reports (witness first)."""
    reports, _ = Store(Path(store_root)).load_all()
    causes = [c for c in root_causes(_bugs(reports)) if c.id.startswith(wanted)]
    if len(causes) != 1:
        raise KeyError(f"{len(causes)} root causes match {wanted!r}")
    by_key = {r.key: r for r in reports}
    return causes[0], [by_key[k] for k in causes[0].members]


def render_issue(store_root: Path, wanted: str, spec_dir: Path = Path("api_specs"),
                 spec_files: Sequence[Path] = ()) -> str:
    """A ready-to-paste upstream issue for one root cause: title, versions, a minimal repro with
    literal inputs, expected against actual, and why the expected value is right."""
    cause, members = find_root_cause(store_root, wanted)
    w = members[0]
    declared = declared_apis(spec_dir, spec_files, {cause.library})
    lines = [f"# {ISSUE_TITLE.get(w.fingerprint.verdict, 'AD bug')}: {', '.join(f'`{a}`' for a in cause.apis[:4])}"
             f"{' and more' if len(cause.apis) > 4 else ''} ({'+'.join(w.fingerprint.scenarios)}, order "
             f"{w.fingerprint.order})", "",
             "## Versions", "", ", ".join(w.versions_seen) or "unknown",
             f"(for the full environment: {record(cause.library).env_report})", "",
             "## What happens", "", _one_line(w.evidence.message), ""]
    if w.evidence.disagreements:
        lines += ["## Expected vs actual", ""] + _evidence(w.evidence.disagreements) + [""]
    lines += ["## Why the expected value is right", "", _justification(w), ""]
    repro = _repro(w, declared)
    lines += ["## Reproduction", "", "Self-contained: the inputs are literal; it prints each value and exits 1 "
              "on the disagreement (or raises the error).", ""] + [line for line in repro if "details>" not in line]
    if len(members) > 1:
        lines += ["", "## Also affected", ""] + [f"- `{m.fingerprint.api}`: {_one_line(m.evidence.message)[:200]}"
                                                 for m in members[1:]]
    return "\n".join(lines).rstrip("\n") + "\n"


ISSUE_TITLE = {Verdict.DERIVATIVE_MISMATCH: "Wrong derivative", Verdict.NONFINITE_DERIVATIVE: "NaN/inf derivative",
               Verdict.STATUS_MISMATCH: "Derivative raises where the function works", Verdict.CRASH: "Crash",
               Verdict.TIMEOUT: "Hang", Verdict.VALUE_MISMATCH: "Wrong value", Verdict.WRONG_SHAPE: "Wrong-shaped gradient",
               Verdict.NONDETERMINISTIC: "Nondeterministic result",
               Verdict.UNINITIALISED_READ: "Result reads uninitialised memory"}


def _no_numbers(verdict: Verdict, direct: bool) -> str:
    """Why a report without numbers to compare is a bug (a crash, a hang, an error, other bits)."""
    if verdict in (Verdict.CRASH, Verdict.TIMEOUT):
        what = "kills the process" if verdict is Verdict.CRASH else "never returns"
        if direct:
            return (f"The call itself {what} on these small inputs; a library call should return, or raise an "
                    "exception the caller can handle.")
        return (f"The direct call returns on these inputs, and computing this derivative {what}; it should return, "
                "or raise an exception the caller can handle.")
    if verdict is Verdict.NONDETERMINISTIC:
        return "Re-running the same inputs in the same process gives other bits, and the API is not documented as random."
    if verdict is Verdict.UNINITIALISED_READ:
        return ("Re-running the same inputs in a fresh process gives other values, while re-running them in one process "
                "repeats them bitwise: the result depends on memory nothing wrote.")
    return ("The direct call succeeds on these inputs, and the other derivative modes compute a value; an error "
            "in this mode alone is not documented behaviour.")


def _justification(report: BugReport) -> str:
    ds = report.evidence.disagreements
    fp = report.fingerprint
    if fp.oracle:
        return (f"The other libraries of the equivalence class `{fp.cross_class}` compute the same "
                "function on the same inputs and agree with each other: " + _one_line(report.evidence.message))
    if not ds:
        return _no_numbers(fp.verdict, "direct" in fp.scenarios)
    ref = ds[0].scenarios[-1]
    if ref.split(".")[0] == "mp":
        return ("The expected value is the derivative of the function's exact mathematical definition, computed "
                "with mpmath at 50 significant digits (rising until two precisions agree) from the same binary inputs.")
    if ref.split(".")[0] == "fd":
        return ("The expected value is central finite differences in float64 extrapolated twice (Richardson), "
                "converged (error estimate below 1 % of the value), and agrees with the library's other modes: "
                + ", ".join(f"`{f.filter}`: {_one_line(f.reason)}" for f in report.evidence.filters))
    return (f"Two of the library's own derivative modes disagree ({ds[0].scenarios[0]} against {ref}); "
            "coordinate-wise finite differences side with the expected one.")
