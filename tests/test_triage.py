"""Triage markdown from a report store: grouping, severity order, new / still open / fixed / not
seen since the previous campaign, evidence, filters, replay command, repro scripts, problems."""
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import List, Tuple

import pytest
from repro_ops import disagreement, make_report, tensor

import nablafuzz
from nablafuzz.core.codec import to_json
from nablafuzz.core.model import CampaignRecord, ErrorInfo, FilterOutcome, ReportStatus, Verdict
from nablafuzz.reports.store import Store, report_path
from nablafuzz.reports.triage import change, read_campaigns, render_triage

TESTS = Path(__file__).resolve().parent
PACKAGE_PARENT = Path(nablafuzz.__file__).resolve().parent.parent
FILTERS = (FilterOutcome("nondeterminism", False, "direct call repeated: identical outputs"),
           FilterOutcome("finite_difference", False, "fd error estimate 1.3e-12 << disagreement 0.49"))


def campaign(cid, started, apis, seen, fixed=()):
    return CampaignRecord(cid, started, started.replace("00:00", "01:00"), ("numpy_ref", "torch", "jax"),
                          ("numpy 2.1.0", "python 3.11.7", "torch 2.13.0"), tuple(apis), tuple(seen), tuple(fixed), True)


def write_campaign(root: Path, record: CampaignRecord) -> None:
    path = root / "_campaigns" / f"{record.id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": 1, "campaign": to_json(record)}))


@pytest.fixture
def store(tmp_path):
    """Five reports across three libraries and two campaigns (c1 older, c2 latest)."""
    root = tmp_path / "bug_reports"
    reports = {
        "open": make_report("numpy_ref", "repro_ops:DOUBLE_VJP_SIN", [tensor([0.3, -1.2, 2.5])], seed=7,
                            disagreements=[disagreement("rev", "fd", actual=-0.98, expected=-0.49)],
                            campaigns=("c1", "c2"), status=ReportStatus.OPEN, occurrences=4, filters=FILTERS,
                            sizes=(12, 3)),
        "new": make_report("numpy_ref", "sin", [tensor([1.0])], verdict=Verdict.CRASH, scenarios=("fwd.rev",),
                           severity="crash", campaigns=("c2",), error=ErrorInfo("crashed", "killed by SIGSEGV"),
                           message="fwd.rev: killed by SIGSEGV"),
        "fixed": make_report("torch", "torch.sin", [tensor([0.5], name="input")], severity="accuracy",
                             disagreements=[disagreement("fwd", "fd", actual=0.8775, expected=0.87758)],
                             campaigns=("c1",), status=ReportStatus.FIXED),
        "not seen": make_report("jax", "jax.numpy.tanh", [tensor([0.5])], campaigns=("c1",),
                                disagreements=[disagreement("rev.rev", "fd.rev")], scenarios=("rev.rev",)),
        "no renderer": make_report("mxnet", "mxnet.nd.sin", [tensor([0.5])], campaigns=("c1",),
                                   disagreements=[disagreement("rev", "fd")]),
    }
    s = Store(root)
    for r in reports.values():
        s.save(r)
    write_campaign(root, campaign("c1", "2024-06-01T00:00:00Z", ["numpy_ref:sin", "torch:torch.sin"],
                                  [r.key for r in reports.values()]))
    write_campaign(root, campaign("c2", "2024-06-07T00:00:00Z",
                                  ["numpy_ref:repro_ops:DOUBLE_VJP_SIN", "numpy_ref:sin", "torch:torch.sin",
                                   "jax:jax.numpy.tanh"],
                                  [reports["open"].key, reports["new"].key], fixed=[reports["fixed"].key]))
    return root, reports


def section(md: str, heading: str) -> str:
    start = md.index(heading)
    level = heading.split(" ")[0]
    nxt = re.search(rf"^{level} ", md[start + len(heading):], re.M)
    return md[start:start + len(heading) + (nxt.start() if nxt else len(md))]


