"""Errors, not tracebacks, for bad input: spec files, report files and the command line.

Whatever a user gives that is wrong ends as an error naming the file (and line), the field and
the fix: a SpecError for a spec file, a ReportError for a report, `nablafuzz: error: ...` with
exit status 2 on the command line.  The property tests feed random documents (random
structures, mutations of valid files, random bytes) to the loaders; the only exception allowed
is the loader's own error naming the file.  numpy_ref only.
"""
from __future__ import annotations

import copy
import errno
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nablafuzz.cli import main
from nablafuzz.core import codec, tensors
from nablafuzz.core.codec import TENSOR_DTYPES, from_json, to_json
from nablafuzz.core.errors import ReportError, SpecError
from nablafuzz.core.model import (ApiSpec, ArgKind, ArgSpec, Aspect, BugReport, Disagreement, Evidence, FilterOutcome,
                                  Fingerprint, InputValue, ReportStatus, TensorRecord, Tolerance, Trial, Verdict)
from nablafuzz.reports.store import encode_report, read_report
from nablafuzz.specs.equivalence import (_CLASS_FIELDS, _MEMBER_FIELDS, CROSS, EquivalenceClass, Resolved, load_classes,
                                         member_trial)
from nablafuzz.specs.spec import _API_FIELDS, _ARG_FIELDS, load_conventions, load_file, load_probe_hints

ROOT = Path(__file__).resolve().parents[1]
BROKEN = ROOT / "tests" / "specs" / "broken.yaml"
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))


def _spec_error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_file(path)
    assert str(path) in str(info.value) and "(fix: " in str(info.value), str(info.value)
    return info.value


# ---- 1. spec files: each wrong value is a SpecError naming file:line, API, field and fix ---------

@pytest.mark.parametrize("raw", [
    bytes(range(256)) * 4,  # binary: NUL bytes and invalid UTF-8
    b"library: numpy_ref\napis:\n  - name: sin\x00\n",  # UTF-8 text with a NUL byte
    b"library: numpy_ref\napis:\n  - name: \xff\xfe\n",  # invalid UTF-8
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",  # an image passed by mistake
], ids=["random-bytes", "nul", "invalid-utf8", "png"])
def test_binary_spec_file_is_a_spec_error(tmp_path, raw):
    path = tmp_path / "spec.yaml"
    path.write_bytes(raw)
    error = _spec_error(path)
    assert error.field == "(file)" and "a binary file?" in str(error), str(error)


def test_missing_spec_file_says_so_and_not_fix_the_yaml(tmp_path):
    error = _spec_error(tmp_path / "absent.yaml")
    assert "No such file" in str(error) and "YAML syntax" not in str(error)


API = "library: numpy_ref\napis:\n  - name: sin\n"


def _arg(fields: str) -> str:
    return API + "    args:\n      - name: x\n" + textwrap.indent(fields, " " * 8)


# text -> (line of the error, API named, field)
WRONG = {
    "atol-lots": (API + "    tolerance:\n      float32: {atol: lots}\n", 5, "sin", "tolerance.float32.atol"),
    "atol-negative": (API + "    tolerance:\n      float32: {atol: -1.0}\n", 5, "sin", "tolerance.float32.atol"),
    "rtol-huge-int": (API + "    tolerance:\n      float64: {rtol: " + "9" * 400 + "}\n", 5, "sin",
                      "tolerance.float64.rtol"),
    "dims-int": (_arg("dims: 5\n"), 5, "sin", "args.x.dims"),
    "dims-nested": (_arg("dims: [[m], k]\n"), 5, "sin", "args.x.dims"),
    "init-kwargs-list": (API + "    init_kwargs: [1, 2]\n", 3, "sin", "init_kwargs"),
    "init-kwargs-nonstring-key": (API + "    init_kwargs: {1: a, b: 2}\n", 3, "sin", "init_kwargs"),
    "init-mapping": (API + "    init: {a: 1}\n", 3, "sin", "init"),
    "init-item-mapping": (API + "    init: [{a: 1}]\n", 3, "sin", "init"),
    "low-above-high": (_arg("kind: int\nlow: 5\nhigh: 1\n"), 5, "sin", "args.x.low"),
    "low-text": (_arg("low: zero\n"), 5, "sin", "args.x.low"),
    "high-inf": (_arg("high: .inf\n"), 5, "sin", "args.x.high"),
    "max-size-text": (API + "    max_size: big\n", 3, "sin", "max_size"),
    "max-size-zero": (API + "    max_size: 0\n", 3, "sin", "max_size"),
    "max-size-bool": (API + "    max_size: true\n", 3, "sin", "max_size"),
    "library-unknown": ("library: pytorch\napis:\n  - name: sin\n", 1, "", "library"),
    "library-number": ("library: 5\napis:\n  - name: sin\n", 1, "", "library"),
    "apis-null": ("library: numpy_ref\napis:\n", 0, "", "apis"),
    "name-empty": ("library: numpy_ref\napis:\n  - name: ''\n", 3, "", "name"),
    "differentiable-text": (_arg("differentiable: 'no'\n"), 5, "sin", "args.x.differentiable"),
    "keyword-int": (_arg("keyword: 1\n"), 5, "sin", "args.x.keyword"),
    "optional-text": (_arg("optional: sometimes\n"), 5, "sin", "args.x.optional"),
    "module-text": (API + "    module: 'yes'\n", 3, "sin", "module"),
    "random-int": (API + "    random: 1\n", 3, "sin", "random"),
    "choices-scalar": (_arg("kind: choice\nchoices: 5\n"), 5, "sin", "args.x.choices"),
    "choices-mapping-item": (_arg("kind: choice\nchoices: [{a: 1}]\n"), 5, "sin", "args.x.choices"),
    "default-mapping": (_arg("default: {a: 1}\n"), 5, "sin", "args.x.default"),
    "domain-list": (_arg("domain: [real]\n"), 5, "sin", "args.x.domain"),
    "rank-bools": (_arg("rank: [false, true]\n"), 5, "sin", "args.x.rank"),
    "rank-too-high": (_arg("rank: [0, 1000000]\n"), 5, "sin", "args.x.rank"),
    "length-text": (_arg("kind: tensor_list\nlength: three\n"), 5, "sin", "args.x.length"),
    "values-huge-int": (_arg("values: [" + "9" * 400 + "]\n"), 5, "sin", "args.x.values"),
    "notes-list": (API + "    notes: [a, b]\n", 3, "sin", "notes"),
    "known-issues-mapping": (API + "    known_issues: {reason: r, url: 'https://x.org'}\n", 3, "sin", "known_issues"),
    "known-issue-scenarios-text": (API + "    known_issues:\n      - {reason: r, url: 'https://x.org', scenarios: 5}\n",
                                   5, "sin", "known_issues.scenarios"),
    "known-issue-verdict": (API + "    known_issues:\n      - {reason: r, url: 'https://x.org', verdict: wrong}\n",
                            5, "sin", "known_issues.verdict"),
    "known-issue-unknown-key": (API + "    known_issues:\n      - {reason: r, url: 'https://x.org', scenario: [fwd]}\n",
                                5, "sin", "known_issues"),
    "differentiable-outputs-bool": (API + "    differentiable_outputs: [true]\n", 3, "sin", "differentiable_outputs"),
    "differentiable-outputs-negative": (API + "    differentiable_outputs: [-1]\n", 3, "sin",
                                        "differentiable_outputs"),
    "unknown-keys-of-mixed-types": (API + "    1: a\n    b: 2\n", 3, "sin", "1, b"),
    "arg-unknown-keys-of-mixed-types": (_arg("null: a\nb: 2\n"), 5, "sin", "args.x"),
    "tolerance-dtype-list-key": (API + "    tolerance:\n      1: {atol: 1}\n", 5, "sin", "tolerance.1"),
}


