"""The report store: `bug_reports/<library>/<api>/<fingerprint-key>.json`.

Content addressed by fingerprint key; the campaign process is the only writer; every write is
atomic (temp file, fsync, rename), so a killed campaign leaves either the old or the new
report, never half of one.  Re-finding a bug merges the occurrence into its report; the same
trial is never counted twice (a resumed campaign may re-run a trial whose report was written
just before it was killed).  A corrupt report is moved aside, never overwritten.

The store is data that anyone with write access to a repository can edit, so nothing in a
report decides where a file goes: the path is `report_path` of the fingerprint, each part
reduced to a safe name, and the file name is the key recomputed from the fingerprint (the
stored `key` field is never used as a path).  A report whose stored key or file name does not
match its fingerprint is moved aside with a message, never merged into.  A report file over
MAX_REPORT_BYTES is refused before it is parsed (a hostile or runaway file must not cost
minutes and gigabytes); writes summarise the evidence instead of growing past it.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from ..core.codec import digest, from_json, to_json
from ..core.errors import ReportError
from ..core.fingerprint import key as fingerprint_key
from ..core.model import STORED_HANG, BugReport, CampaignRecord, Evidence, Finding, ReportStatus, Trial
from ..core.tensors import representative_rank, trial_size

SCHEMA = 1
CAMPAIGNS = "_campaigns"
RECENT_TRIALS = 64
MAX_REPORT_BYTES = 4 << 20


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def safe_name(api: str) -> str:
    """One path component: letters, digits, `_.-` only, never starting with a dot (so never
    `..`), at most 200 characters."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", api)[:200]
    return "_" + name if not name or name.startswith(".") else name


def report_path(root: Path, library: str, api: str, key: str) -> Path:
    return root / safe_name(library) / safe_name(api) / f"{safe_name(key)}.json"


def path_of(root: Path, report: BugReport) -> Path:
    """Where a report belongs: from its fingerprint alone (its stored `key` is not trusted)."""
    fp = report.fingerprint
    return report_path(root, fp.library, fp.api, fingerprint_key(fp))


def mismatch(path: Path, report: BugReport) -> Optional[str]:
    """Why `report`, read from `path`, is not where its fingerprint puts it (None: it is)."""
    k = fingerprint_key(report.fingerprint)
    if report.key != k:
        return f"its stored key {report.key!r} is not its fingerprint's key {k!r} (edited by hand?)"
    if path.name != f"{k}.json" or path.parent.name != safe_name(report.fingerprint.api) \
            or path.parent.parent.name != safe_name(report.fingerprint.library):
        return f"its fingerprint belongs in {report.fingerprint.library}/{report.fingerprint.api}/{k}.json"
    return None


def set_aside(path: Path, why: str) -> Path:
    """Rename a report the store cannot use to `<name>.<why>-N` (kept, never overwritten)."""
    n = 0
    while path.with_name(f"{path.name}.{why}-{n}").exists():
        n += 1
    aside = path.with_name(f"{path.name}.{why}-{n}")
    os.replace(path, aside)
    return aside


def trial_key(trial: Trial) -> str:
    return digest(trial)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_leftovers(root: Path) -> int:
    """Delete the temporary files of writes a killed process never finished (`write_atomic`'s
    `.<name>.<pid>.tmp`); call only while holding the store's lock.  Returns how many."""
    n = 0
    for tmp in list(Path(root).glob("*/*/.*.tmp")) + list(Path(root).glob(f"{CAMPAIGNS}/.*.tmp")):
        tmp.unlink(missing_ok=True)
        n += 1
    return n


def encode_report(report: BugReport) -> str:
    return json.dumps({"schema": SCHEMA, "report": to_json(report)}, indent=1, sort_keys=True, allow_nan=False) + "\n"


