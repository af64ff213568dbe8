"""Run generated repro scripts alone, in the library's own runtime, and report what they print.

    python bench/check_repros.py bug_reports torch --count 5 [--out bench/results/torch-repros.md]

Each script is written to a temporary folder and run by the runtime's interpreter with an
empty PYTHONPATH (nothing of nablafuzz importable), as a maintainer would run it.  A script
"shows its claim" when it exits 1 with a DISAGREEMENT line (derivative and value findings) or
fails with the recorded error type (status and crash findings).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nablafuzz.core.fingerprint import describe  # noqa: E402
from nablafuzz.reports.repro import ReproError, render  # noqa: E402
from nablafuzz.reports.store import Store  # noqa: E402
from nablafuzz.reports.triage import declared_apis  # noqa: E402
from nablafuzz.runtime.install import load_registry  # noqa: E402

SEVERITY = {"crash": 0, "wrong": 1, "accuracy": 2}


def run_one(report, declared, python: str, env: dict, folder: Path):
    script = folder / f"repro_{report.key}.py"
    script.write_text(render(report, declared))
    done = subprocess.run([python, str(script)], capture_output=True, text=True, env=env, cwd=folder, timeout=600)
    tail = (done.stdout + done.stderr).strip().splitlines()[-6:]
    fp = report.fingerprint
    if fp.verdict.value in ("derivative_mismatch", "nonfinite_derivative", "value_mismatch"):
        shows = "DISAGREEMENT" in done.stdout and done.returncode == 1
    elif fp.verdict.value == "crash":  # the process dies of a signal (SIGABRT, SIGSEGV, ...)
        shows = done.returncode < 0
    else:
        shows = done.returncode != 0 and (not fp.error_type or fp.error_type.split(".")[-1] in done.stderr)
    return shows, done.returncode, tail


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store", type=Path)
    parser.add_argument("library")
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--spec-dir", type=Path, default=Path("api_specs"))
    args = parser.parse_args()
    declared = declared_apis(args.spec_dir, (), [args.library])
    entry = load_registry()[args.library]
    env = dict(entry.get("env", {}), PATH="/usr/bin:/bin")
    reports, _ = Store(args.store).load_all()
    reports = sorted((r for r in reports if r.fingerprint.library == args.library
                      and r.fingerprint.verdict.value != "undeclared_support"),
                     key=lambda r: (SEVERITY.get(r.evidence.severity, 3), -r.occurrences))
    lines = [f"# Repro scripts run alone ({args.library})", "",
             f"Interpreter: `{entry['python']}`, empty PYTHONPATH.", ""]
    shown, ran, skipped = 0, 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for r in reports:
            if ran == args.count:
                break
            try:
                ok, rc, tail = run_one(r, declared, entry["python"], env, Path(tmp))
            except ReproError as exc:
                skipped.append(f"- {describe(r.fingerprint)}: {exc}")
                continue
            ran, shown = ran + 1, shown + ok
            lines += [f"## {describe(r.fingerprint)}", "", f"- report: `{r.key}`; exit code {rc}; "
                      f"{'shows the claim' if ok else 'DOES NOT show the claim'}", "", "```",
                      *tail, "```", ""]
    lines += ["Skipped (no script generated):", *skipped, ""] if skipped else []
    lines.append(f"{shown} of {ran} scripts show what their report claims.")
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0 if shown == ran else 1


if __name__ == "__main__":
    sys.exit(main())