@pytest.mark.parametrize("name", WRONG)
def test_wrong_field_is_a_spec_error_naming_file_line_api_field_and_fix(tmp_path, name):
    text, line, api, field = WRONG[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    error = _spec_error(path)
    assert error.field == field, str(error)
    assert error.api == api, str(error)
    assert (f"{path}:{line}:" in str(error)) if line else (f"{path}:" in str(error)), str(error)
    assert "__line__" not in str(error) and len(str(error)) < 600, str(error)


def test_out_of_tree_library_named_in_the_environment_is_accepted(tmp_path, monkeypatch):
    path = tmp_path / "mine.yaml"
    path.write_text("library: mylib\napis:\n  - name: sin\n")
    monkeypatch.delenv("NABLAFUZZ_ADAPTERS", raising=False)
    assert _spec_error(path).field == "library"
    monkeypatch.setenv("NABLAFUZZ_ADAPTERS", "mylib=my_backend:make_adapter")
    assert load_file(path)[0].library == "mylib"


def test_a_huge_value_is_shown_shortened(tmp_path):
    # YAML aliases make a value of 10**7 items from a few lines; the message shows its beginning
    lines = ["library: numpy_ref", "l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 10)}]" for k in range(1, 7)]
    lines += ["apis:", "  - name: sin", "    capabilities: *l6"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    error = _spec_error(path)
    assert error.field == "capabilities" and len(str(error)) < 1000


@pytest.mark.parametrize("text, field", [
    ("conventions:\n- {library: jax, apis: [1, null], reason: r, url: 'https://x.org'}\n", "conventions"),
    ("conventions:\n- {library: jax, apis: [f], reason: r, url: 'https://x.org', verdict: [x]}\n",
     "conventions.verdict"),
    ("conventions:\n", "conventions"),
], ids=["apis-not-names", "verdict-list", "null"])
def test_malformed_convention_table_is_a_spec_error(tmp_path, text, field):
    path = tmp_path / "conventions.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_conventions(path)
    assert str(path) in str(info.value) and info.value.field == field


@pytest.mark.parametrize("text, field", [
    ("hints:\n  tensorflow: 5\n", "hints.tensorflow"),
    ("hints:\n  tensorflow:\n  - {api: tf.f, reason: r, domain: [real]}\n", "domain"),
    ("hints:\n  tensorflow:\n  - {api: tf.f, reason: r, drop: maybe}\n", "drop"),
    ("hints:\n  tensorflow:\n  - {api: tf.f, reason: r, args: [x]}\n", "args"),
    ("hints:\n  tensorflow:\n  - {api: tf.f, reason: r, 1: x, b: y}\n", "1, b"),
], ids=["rows-not-a-list", "domain-list", "drop-text", "args-list", "unknown-keys-of-mixed-types"])
def test_malformed_probe_hint_is_a_spec_error(tmp_path, text, field):
    path = tmp_path / "probe_hints.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_probe_hints(path, "tensorflow")
    assert str(path) in str(info.value) and info.value.field == field


# ---- 2a. random YAML to the spec loader: a SpecError naming the file, or a well-typed spec ------

WORDS = sorted(_API_FIELDS | _ARG_FIELDS | {
    "library", "apis", "atol", "rtol", "reason", "url", "scenarios", "verdict", "when", "float32", "float64",
    "int64", "tensor", "int", "choice", "tensor_list", "real", "positive", "x", "y", "numpy_ref", "pytorch", "rev",
    "fwd", "rev.rev", "kink", "https://example.org/1", "derivative_mismatch", "subgradient", "observed"})
SCALARS = (st.none() | st.booleans() | st.integers() | st.sampled_from([10 ** 400, -1, 0, 1, 3, 2 ** 63])
           | st.floats() | st.text(max_size=6) | st.sampled_from(WORDS) | st.dates() | st.binary(max_size=4))
KEYS = st.sampled_from(WORDS) | st.text(max_size=4) | st.integers(-2, 2) | st.none() | st.booleans()
TREES = st.recursive(SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(KEYS, c, max_size=5),
                     max_leaves=25)
ARGS = st.dictionaries(st.sampled_from(sorted(_ARG_FIELDS)), TREES, max_size=4).map(lambda d: {"name": "x", **d})
APIS = st.fixed_dictionaries({"name": st.sampled_from(["sin", "f"]) | TREES}, optional={
    "args": st.lists(ARGS | TREES, max_size=3), **{k: TREES for k in sorted(_API_FIELDS - {"name", "args"})}})
SPECLIKE = st.fixed_dictionaries({"library": st.sampled_from(["numpy_ref", "pytorch"]) | TREES,
                                  "apis": st.lists(APIS | TREES, max_size=3)})
VALID_SPEC = """
library: numpy_ref
apis:
  - name: "mylib:op"
    dtypes: [float64, float32]
    capabilities: [rev, fwd, rev.rev]
    differentiable_outputs: [0]
    module: true
    init: [3, [2, 2], 0.5]
    init_kwargs: {bias: false}
    random: true
    kinks: none
    max_size: 16
    notes: a custom op
    tolerance:
      float32: {atol: 1.0e-4, rtol: 1.0e-3}
    known_issues:
      - {reason: double backward wrong, url: "https://example.org/issues/1", scenarios: [rev.rev]}
    args:
      - {name: x, dtypes: [float64], rank: [1, 2], domain: positive, values: [0.5, 1.5]}
      - {name: y, same_shape_as: x, differentiable: false}
      - {name: axis, kind: axis, of: x, optional: true}
      - {name: mode, kind: choice, choices: [a, b], default: a}
      - {name: xs, kind: tensor_list, length: 2}
      - {name: k, kind: int, low: 1, high: 4, keyword: true}
      - {name: a, dims: [m, 2]}
"""
BASES = [yaml.safe_load(BROKEN.read_text()), yaml.safe_load(VALID_SPEC)]


def _paths(x, at=()):
    yield at
    children = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
    for k, v in children:
        yield from _paths(v, at + (k,))


def _mutated(bases, trees, keys):
    """A valid document with 1-3 values replaced, removed or added at random places."""
    @st.composite
    def draw_one(draw):
        doc = copy.deepcopy(draw(st.sampled_from(bases)))
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.sampled_from(list(_paths(doc))))
            if not at:
                continue
            parent = doc
            for k in at[:-1]:
                parent = parent[k]
            op = draw(st.sampled_from(["replace", "remove", "add"]))
            # a drawn tree is copied: sampled_from hands out the same dict each time, and a later
            # edit of this document must not change what the next example draws
            if op == "replace":
                parent[at[-1]] = copy.deepcopy(draw(trees))
            elif op == "remove":
                del parent[at[-1]]
            elif isinstance(parent, dict):
                parent[draw(keys)] = copy.deepcopy(draw(trees))
            else:
                parent.append(copy.deepcopy(draw(trees)))
        return doc
    return draw_one()


def _byte_edits(draw, raw: bytes, rounds: int, tokens) -> bytes:
    """`raw` with 1..rounds chunks (random bytes or YAML tokens) inserted, removed or replaced."""
    raw = bytearray(raw)
    for _ in range(draw(st.integers(1, rounds))):
        i = draw(st.integers(0, len(raw)))
        chunk = draw(st.binary(min_size=1, max_size=3) | st.sampled_from(tokens))
        op = draw(st.integers(0, 2))
        if op == 0:
            raw[i:i] = chunk
        elif op == 1:
            del raw[i:i + len(chunk)]
        else:
            raw[i:i + len(chunk)] = chunk
    return bytes(raw)


@st.composite
def _text_mutated(draw):
    """A valid spec file's bytes with a few bytes or YAML tokens inserted, removed or replaced."""
    return _byte_edits(draw, draw(st.sampled_from([BROKEN.read_bytes(), VALID_SPEC.encode()])), 5,
                       [b":", b"-", b"[", b"{", b"\n", b" ", b"&a", b"*a", b"!!set", b"'", b'"', b"!!binary", b"\t"])


def _dump(doc) -> bytes:
    return yaml.dump(doc, Dumper=yaml.SafeDumper, allow_unicode=True).encode()


SPEC_DOCUMENTS = st.one_of(SPECLIKE.map(_dump), _mutated(BASES, TREES, KEYS).map(_dump), TREES.map(_dump),
                           _text_mutated(), st.binary(max_size=64))


def _well_typed(spec: ApiSpec) -> None:
    """An accepted spec has every field of its declared type (the codec checks each one)."""
    from_json(ApiSpec, json.loads(json.dumps(to_json(spec))))
    assert spec.library == "numpy_ref" and spec.name
    assert spec.max_size is None or spec.max_size >= 1
    for a in spec.args + tuple(a for o in spec.overloads for a in o):
        assert a.low is None or a.high is None or a.low <= a.high


@FUZZ
@given(SPEC_DOCUMENTS)
@example(b"library: numpy_ref\napis:\n  - name: sin\n    init_kwargs: [1]\n")
@example(b"library: numpy_ref\napis: null\n")
@example(b"\xff\xfe\x00")
@example(b"library: numpy_ref\napis:\n  - name: f\n    1: a\n    b: 2\n")
@example(b"library: numpy_ref\napis:\n  - name: f\n    args: [{name: x, domain: [a]}]\n")
def test_random_spec_documents_give_a_spec_error_or_a_well_typed_spec(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("spec") / "fuzzed.yaml"
    path.write_bytes(raw)
    try:
        specs = load_file(path)
    except SpecError as exc:
        assert str(path) in str(exc) and "(fix: " in str(exc), str(exc)
        return
    for spec in specs:
        _well_typed(spec)


CONVENTION_BASE = yaml.safe_load((ROOT / "tests" / "specs" / "cross" / "conventions.yaml").read_text())
HINTS_BASE = {"hints": {"tensorflow": [{"api": "tf.reverse", "reason": "r", "url": "https://x.org", "drop": False,
                                        "domain": "positive", "args": {"axis": {"kind": "choice"}}}]}}


@FUZZ
@given(st.one_of(_mutated([CONVENTION_BASE, HINTS_BASE], TREES, KEYS), TREES))
@example({"hints": {"tensorflow": [{"api": "f", "reason": "r", "domain": ["x"]}]}})
@example({"hints": {"tensorflow": 5}})
def test_random_conventions_and_probe_hints_give_only_spec_errors(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("tables") / "table.yaml"
    path.write_bytes(_dump(doc))
    for load in (load_conventions, lambda p: load_probe_hints(p, "tensorflow")):
        try:
            load(path)
        except SpecError as exc:
            assert str(path) in str(exc), str(exc)


# ---- 2b. random JSON to the report decoder: only a ReportError naming the file ---------------------

def _report() -> BugReport:
    x = TensorRecord("float64", (2,), (0.5, float("nan")))
    trial = Trial("numpy_ref", "sin", 7, "float64", (InputValue("x", ArgKind.TENSOR, x, True),
                                                     InputValue("k", ArgKind.CHOICE, (2, 3))))
    d = Disagreement(Aspect.DERIVATIVE, ("fwd", "rev"), 1, "float64", Tolerance(1e-6, 1e-5), 1.0, float("inf"),
                     1.0, 0.5)
    evidence = Evidence("fwd disagrees", "wrong", (d,), (FilterOutcome("kink", False, "no kink", ("fwd",)),))
    fp = Fingerprint("numpy_ref", "sin", Verdict.DERIVATIVE_MISMATCH, ("fwd",), 1)
    return BugReport(fp, "0123456789abcdef", ReportStatus.NEW, "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", 2,
                     ("numpy 1.26",), trial, evidence, 4, 2, ("c-1",), history=("t1",))


REPORT_BASES = [json.loads(encode_report(_report()))] + [
    json.loads(p.read_text()) for p in sorted(ROOT.glob("bug_reports/*/*/*.json"))[:5] if p.parts[-3] != "_campaigns"]
JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=8) | st.sampled_from([10 ** 400, -10 ** 400, 2 ** 63, "nan", "inf", "new", "crash",
                                                         "rev", "tensor", "float64", {"float": "nan"}, {"float": 1}]))
JSON_KEYS = st.text(max_size=8) | st.sampled_from(["float", "dtype", "shape", "values", "name", "kind", "value",
                                                   "schema", "report", "verdict", "status"])
JSON_TREES = st.recursive(JSON_SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(JSON_KEYS, c, max_size=4),
                          max_leaves=20)
REPORT_DOCUMENTS = st.one_of(_mutated(REPORT_BASES, JSON_TREES, JSON_KEYS), JSON_TREES,
                             JSON_TREES.map(lambda r: {"schema": 1, "report": r}))


def _with(path, value):
    doc = copy.deepcopy(REPORT_BASES[0])
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return doc


@FUZZ
@given(REPORT_DOCUMENTS)
@example(_with(("report", "evidence", "disagreements", 0, "actual"), 10 ** 400))
@example(_with(("report", "fingerprint", "verdict"), [["deep"]]))
@example(_with(("report", "occurrences"), True))
def test_random_report_json_gives_only_report_errors(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("report") / "fuzzed.json"
    path.write_text(json.dumps(doc))
    try:
        read_report(path)
    except ReportError as exc:
        assert str(path) in str(exc), str(exc)


def test_the_decoder_still_reads_valid_reports(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(encode_report(_report()))
    assert encode_report(read_report(path)) == encode_report(_report())  # (NaN is not equal to itself)
    for p in ROOT.glob("bug_reports/*/*/*.json"):
        if p.parts[-3] != "_campaigns":
            read_report(p)


@pytest.mark.parametrize("tp, value", [
    (float, 10 ** 400), (int, True), (Verdict, [1, 2]), (Verdict, {"a": 1}), (ReportStatus, None)],
    ids=["huge-int-as-float", "bool-as-int", "list-as-enum", "object-as-enum", "null-as-enum"])
def test_from_json_raises_value_error_only(tp, value):
    with pytest.raises(ValueError) as info:
        from_json(tp, value)
    assert len(str(info.value)) < 400


def test_deeply_nested_report_is_a_report_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ReportError):
        read_report(path)


# ---- 3. the command line: `nablafuzz: error: ...`, exit status 2, never a traceback ---------------

def _main(capsys, *argv: str):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.mark.parametrize("option, value", [
    ("-l", ","), ("--libraries", ""), ("--scenarios", " , ")], ids=["libraries-comma", "libraries-empty", "scenarios"])
def test_empty_list_option_is_an_error(capsys, tmp_path, option, value):
    # the old code ran every library (or no scenario) for the whole budget instead
    code, _, err = _main(capsys, "campaign", option, value, "--api", "sin", "--trials", "1", "--budget", "5",
                         "--spec-dir", str(ROOT / "api_specs"), "--store", str(tmp_path / "s"),
                         "--campaign-dir", str(tmp_path / "c"))
    assert code == 2
    assert err.splitlines()[-1].startswith("nablafuzz: error: argument ") and option.lstrip("-")[:4] in err
    assert "fix:" in err and not (tmp_path / "c").exists()


def test_usage_error_reads_like_every_other_error(capsys):
    code, _, err = _main(capsys, "campaign", "--trials", "many")
    assert code == 2 and err.splitlines()[-1].startswith("nablafuzz: error: argument --trials")


@pytest.mark.parametrize("argv", [("specs", "check"), ("specs", "list"), ("specs", "check", "numpy_ref")])
def test_specs_outside_a_checkout_names_the_directory_and_spec_dir(capsys, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    code, _, err = _main(capsys, *argv)
    assert code == 2
    assert err.startswith("nablafuzz: error: api_specs") and "does not exist" in err and "--spec-dir" in err


def test_specs_list_of_a_library_without_specs_is_an_error(capsys):
    code, _, err = _main(capsys, "specs", "list", "pytorch", "--spec-dir", str(ROOT / "api_specs"))
    assert code == 2 and "'pytorch'" in err and "numpy_ref" in err and "fix:" in err


def test_campaign_with_missing_spec_dir_names_it(capsys, tmp_path):
    code, _, err = _main(capsys, "campaign", "-l", "numpy_ref", "--spec-dir", str(tmp_path / "nope"),
                         "--store", str(tmp_path / "s"), "--campaign-dir", str(tmp_path / "c"))
    assert code == 2 and str(tmp_path / "nope") in err and "--spec-dir" in err


@pytest.mark.parametrize("make", ["missing", "file"])
def test_triage_of_a_missing_store_is_an_error(capsys, tmp_path, make):
    store = tmp_path / "store"
    if make == "file":
        store.write_text("not a store")
    code, out, err = _main(capsys, "triage", "--store", str(store))
    assert code == 2 and out == ""
    assert str(store) in err and ("does not exist" if make == "missing" else "not a directory") in err
    assert "--store" in err


def _empty_store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    store.mkdir()
    return store


def test_triage_out_below_a_regular_file_is_a_clear_error(capsys, tmp_path):
    # as root, chmod does not stop a write: a regular file where a directory is needed does
    (tmp_path / "blocker").write_text("")
    out = tmp_path / "blocker" / "triage.md"
    code, _, err = _main(capsys, "triage", "--store", str(_empty_store(tmp_path)), "--out", str(out))
    assert code == 2
    assert err.startswith(f"nablafuzz: error: cannot write {tmp_path / 'blocker'}") and "; fix: " in err


@pytest.mark.parametrize("number, fix", [
    (errno.EACCES, "write access"), (errno.EROFS, "read-only"), (errno.ENOSPC, "free some disk space"),
    (errno.EDQUOT, "quota")], ids=["EACCES", "EROFS", "ENOSPC", "EDQUOT"])
def test_triage_write_failure_names_file_reason_and_fix(capsys, tmp_path, monkeypatch, number, fix):
    out = tmp_path / "triage.md"

    def fail(path, text):
        raise OSError(number, os.strerror(number), str(path))
    monkeypatch.setattr("nablafuzz.reports.triage.write_atomic", fail)
    code, _, err = _main(capsys, "triage", "--store", str(_empty_store(tmp_path)), "--out", str(out))
    assert code == 2
    assert err == f"nablafuzz: error: cannot write {out}: {os.strerror(number)}; fix: " + err.split("; fix: ", 1)[1]
    assert fix in err


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-m", "nablafuzz", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=120)


def test_campaign_into_an_unwritable_store_is_a_clear_error(tmp_path):
    (tmp_path / "blocker").write_text("")
    store = tmp_path / "blocker" / "store"
    r = _run("campaign", "-l", "numpy_ref", "--api", "sin", "--trials", "2", "--store", str(store),
             "--campaign-dir", str(tmp_path / "campaigns"), "--spec-dir", str(ROOT / "api_specs"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith(f"nablafuzz: error: cannot write {tmp_path / 'blocker'}") and "; fix: " in last, last


def test_campaign_on_a_full_disk_is_a_clear_error(capsys, tmp_path, monkeypatch):
    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr("nablafuzz.reports.store.write_atomic", full)
    code, _, err = _main(capsys, "campaign", "-l", "numpy_ref", "--api", "sin", "--trials", "2", "--workers", "1",
                         "--store", str(tmp_path / "store"), "--campaign-dir", str(tmp_path / "campaigns"),
                         "--spec-dir", str(ROOT / "api_specs"))
    assert code == 2
    last = err.splitlines()[-1]
    assert last.startswith(f"nablafuzz: error: cannot write {tmp_path / 'store'}") and "No space left" in last
    assert "re-run the same command" in last


def test_bad_spec_file_on_the_command_line_is_an_error_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(bytes(range(256)))
    r = _run("campaign", "-l", "numpy_ref", "--specs", str(bad), "--store", str(tmp_path / "s"),
             "--campaign-dir", str(tmp_path / "c"), "--spec-dir", str(ROOT / "api_specs"), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"nablafuzz: error: {bad}: field '(file)'") and "binary" in r.stderr


# ---- 4. the equivalence map: classes, or a SpecError naming file:line, class, field and fix ------




def _map(member: str = "", cls: str = "", args: str = "[x]") -> str:
    """A valid map of one class `c` (line 2) whose second member (jax, line 7 when `cls` is empty)
    gets `member`'s extra lines."""
    return ("classes:\n- id: c\n  reference: torch:f\n  args: " + args + "\n" + cls
            + "  members:\n  - {library: torch, api: f}\n  - library: jax\n    api: g\n" + member)


# text -> (line of the error, class named, field)
WRONG_MAPS = {
    "class-keys-of-mixed-types": (_map(cls="  1: a\n  null: b\n"), 2, "c", "classes.c"),
    "class-id-a-mapping": (_map().replace("id: c", "id: {a: 1}"), 2, "classes[0]", "id"),
    "class-id-empty": (_map().replace("id: c", "id: ''"), 2, "classes[0]", "id"),
    "evidence-a-mapping": (_map(cls="  evidence: {a: 1}\n"), 2, "c", "evidence"),
    "why-a-list": (_map(cls="  why: [a]\n"), 2, "c", "why"),
    "args-a-number": (_map(args="[x, 1]"), 2, "c", "args"),
    "args-a-null-entry": (_map(args="[x, null]"), 2, "c", "args"),
    "args-a-nested-list": (_map(args="[[x]]"), 2, "c", "args"),
    "args-twice": (_map(args="[x, x]"), 2, "c", "args"),
    "member-keys-of-mixed-types": (_map("    1: a\n    null: b\n"), 7, "c", "members"),
    "member-library-a-number": (_map().replace("library: jax", "library: 5"), 7, "c", "library"),
    "rename-keys-of-mixed-types": (_map("    rename: {1: y, x: z}\n"), 7, "c", "members.rename"),
    "rename-null-name": (_map("    rename: {x: null}\n"), 7, "c", "members.rename"),
    "rename-two-to-one": (_map("    rename: {x: a, y: a}\n", args="[x, y]"), 7, "c", "members.rename"),
    "fixed-a-number-key": (_map("    fixed: {1: a, b: 2}\n"), 7, "c", "members.fixed"),
    "fixed-a-mapping-value": (_map("    fixed: {approximate: {a: 1}}\n"), 7, "c", "members.fixed"),
    "fixed-a-date": (_map("    fixed: {d: 2024-01-01}\n"), 7, "c", "members.fixed"),
    "fixed-a-canonical-argument": (_map("    fixed: {x: 1}\n"), 7, "c", "members.fixed"),
    "fixed-a-list": (_map("    fixed: [ord, fro]\n"), 7, "c", "members.fixed"),
    "prefix-a-mapping-item": (_map("    prefix: [{a: 1}]\n"), 7, "c", "members.prefix"),
    "prefix-a-string": (_map("    prefix: ij->i\n"), 7, "c", "members.prefix"),
    "transpose-keys-of-mixed-types": (_map("    transpose: {1: [0, 1], x: [1, 0]}\n"), 7, "c", "members.transpose"),
    "transpose-repeated-axis": (_map("    transpose: {x: [0, 0]}\n"), 7, "c", "members.transpose"),
    "transpose-missing-axis": (_map("    transpose: {x: [0, 2]}\n"), 7, "c", "members.transpose"),
    "transpose-bools": (_map("    transpose: {x: [true, false]}\n"), 7, "c", "members.transpose"),
    "transpose-empty": (_map("    transpose: {x: []}\n"), 7, "c", "members.transpose"),
    "transpose-a-number": (_map("    transpose: {x: 5}\n"), 7, "c", "members.transpose"),
    "transpose-not-an-argument": (_map("    transpose: {y: [1, 0]}\n"), 7, "c", "members.transpose"),
    "keyword-not-an-argument": (_map("    keyword: [y]\n"), 7, "c", "members.keyword"),
    "keyword-a-number": (_map("    keyword: [1]\n"), 7, "c", "members.keyword"),
    "keyword-and-positional": (_map("    keyword: [x]\n    positional: [x]\n"), 7, "c", "members.keyword"),
}


@pytest.mark.parametrize("name", WRONG_MAPS)
def test_wrong_map_field_is_a_spec_error_naming_file_line_class_field_and_fix(tmp_path, name):
    text, line, cls, field = WRONG_MAPS[name]
    path = tmp_path / "equivalence.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_classes(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: {cls}: field '{field}': ") and "(fix: " in message, message
    assert "__line__" not in message and len(message) < 600, message


def test_the_wrong_map_template_itself_loads(tmp_path):
    path = tmp_path / "equivalence.yaml"
    path.write_text(_map("    rename: {x: y}\n    fixed: {approximate: [1, [2]]}\n    prefix: ['i->i']\n"
                         "    transpose: {x: [1, 0], '': [1, 0]}\n    keyword: [x]\n"))
    (c,) = load_classes(path)
    jax = c.member("jax")
    assert (c.id, c.args, jax.rename, jax.fixed) == ("c", ("x",), (("x", "y"),), (("approximate", (1, (2,))),))
    assert (jax.prefix, jax.transpose, jax.keyword) == (("i->i",), (("", (1, 0)), ("x", (1, 0))), ("x",))


@pytest.mark.parametrize("text, field", [
    ("- a\n- b\n", "classes"), ("classes: [1]\n", "classes"), ("classes: [x]\nextra: 1\n", "extra"),
    ("", "classes"), ("classes: null\n", "classes")])
def test_malformed_map_outside_a_class_names_the_file(tmp_path, text, field):
    path = tmp_path / "equivalence.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_classes(path)
    assert info.value.field == field and str(path) in str(info.value) and "(fix: " in str(info.value)


def _equivalence_bases():
    """A few committed classes, one per document: renames, keyword and positional arguments,
    written-out arguments, fixed values, an einsum prefix and a transpose."""
    derived = yaml.safe_load((ROOT / "api_specs" / "equivalence.yaml").read_text())["classes"]
    manual = yaml.safe_load((ROOT / "api_specs" / "equivalence_manual.yaml").read_text())["classes"]
    picked = [c for c in derived if c["id"] in {"abs", "cumsum", "avg_pool2d", "bce_with_logits", "einsum_batch_dot"}]
    picked.append(next(c for c in derived if any("positional" in m for m in c["members"])))
    picked += [c for c in manual if c["id"] in {"gelu", "var_population"}]
    assert len(picked) == 8
    return [{"classes": [c]} for c in picked] + [{"classes": picked[:2]}]


EQUIV_BASES = _equivalence_bases()
EQUIV_WORDS = sorted((_CLASS_FIELDS | _MEMBER_FIELDS | {"classes", "x", "input", "name", "kind", "dims", "torch",
                                                        "jax", "torch:f", "f", "g", ""}) - {"__line__"})
EQUIV_SCALARS = SCALARS | st.sampled_from(EQUIV_WORDS)
EQUIV_KEYS = KEYS | st.sampled_from(EQUIV_WORDS)
EQUIV_TREES = st.recursive(EQUIV_SCALARS | st.permutations([0, 1, 2]),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(EQUIV_KEYS, c, max_size=4),
                           max_leaves=20)
def _mostly(valid, trees=EQUIV_TREES):
    """`valid` three times in four, else any tree (so that later fields are reached as well)."""
    return st.one_of(valid, valid, valid, trees)


def _unique(key):
    """The first item of each key (mostly distinct libraries and ids: else the map is refused early)."""
    def first(items):
        seen = set()
        return [x for x in items if not (key(x) in seen or seen.add(key(x)))]
    return first


def _library(member):
    return repr(member.get("library")) if isinstance(member, dict) else repr(member)


def _class_id(cls):
    return repr(cls.get("id")) if isinstance(cls, dict) else repr(cls)


def _maps(mostly):
    """Map-like documents: each field `mostly(a valid value)`."""
    member = st.fixed_dictionaries(
        {"library": mostly(st.sampled_from(["torch", "jax", "tensorflow"])),
         "api": mostly(st.sampled_from(["f", "g"]))},
        optional={"rename": mostly(st.dictionaries(st.sampled_from(["x", "y"]), st.sampled_from(["a", "b"]))),
                  "keyword": mostly(st.lists(st.sampled_from(["x", "y"]), max_size=2)),
                  "positional": mostly(st.lists(st.sampled_from(["x", "y"]), max_size=2)),
                  "fixed": mostly(st.dictionaries(st.sampled_from(["ord", "dim", "x"]), SCALARS | st.lists(SCALARS))),
                  "prefix": mostly(st.lists(st.sampled_from(["ij->i", 1]))),
                  "transpose": mostly(st.dictionaries(st.sampled_from(["x", ""]), st.permutations([0, 1, 2])))})
    cls = st.fixed_dictionaries(
        {"id": mostly(st.sampled_from(["c", "d", "e"])),
         "reference": mostly(st.sampled_from(["torch:f", "jax:g", "tensorflow:f"])),
         "args": mostly(st.lists(st.sampled_from(["x", "y"]), max_size=2, unique=True) | st.lists(ARGS, max_size=1)),
         "members": mostly(st.lists(mostly(member), min_size=1, max_size=3).map(_unique(_library)))},
        optional={"evidence": mostly(st.text(max_size=5)), "why": mostly(st.text(max_size=5))})
    return st.fixed_dictionaries({"classes": st.lists(mostly(cls), max_size=3).map(_unique(_class_id))})


EQUIVLIKE = _maps(_mostly)
EQUIV_WELL_FORMED = _maps(lambda valid: valid)  # every field of its type: the checks across fields are reached


@st.composite
def _equivalence_text_mutated(draw):
    """A valid map's bytes with a few bytes or YAML tokens inserted, removed or replaced."""
    return _byte_edits(draw, _dump(draw(st.sampled_from(EQUIV_BASES))), 4,
                       [b":", b"-", b"[", b"{", b"\n", b" ", b"1", b"null", b"&a", b"*a", b"'", b"{a: 1}", b"\t"])


EQUIV_MUTATED = _mutated(EQUIV_BASES, EQUIV_TREES, EQUIV_KEYS).map(_dump)
EQUIVALENCE_DOCUMENTS = st.one_of(EQUIVLIKE.map(_dump), EQUIV_WELL_FORMED.map(_dump), EQUIV_MUTATED, EQUIV_MUTATED,
                                  EQUIV_TREES.map(_dump), _equivalence_text_mutated())


def _usable(cls: EquivalenceClass) -> None:
    """A loaded class is typed all the way down, and each member's call can be built."""
    hash(cls.members)  # frozen: no list or mapping (nor the loader's `__line__`) left in a member
    assert isinstance(cls.id, str) and cls.id and cls.reference in {m.id for m in cls.members}
    assert all(isinstance(a, str) and a for a in cls.args) and len(set(cls.args)) == len(cls.args)
    assert isinstance(cls.evidence, str) and isinstance(cls.why, str)
    for a in cls.arg_specs:
        from_json(ArgSpec, json.loads(json.dumps(to_json(a))))
    for m in cls.members:
        assert isinstance(m.library, str) and isinstance(m.api, str)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in m.rename)
        assert all(isinstance(k, str) for k, _ in m.fixed + m.transpose)
        assert all(sorted(p) == list(range(len(p))) for _, p in m.transpose)
    x = TensorRecord("float64", (1,), (0.5,))
    trial = Trial(CROSS, cls.id, 0, "float64", tuple(InputValue(n, ArgKind.TENSOR, x, True) for n in cls.args))
    r = Resolved(cls, ApiSpec(CROSS, cls.id, cls.arg_specs),
                 tuple((m.library, ApiSpec(m.library, m.api, cls.arg_specs)) for m in cls.members))
    for m in cls.members:
        from_json(Trial, json.loads(json.dumps(to_json(member_trial(r, m.library, trial)))))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(EQUIVALENCE_DOCUMENTS)
@example(_map(cls="  1: a\n  null: b\n").encode())
@example(_map("    rename: {1: y, x: z}\n").encode())
@example(_map("    fixed: {approximate: {a: 1}}\n").encode())
@example(_map("    transpose: {1: [0], x: [0]}\n").encode())
@example(_map(args="[x, 1.5]").encode())
@example(b"classes:\n- 5\n")
def test_random_equivalence_maps_give_a_spec_error_or_usable_classes(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("map") / "equivalence.yaml"
    path.write_bytes(raw)
    try:
        classes = load_classes(path)
    except SpecError as exc:
        assert str(path) in str(exc) and "(fix: " in str(exc), str(exc)
        assert "__line__" not in str(exc), str(exc)
        if exc.api:  # inside a class: the error says where it is
            assert re.fullmatch(rf"{re.escape(str(path))}:[1-9][0-9]*", exc.source), exc.source
        return
    for cls in classes:
        _usable(cls)


def test_every_committed_map_loads_and_is_usable():
    for name in ("equivalence.yaml", "equivalence_manual.yaml"):
        classes = load_classes(ROOT / "api_specs" / name)
        assert classes
        for cls in classes:
            _usable(cls)


# ---- 5. hand-edited report tensors: a ReportError naming the file, not a numpy traceback later ----



def _numpy_ref_report() -> dict:
    from repro_ops import disagreement, make_report, tensor
    report = make_report("numpy_ref", "sin", [tensor([1.0, 2.0])], disagreements=[disagreement("rev", "fd")])
    return json.loads(encode_report(report))


def _x(doc: dict) -> dict:
    return doc["report"]["trial"]["inputs"][0]["value"]


# edit of the report -> what the message names
TENSOR_EDITS = {
    "shape-over-values": (lambda d: _x(d).update(shape=[3]), "shape [3] holds 3 values, but 2 are given"),
    "shape-under-values": (lambda d: _x(d).update(shape=[1]), "shape [1] holds 1 values, but 2 are given"),
    "negative-dim": (lambda d: _x(d).update(shape=[-2]), "TensorRecord.shape"),
    "negative-dims-of-the-right-product": (lambda d: _x(d).update(shape=[-1, -2]), "TensorRecord.shape"),
    "rank-40": (lambda d: _x(d).update(shape=[1] * 40, values=[1.0]), "TensorRecord.shape"),
    "huge-dim-of-an-empty-tensor": (lambda d: _x(d).update(shape=[0, 2 ** 40], values=[]), "TensorRecord.shape"),
    "unknown-dtype": (lambda d: _x(d).update(dtype="float8"), "TensorRecord.dtype"),
    "complex-dtype": (lambda d: _x(d).update(dtype="complex64"), "TensorRecord.dtype"),
    "object-dtype": (lambda d: _x(d).update(dtype="object"), "TensorRecord.dtype"),
    "string-value": (lambda d: _x(d).update(values=["1.0", 2.0]), "TensorRecord.values"),
    "nested-values": (lambda d: _x(d).update(values=[[1.0], [2.0]]), "TensorRecord.values"),
    "bool-in-a-float-tensor": (lambda d: _x(d).update(values=[True, 2.0]), "TensorRecord.values"),
    "huge-int-in-a-float-tensor": (lambda d: _x(d).update(values=[10 ** 400, 2.0]), "TensorRecord.values"),
    "fraction-in-an-int-tensor": (lambda d: _x(d).update(dtype="int64", values=[1.5, 2]), "TensorRecord.values"),
    "int32-out-of-range": (lambda d: _x(d).update(dtype="int32", values=[2 ** 40, 2]), "TensorRecord.values"),
    "number-in-a-bool-tensor": (lambda d: _x(d).update(dtype="bool", values=[1, 0]), "TensorRecord.values"),
    "trial-dtype-int": (lambda d: d["report"]["trial"].update(dtype="int64"), "Trial.dtype"),
    "trial-dtype-unknown": (lambda d: d["report"]["trial"].update(dtype="float128"), "Trial.dtype"),
}


def _edited_report(tmp_path: Path, name: str) -> Path:
    doc = _numpy_ref_report()
    TENSOR_EDITS[name][0](doc)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("name", TENSOR_EDITS)
def test_hand_edited_tensor_is_a_report_error_naming_file_and_field(tmp_path, name):
    path = _edited_report(tmp_path, name)
    with pytest.raises(ReportError) as info:
        read_report(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid report: ") and TENSOR_EDITS[name][1] in message, message
    assert "fix: " in message and len(message) < 800, message


def test_the_unedited_tensor_report_loads(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(_numpy_ref_report()))
    assert read_report(path).trial.inputs[0].value == TensorRecord("float64", (2,), (1.0, 2.0))


@pytest.mark.parametrize("name", ["shape-over-values", "unknown-dtype", "negative-dim", "trial-dtype-int"])
def test_replay_of_a_hand_edited_tensor_is_an_error_not_a_traceback(tmp_path, name):
    path = _edited_report(tmp_path, name)
    r = _run("replay", str(path), cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"nablafuzz: error: {path}: invalid report: ") and TENSOR_EDITS[name][1] in r.stderr


def test_codec_dtype_tables_match_the_tensor_module():
    assert codec.FLOAT_DTYPES == tensors.FLOAT_DTYPES
    assert set(TENSOR_DTYPES) >= set(tensors.FLOAT_DTYPES) | {"int64", "int32", "bool"}
    import numpy as np
    for dtype in TENSOR_DTYPES:  # each one to_record writes, and to_array reads back
        rec = tensors.to_record(np.zeros((2, 1), dtype=dtype))
        assert rec.dtype == dtype and from_json(TensorRecord, to_json(rec)) == rec
        assert tensors.to_array(rec).shape == (2, 1)


TENSOR_LIKE = st.fixed_dictionaries({
    "dtype": st.sampled_from(TENSOR_DTYPES + ("float8", "complex64", "object", "", "<f8")) | JSON_SCALARS,
    "shape": st.lists(st.integers(-2, 3) | st.sampled_from([2 ** 31, 2 ** 40, 2 ** 63]), max_size=4) | JSON_TREES,
    "values": st.lists(JSON_SCALARS, max_size=6) | JSON_TREES})


@st.composite
def _tensor_records(draw):
    """Mostly shapes with the right number of values (so the value checks are reached)."""
    doc = draw(TENSOR_LIKE)
    if draw(st.booleans()) and isinstance(doc["shape"], list) and all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 3 for d in doc["shape"]):
        n = 1
        for d in doc["shape"]:
            n *= d
        doc["values"] = draw(st.lists(JSON_SCALARS | st.floats(), min_size=n, max_size=n))
    return doc


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(_tensor_records())
@example({"dtype": "float64", "shape": [-1, -2], "values": [1.0, 2.0]})
@example({"dtype": "int64", "shape": [1], "values": [2 ** 64]})
@example({"dtype": "float16", "shape": [0, 2 ** 40], "values": []})
def test_a_decoded_tensor_record_always_becomes_an_array(doc):
    try:
        rec = from_json(TensorRecord, doc)
    except ValueError as exc:
        assert len(str(exc)) < 800
        return
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a float16 overflows to inf, as numpy says
        arr = tensors.to_array(rec)
    assert arr.shape == rec.shape and arr.size == len(rec.values)
