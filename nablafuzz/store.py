"""The report store: `bug_reports/<library>/<api>/<fingerprint-key>.json`.

Content addressed by fingerprint key; the campaign process is the only writer; every write is
atomic (temp file, fsync, rename), so a killed campaign leaves either the old or the new
report, never half of one.  Re-finding a bug merges the occurrence into its report; the same
trial is never counted twice (a resumed campaign may re-run a trial whose report was written
just before it was killed).  A corrupt report is moved aside, never overwritten.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

from .codec import digest, from_json, to_json
from .errors import ReportError
from .fingerprint import key as fingerprint_key
from .generate import representative_rank, trial_size
from .model import BugReport, CampaignRecord, Evidence, Finding, ReportStatus, Trial

SCHEMA = 1
CAMPAIGNS = "_campaigns"
RECENT_TRIALS = 64


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def safe_name(api: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", api)


def report_path(root: Path, library: str, api: str, key: str) -> Path:
    return root / safe_name(library) / safe_name(api) / f"{key}.json"


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


def encode_report(report: BugReport) -> str:
    return json.dumps({"schema": SCHEMA, "report": to_json(report)}, indent=1, sort_keys=True, allow_nan=False) + "\n"


def read_report(path: Path) -> BugReport:
    """Load one report; any problem is a ReportError naming the file, the field and the fix."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: not a readable JSON report ({exc}); fix: restore it from version "
                          "control or delete it so the next campaign re-creates it") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or "report" not in data:
        raise ReportError(f"{path}: field 'schema' must be {SCHEMA} with a 'report' object; fix: "
                          "regenerate the report with this version of nablafuzz")
    try:
        return from_json(BugReport, data["report"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ReportError(f"{path}: invalid report: {exc}; fix: restore the file or delete it") from None


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)

    def paths(self) -> List[Path]:
        return sorted(p for p in self.root.glob("*/*/*.json") if p.parts[-3] != CAMPAIGNS)

    def load_all(self) -> Tuple[List[BugReport], List[ReportError]]:
        reports, errors = [], []
        for p in self.paths():
            try:
                reports.append(read_report(p))
            except ReportError as exc:
                errors.append(exc)
        return reports, errors

    def get(self, library: str, api: str, key: str) -> Optional[BugReport]:
        path = report_path(self.root, library, api, key)
        if not path.exists():
            return None
        try:
            return read_report(path)
        except ReportError:
            n = 0
            while path.with_name(f"{path.name}.corrupt-{n}").exists():
                n += 1
            os.replace(path, path.with_name(f"{path.name}.corrupt-{n}"))  # kept, never overwritten
            return None

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
            write_atomic(report_path(self.root, fp.library, fp.api, k), encode_report(report))
        return report, old is None

    def save(self, report: BugReport) -> None:
        fp = report.fingerprint
        write_atomic(report_path(self.root, fp.library, fp.api, report.key), encode_report(report))

    def save_campaign(self, record: CampaignRecord) -> None:
        text = json.dumps({"schema": SCHEMA, "campaign": to_json(record)}, indent=1, sort_keys=True) + "\n"
        write_atomic(self.root / CAMPAIGNS / f"{record.id}.json", text)

    def __iter__(self) -> Iterator[BugReport]:
        return iter(self.load_all()[0])


def _merge(old: BugReport, finding: Finding, minimised: Trial, evidence: Evidence, versions: Sequence[str],
           campaign: str, tkey: str) -> BugReport:
    if tkey in old.history:
        return old
    smaller = representative_rank(trial_size(minimised)) < representative_rank(old.minimised_size)
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
        history=(old.history + (tkey,))[-RECENT_TRIALS:],
    )
