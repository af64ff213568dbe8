"""Human verdicts on reports: `nablafuzz vet REPORT --as bug|convention|false_positive --note ...`.

The verdict is written into the report file itself (`vetted`), so it travels with the store.
A report vetted as a convention or a false positive is never reported again: campaigns read
every such report as a known issue of its API (same verdict, order and culprit modes) whose reason
is the note, dismissed as `convention` or `known_issue` like a row of the convention table.
Triage counts vetted reports and keeps the non-bugs out of the root-cause index.

The store's open hangs travel to campaigns the same way, as known issues `when: hang` that dismiss
nothing: a timeout they match is not re-run by the slow filter (Note [stored hang]).
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..core.errors import ReportError
from ..core.model import VETTING, ApiSpec, BugReport, KnownIssue, Verdict, Vetting
from .lock import LOCK_FILE, exclusive
from .store import Store, encode_report, now, read_report, write_atomic


def vet(path: Path, verdict: str, note: str) -> BugReport:
    """Record `verdict` with `note` in the report at `path` (rewritten in place), holding its
    store's lock: a campaign writing the same report would otherwise save it back without the
    verdict (LockedError, naming the campaign, while one runs)."""
    if verdict not in VETTING:
        raise ReportError(f"vet: --as {verdict!r} is not a verdict; fix: use one of {', '.join(VETTING)}")
    if not note.strip():
        raise ReportError("vet: the note is empty; fix: say in one line why (e.g. --note 'documented: ...')")
    store = Path(path).resolve().parents[2]  # <store>/<library>/<api>/<key>.json
    with exclusive(store, "report store") if (store / LOCK_FILE).exists() else contextlib.nullcontext():
        report = replace(read_report(Path(path)), vetted=Vetting(verdict, note.strip(), now()))
        write_atomic(Path(path), encode_report(report))
    return report


def dismissed(report: BugReport) -> bool:
    """Whether a person vetted the report as not a bug."""
    return report.vetted is not None and report.vetted.verdict != "bug"


def _issue(r: BugReport) -> Optional[KnownIssue]:
    """The known issue a report adds to its API's spec: the note of one vetted as a convention or a
    false positive, `when: hang` for a new or open hang; None for the others."""
    fp, v = r.fingerprint, r.vetted
    if dismissed(r):
        return KnownIssue(f"vetted {v.verdict.replace('_', ' ')} ({v.when}): {v.note}", f"report {r.key}",
                          fp.scenarios, fp.verdict.value, v.verdict == "convention", order=fp.order)
    if fp.verdict is Verdict.TIMEOUT and r.standing:
        return KnownIssue(f"hangs as stored report {r.key} does", f"report {r.key}", fp.scenarios, fp.verdict.value,
                          when="hang", order=fp.order)
    return None


def store_issues(reports: Sequence[BugReport]) -> Dict[Tuple[str, str], Tuple[KnownIssue, ...]]:
    """(library, api) -> the known issues its reports add (`_issue`)."""
    out: Dict[Tuple[str, str], List[KnownIssue]] = {}
    for r in reports:
        issue = _issue(r)
        if issue is not None:
            out.setdefault((r.fingerprint.library, r.fingerprint.api), []).append(issue)
    return {k: tuple(v) for k, v in out.items()}


def with_store_issues(specs: Sequence[ApiSpec], store_dir: Path) -> List[ApiSpec]:
    """The specs, each with the known issues its store's vetted reports and open hangs add."""
    reports, _ = Store(Path(store_dir)).load_all()
    extra = store_issues(reports)
    return [replace(s, known_issues=s.known_issues + extra[(s.library, s.name)]) if (s.library, s.name) in extra
            else s for s in specs]