def read_report(path: Path) -> BugReport:
    """Load one report; any problem is a ReportError naming the file, the field and the fix."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ReportError(f"{path}: cannot be read ({exc.strerror}); fix: check the path") from None
    if size > MAX_REPORT_BYTES:
        raise ReportError(f"{path}: {size} bytes, over the {MAX_REPORT_BYTES}-byte limit of a report; not read "
                          "(fix: delete it; the next campaign that finds the bug re-creates it)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ReportError(f"{path}: not a readable JSON report ({exc}); fix: restore it from version "
                          "control or delete it so the next campaign re-creates it") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or "report" not in data:
        raise ReportError(f"{path}: field 'schema' must be {SCHEMA} with a 'report' object; fix: "
                          "regenerate the report with this version of nablafuzz")
    try:
        return from_json(BugReport, data["report"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ReportError(f"{path}: invalid report: {exc}; fix: restore the file or delete it") from None


def read_checked(path: Path) -> BugReport:
    """A report that is where its fingerprint says (ReportError otherwise)."""
    report = read_report(path)
    why = mismatch(path, report)
    if why is not None:
        raise ReportError(f"{path}: {why}; not used (fix: restore the file from version control, or move it to "
                          "the path its fingerprint gives)")
    return report


def _say(message: str) -> None:
    print(f"nablafuzz: {message}", file=sys.stderr)


class Store:
    def __init__(self, root: Path, notify: Callable[[str], None] = _say):
        self.root = Path(root)
        self.notify = notify

    def paths(self) -> List[Path]:
        return sorted(p for p in self.root.glob("*/*/*.json") if p.parts[-3] != CAMPAIGNS)

    def load_all(self) -> Tuple[List[BugReport], List[ReportError]]:
        reports, errors = [], []
        for p in self.paths():
            try:
                reports.append(read_checked(p))
            except ReportError as exc:
                errors.append(exc)
        return reports, errors

    def get(self, library: str, api: str, key: str) -> Optional[BugReport]:
        """The report at this fingerprint key's path, or None.  One that cannot be read, or that
        does not belong there, is moved aside (with a message), so a new report takes its place."""
        path = report_path(self.root, library, api, key)
        if not path.exists():
            return None
        try:
            report = read_report(path)
        except ReportError as exc:
            self.notify(f"{exc}; moved aside to {set_aside(path, 'corrupt').name}")
            return None
        why = mismatch(path, report) or (None if report.fingerprint.library == library and report.fingerprint.api == api
                                         else "its fingerprint names another API")
        if why is not None:
            self.notify(f"{path}: {why}; moved aside to {set_aside(path, 'mismatch').name}, not merged into")
            return None
        return report

    def record(self, finding: Finding, minimised: Trial, versions: Sequence[str], campaign: str) -> Tuple[BugReport, bool]:
        """Merge a finding into its report (creating it if new).  Returns (report, created)."""
        fp = finding.fingerprint
        k = fingerprint_key(fp)
        old = self.get(fp.library, fp.api, k)
        tkey = trial_key(finding.trial)
        evidence = Evidence(finding.message, finding.severity, finding.candidate.disagreements, finding.filters,
                            expected=finding.candidate.expected)
        if old is None:
            report = BugReport(fp, k, ReportStatus.NEW, now(), now(), 1, tuple(sorted(versions)), minimised, evidence,
                               trial_size(finding.trial), trial_size(minimised), (campaign,), history=(tkey,))
        else:
            report = _merge(old, finding, minimised, evidence, versions, campaign, tkey)
        if old is None or report != old:
            self.save(report)
        return report, old is None

    def save(self, report: BugReport) -> None:
        """Write `report` where its fingerprint puts it, with the key recomputed from it."""
        report = replace(report, key=fingerprint_key(report.fingerprint))
        text = encode_report(report)
        if len(text) > MAX_REPORT_BYTES:  # the other libraries' outputs are not needed to reproduce
            report = replace(report, evidence=replace(report.evidence, expected=()))
            text = encode_report(report)
        write_atomic(path_of(self.root, report), text)

    def save_campaign(self, record: CampaignRecord) -> None:
        text = json.dumps({"schema": SCHEMA, "campaign": to_json(record)}, indent=1, sort_keys=True) + "\n"
        write_atomic(self.root / CAMPAIGNS / f"{record.id}.json", text)

    def __iter__(self) -> Iterator[BugReport]:
        return iter(self.load_all()[0])


def _merge(old: BugReport, finding: Finding, minimised: Trial, evidence: Evidence, versions: Sequence[str],
           campaign: str, tkey: str) -> BugReport:
    if tkey in old.history:
        return old
    smaller = representative_rank(trial_size(minimised)) < representative_rank(old.minimised_size) and not any(
        f.filter == STORED_HANG for f in evidence.filters)  # a hang not re-run: Note [stored hang]
    status = old.status
    if campaign not in old.campaigns and status in (ReportStatus.NEW, ReportStatus.FIXED):
        status = ReportStatus.OPEN
    return replace(
        old, status=status, last_seen=now(), occurrences=old.occurrences + 1,
        versions_seen=tuple(sorted(set(old.versions_seen) | set(versions))),
        trial=minimised if smaller else old.trial, evidence=evidence if smaller else old.evidence,
        minimised_size=trial_size(minimised) if smaller else old.minimised_size,
        original_size=old.original_size if not smaller else trial_size(finding.trial),
        campaigns=old.campaigns if campaign in old.campaigns else old.campaigns + (campaign,),
        history=(old.history + (tkey,))[-RECENT_TRIALS:], reproduced_on=() if smaller else old.reproduced_on,
    )