def test_title_summary_and_changes(store):
    root, reports = store
    md = render_triage(root)
    assert md.startswith(f"# nablafuzz triage: `{root}`")
    assert "Generated " in md and "Latest campaign `c2`" in md and "previous `c1`" in md
    assert "torch 2.13.0" in md and "Versions seen in reports:" in md
    summary = section(md, "## Summary")
    assert "| library | verdict | reports | occurrences | new | still open | fixed | not seen |" in summary
    assert "| numpy_ref | crash | 1 | 1 | 1 | 0 | 0 | 0 |" in summary
    assert "| numpy_ref | derivative_mismatch | 1 | 4 | 0 | 1 | 0 | 0 |" in summary
    assert "| torch | derivative_mismatch | 1 | 1 | 0 | 0 | 1 | 0 |" in summary
    assert "| jax | derivative_mismatch | 1 | 1 | 0 | 0 | 0 | 1 |" in summary


def test_change_classification(store):
    root, reports = store
    campaigns, warnings = read_campaigns(root)
    assert [c.id for c in campaigns] == ["c1", "c2"] and warnings == []
    got = {name: change(r, campaigns[-1]) for name, r in reports.items()}
    assert got == {"open": "still open", "new": "new", "fixed": "fixed", "not seen": "not seen",
                   "no renderer": "not covered"}


def with_pages(root: Path, tmp_path: Path, **kwargs) -> Tuple[str, str]:
    """(index, every root cause page concatenated) of a triage written to tmp_path."""
    out = tmp_path / "out" / "triage.md"
    md = render_triage(root, out, **kwargs)
    assert out.read_text() == md
    return md, "\n".join(p.read_text() for p in sorted((out.parent / "triage").glob("*.md")))


def rows(md: str) -> List[str]:
    return [line for line in section(md, "## Root causes").splitlines() if line.startswith("| ")][1:]


def test_index_has_one_line_per_root_cause_most_severe_first_and_a_page_each(store, tmp_path):
    root, _ = store
    md, pages = with_pages(root, tmp_path)
    lines = rows(md)
    assert len(lines) == 5 and lines[0].startswith("| crash | numpy_ref | `sin` | crash: fwd.rev: killed by SIGSEGV")
    assert "| wrong | numpy_ref | `repro_ops:DOUBLE_VJP_SIN` | derivative_mismatch: rev -0.98 vs fd -0.49" in md
    assert all("](triage/" in line for line in lines)
    assert "##### crash: fwd.rev" in pages and "##### wrong: rev" in pages and "(fixed)" in pages


def test_report_entry_has_evidence_filters_replay_and_runnable_repro(store, tmp_path):
    root, reports = store
    spec = tmp_path / "user.yaml"  # the user op is declared by a spec file, as a campaign had it
    spec.write_text('library: numpy_ref\napis:\n  - {name: "repro_ops:DOUBLE_VJP_SIN", args: [{name: x}]}\n')
    _, pages = with_pages(root, tmp_path, spec_files=[spec])
    r = reports["open"]
    entry = section(pages, "## `repro_ops:DOUBLE_VJP_SIN`")
    path = report_path(root, "numpy_ref", r.fingerprint.api, r.key)
    assert f"numpy_ref:repro_ops:DOUBLE_VJP_SIN derivative_mismatch in rev (order 1) (key `{r.key}`)" in entry
    assert "Status: open; since the previous campaign: **still open**; severity: wrong; occurrences: 4" in entry
    assert "First seen 2024-06-01T00:00:00Z, last seen 2024-06-07T00:00:00Z" in entry
    assert "numpy==2.1.0" in entry and "Message: rev vs fd: derivative -0.98 vs -0.49" in entry
    assert "| rev (VJP) vs fd (finite differences) | derivative | -0.98 | -0.49 | 0.49 | 1 | 1e-300 | 1e-07 | float64 |" \
        in entry
    assert "`nondeterminism`: kept — direct call repeated: identical outputs" in entry
    assert "`finite_difference`: kept — fd error estimate" in entry
    assert "Minimisation: shrunk from 12 to 3 elements" in entry
    assert "Inputs: x: float64[3] (seed 7, dtype float64)" in entry
    assert f"Report file: `{path}`" in entry and f"Replay: `nablafuzz replay {path}`" in entry
    script = re.search(r"```python\n(.*?)\n```", entry, re.S).group(1)
    (tmp_path / "from_triage.py").write_text(script)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_PARENT), str(TESTS)]))
    proc = subprocess.run([sys.executable, str(tmp_path / "from_triage.py")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 1 and "DISAGREEMENT: rev = " in proc.stdout, proc.stderr


def test_status_report_and_unrenderable_library(store, tmp_path):
    root, _ = store
    _, pages = with_pages(root, tmp_path)
    crash = section(pages, "## `sin`")
    assert "Error: `crashed`: killed by SIGSEGV" in crash and "No numeric evidence (a status verdict)." in crash
    assert "Minimisation: not shrunk (3 elements)" in crash
    assert "Repro script: not available (repro: no script renderer for library 'mxnet'" in section(pages, "## `mxnet.nd.sin`")


def test_corrupt_files_are_listed_under_problems(store):
    root, reports = store
    bad_report = root / "numpy_ref" / "sin" / "0123456789abcdef.json"
    bad_report.write_text("{ not json")
    wrong_schema = root / "torch" / "torch.sin" / "fedcba9876543210.json"
    wrong_schema.write_text(json.dumps({"schema": 99, "report": {}}))
    bad_campaign = root / "_campaigns" / "c3.json"
    bad_campaign.write_text("[]")
    md = render_triage(root)
    problems = section(md, "## Problems")
    assert str(bad_report) in problems and str(wrong_schema) in problems
    assert f"warning: {bad_campaign}: unreadable campaign record" in problems
    assert "Latest campaign `c2`" in md  # the readable records still count
    assert len(rows(md)) == len(reports)


def test_no_campaign_records_uses_report_status(tmp_path):
    root = tmp_path / "store"
    Store(root).save(make_report("numpy_ref", "sin", [tensor([1.0])], disagreements=[disagreement("rev", "fd")]))
    assert read_campaigns(root) == ([], [])
    md = render_triage(root)
    assert "No campaign records" in md and "| numpy_ref | derivative_mismatch | 1 | 1 | 1 | 0 | 0 | 0 |" in md
    assert "## Problems" not in md


def test_empty_store_and_out_file(tmp_path):
    out = tmp_path / "triage" / "report.md"
    md = render_triage(tmp_path / "nothing-here", out)
    assert "No bug reports in this store." in md
    assert out.read_text() == md


def test_triage_never_imports_a_deep_learning_library(store):
    root, _ = store
    render_triage(root)
    assert not {"torch", "jax", "tensorflow", "oneflow"} & set(sys.modules)


def test_fixed_via_campaign_record_even_if_status_open(store):
    root, reports = store
    campaigns, _ = read_campaigns(root)
    still_marked_open = replace(reports["fixed"], status=ReportStatus.OPEN)
    assert change(still_marked_open, campaigns[-1]) == "fixed"


def test_stale_test_metadata_is_its_own_section_not_a_bug(tmp_path):
    # Note [metadata drift]: a mode that works though OpInfo says it does not is for the test-suite owners
    root = tmp_path / "bug_reports"
    s = Store(root)
    s.save(make_report("torch", "torch.sin", [tensor([0.5], name="input")], verdict=Verdict.UNDECLARED_SUPPORT,
                       scenarios=("fwd",), severity="metadata", message="fwd works although the spec declares it unsupported"))
    s.save(make_report("torch", "torch.cos", [tensor([0.5], name="input")], disagreements=[disagreement("rev", "fd")]))
    md = render_triage(root)
    drift = section(md, "## Metadata drift (for the test-suite owners, not bugs)")
    assert "| torch | `torch.sin` | undeclared_support | fwd | 1 |" in drift
    assert "torch.sin" not in section(md, "## Root causes") and "`torch.cos`" in section(md, "## Root causes")
    assert "undeclared_support" not in section(md, "## Summary")


def test_one_root_cause_for_aliases_and_for_one_error_across_apis_and_an_issue_for_it(tmp_path):
    from nablafuzz.reports.triage import render_issue
    root = tmp_path / "bug_reports"
    s = Store(root)
    s.save(make_report("torch", "torch.Tensor.scatter", [tensor([0.5], name="input")], disagreements=[disagreement("rev", "fd")]))
    s.save(make_report("torch", "torch.scatter", [tensor([0.5], name="input")], disagreements=[disagreement("rev", "fd")]))
    for api, shape in (("torch.logsumexp", "[5, 5]"), ("torch.log_softmax", "[3]")):
        s.save(make_report("torch", api, [tensor([0.5], name="input")], verdict=Verdict.STATUS_MISMATCH,
                           scenarios=("rev.fwd",), message=f"direct call succeeded but rev.fwd raised RuntimeError: one "
                           f"of the variables needed for gradient computation has been modified by an inplace operation: "
                           f"[torch.DoubleTensor {shape}], which is output 0 of ExpBackward0, is at version 1"))
    s.save(make_report("torch", "torch.cos", [tensor([0.5], name="input")], disagreements=[disagreement("fwd", "fd")],
                       scenarios=("fwd",)))
    md = render_triage(root)
    got = {line.split(" | ")[2]: line.split(" | ")[4] for line in rows(md)}
    assert got == {"`torch.Tensor.scatter`, `torch.scatter`": "2", "`torch.log_softmax`, `torch.logsumexp`": "2",
                   "`torch.cos`": "1"}
    cid = next(line for line in rows(md) if "logsumexp" in line).split("`")[-2]
    issue = render_issue(root, cid[:8])
    assert issue.startswith("# Derivative raises where the function works: `torch.log_softmax`, `torch.logsumexp`")
    assert "torch.utils.collect_env" in issue and "## Reproduction" in issue and "## Also affected" in issue
    with pytest.raises(KeyError):
        render_issue(root, "zzzz")
    # a crash of the call itself is justified as such, not as "the direct call succeeds"
    s.save(make_report("oneflow", "oneflow.amax", [tensor([0.5], name="input")], verdict=Verdict.CRASH,
                       scenarios=("direct",), message="direct: killed by SIGABRT"))
    crash = next(line for line in rows(render_triage(root)) if "oneflow.amax" in line).split("`")[-2]
    issue = render_issue(root, crash[:8])
    assert "The call itself kills the process" in issue and "The direct call succeeds" not in issue


def test_an_emulated_forward_mode_beside_its_reverse_mode_is_one_root_cause_with_the_reverse_alone(tmp_path):
    # OneFlow emulates forward mode by two reverse passes: a wrong VJP makes `fwd` wrong too where
    # the emulation runs (a 0-d input), and not where it is refused
    from dataclasses import replace

    from nablafuzz.oracle.compare import EMULATED
    root = tmp_path / "bug_reports"
    s = Store(root)
    emulated = replace(disagreement("fwd", "fd"), detail="fwd vs fd" + EMULATED + ": derivative 0 vs 0.48")
    s.save(make_report("oneflow", "oneflow.lgamma", [tensor([1.0], name="input")], disagreements=[disagreement("rev", "fd")]))
    s.save(make_report("oneflow", "oneflow.lgamma", [tensor(1.0, name="input")], scenarios=("fwd", "rev"),
                       disagreements=[disagreement("rev", "fd"), emulated]))
    s.save(make_report("oneflow", "oneflow.digamma", [tensor(1.0, name="input")], scenarios=("fwd",),
                       disagreements=[emulated]))  # the emulation alone: nothing else to group by
    s.save(make_report("oneflow", "oneflow.digamma", [tensor(1.0, name="input")], disagreements=[disagreement("rev", "fd")]))
    got = sorted(line.split(" | ")[4] for line in rows(render_triage(root)) if "lgamma" in line or "digamma" in line)
    assert got == ["1", "1", "2"]


def test_one_trials_value_mismatches_in_several_modes_are_one_root_cause(tmp_path):
    # the primal output of rev, fwd and jit each differing from the direct call's in one trial:
    # three fingerprints, one defect; the same modes at another trial of another op stay apart,
    # and so do derivative mismatches of one trial (their culprit modes are one fingerprint)
    root = tmp_path / "bug_reports"
    s = Store(root)
    x, y = [tensor([0.0, 20.0, -5e37], name="a")], [tensor([1.0, 2.0], name="a")]
    for mode in ("rev", "fwd", "jit"):
        s.save(make_report("jax", "jax.numpy.cumprod", x, verdict=Verdict.VALUE_MISMATCH, scenarios=(mode,),
                           message=f"{mode} primal output differs from the direct call at out 0 (1,)"))
    for mode in ("rev", "jit"):
        s.save(make_report("jax", "jax.numpy.cumsum", y, verdict=Verdict.VALUE_MISMATCH, scenarios=(mode,),
                           seed=1 if mode == "rev" else 2,  # two trials
                           message=f"{mode} primal output differs from the direct call at out 0 (0,)"))
    for mode in ("rev", "fwd"):
        s.save(make_report("jax", "jax.numpy.sin", y, scenarios=(mode,), disagreements=[disagreement(mode, "fd")]))
    got = sorted((line.split(" | ")[2], line.split(" | ")[4]) for line in rows(render_triage(root)))
    assert got == [("`jax.numpy.cumprod`", "3"), ("`jax.numpy.cumsum`", "1"), ("`jax.numpy.cumsum`", "1"),
                   ("`jax.numpy.sin`", "1"), ("`jax.numpy.sin`", "1")]


def test_one_operations_mismatch_seen_through_more_modes_at_another_input_is_one_root_cause(tmp_path):
    # a second derivative that overflows in fwd.fwd and rev.fwd at one trial and in fwd.rev too at
    # another is one defect; so are a reduction and its raw op (tf.reduce_prod, tf.raw_ops.Prod);
    # and an operation's snake-case name and its raw op's (tf.math.cumulative_logsumexp,
    # tf.raw_ops.CumulativeLogsumexp); disjoint culprit modes (the double backward against
    # forward-over-forward) stay apart
    root = tmp_path / "bug_reports"
    s = Store(root)
    x = [tensor([0.0, 0.0], name="x")]
    for api, modes, seed in (("tf.math.cumprod", ("fwd.fwd", "rev.fwd"), 1),
                             ("tf.math.cumprod", ("fwd.fwd", "fwd.rev", "rev.fwd"), 2),
                             ("tf.reduce_prod", ("rev.rev",), 3), ("tf.raw_ops.Prod", ("rev.rev",), 4),
                             ("tf.raw_ops.Prod", ("fwd.fwd",), 5),
                             ("tf.math.cumulative_logsumexp", ("fwd.fwd",), 6),
                             ("tf.raw_ops.CumulativeLogsumexp", ("fwd.fwd",), 7)):
        s.save(make_report("tensorflow", api, x, seed=seed, scenarios=modes,
                           disagreements=[disagreement(m, "fd." + m.split(".")[1]) for m in modes]))
    got = sorted((line.split(" | ")[2], line.split(" | ")[4]) for line in rows(render_triage(root)))
    assert got == [("`tf.math.cumprod`", "2"), ("`tf.math.cumulative_logsumexp`, `tf.raw_ops.CumulativeLogsumexp`", "2"),
                   ("`tf.raw_ops.Prod`", "1"), ("`tf.raw_ops.Prod`, `tf.reduce_prod`", "2")], got


def test_the_index_stays_small_however_many_reports(tmp_path):
    root = tmp_path / "bug_reports"
    s = Store(root)
    for i in range(400):
        s.save(make_report("torch", f"torch.op{i}", [tensor([0.5] * 50, name="input")],
                           disagreements=[disagreement("rev", "fd")], message="rev vs fd: " + "long evidence " * 40))
    md, _ = with_pages(root, tmp_path)
    assert len(rows(md)) == 400 and len(md.encode()) < 100_000

