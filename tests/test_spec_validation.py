"""Spec files: every validation error names file:line, the API and the field; valid files load."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nablafuzz.core.errors import SpecError
from nablafuzz.core.model import ArgKind, KnownIssue, Tolerance
from nablafuzz.specs.spec import load_file, load_specs

REPO = Path(__file__).resolve().parents[1]

# Each snippet marks the offending line with "# <-"; `lines` lists the acceptable line numbers
# relative to that marker (0 = the marked line, negative = the enclosing mapping's first line).
BAD = {
    "unknown-kind": ("sin", "args.x.kind", """
        library: numpy_ref
        apis:
          - name: sin
            args:
              - name: x
                kind: tensr  # <-
        """, (0, -1)),
    "unknown-domain": ("log", "args.x.domain", """
        library: numpy_ref
        apis:
          - name: log
            args:
              - name: x
                domain: positiv  # <-
        """, (0, -1)),
    "same-shape-later-arg": ("mul", "args.x.same_shape_as", """
        library: numpy_ref
        apis:
          - name: mul
            args:
              - name: x
                same_shape_as: y  # <-
              - name: y
        """, (0, -1)),
    "same-shape-unknown-arg": ("mul", "args.y.same_shape_as", """
        library: numpy_ref
        apis:
          - name: mul
            args:
              - name: x
              - name: y
                same_shape_as: z  # <-
        """, (0, -1)),
    "broadcast-unknown-arg": ("add", "args.y.broadcast_with", """
        library: numpy_ref
        apis:
          - name: add
            args:
              - name: x
              - name: y
                broadcast_with: q  # <-
        """, (0, -1)),
    "rank-reversed": ("sum", "args.x.rank", """
        library: numpy_ref
        apis:
          - name: sum
            args:
              - name: x
                rank: [3, 1]  # <-
        """, (0, -1)),
    "rank-negative": ("sum", "args.x.rank", """
        library: numpy_ref
        apis:
          - name: sum
            args:
              - name: x
                rank: [-1, 2]  # <-
        """, (0, -1)),
    "rank-text": ("sum", "args.x.rank", """
        library: numpy_ref
        apis:
          - name: sum
            args:
              - name: x
                rank: big  # <-
        """, (0, -1)),
    "bad-capability": ("exp", "capabilities", """
        library: numpy_ref
        apis:
          - name: exp
            capabilities: [rev, fwd, backward]  # <-
        """, (0, -1)),
    "known-issue-without-url": ("tanh", "known_issues", """
        library: numpy_ref
        apis:
          - name: tanh
            known_issues:
              - reason: forward mode is wrong  # <-
                scenarios: [fwd]
        """, (0, -1, -2)),
    "duplicate-name": ("sin", "name", """
        library: numpy_ref
        apis:
          - name: sin
          - name: cos
          - name: sin  # <-
        """, (0,)),
    "api-not-a-mapping": (None, "apis", """
        library: numpy_ref
        apis:
          - name: cos
          - sin  # <-
        """, (0,)),
    "arg-not-a-mapping": ("sin", "args", """
        library: numpy_ref
        apis:
          - name: sin
            args:
              - x  # <-
        """, (0, -1, -2)),
    "tolerance-unknown-key": ("sin", "tolerance.float32", """
        library: numpy_ref
        apis:
          - name: sin
            tolerance:
              float32: {atol: 1.0e-3, rtl: 0.1}  # <-
        """, (0, -1, -2)),
    "tolerance-int-dtype": ("sin", "tolerance.int32", """
        library: numpy_ref
        apis:
          - name: sin
            tolerance:
              int32: {atol: 1}  # <-
        """, (0, -1, -2)),
    "unknown-api-key": ("sin", "gradient", """
        library: numpy_ref
        apis:
          - name: sin
            gradient: yes  # <-
        """, (0, -1)),
    "bad-arg-dtype": ("sin", "args.x.dtypes", """
        library: numpy_ref
        apis:
          - name: sin
            args:
              - name: x
                dtypes: [float128]  # <-
        """, (0, -1)),
    "unknown-kink-policy": ("abs", "kinks", """
        library: numpy_ref
        apis:
          - name: abs
            kinks: ignore  # <-
        """, (0, -1)),
}


def _write(tmp_path: Path, name: str, text: str):
    text = textwrap.dedent(text).lstrip("\n")
    marker = next(i for i, line in enumerate(text.splitlines(), 1) if "# <-" in line)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path, marker


@pytest.mark.parametrize("name", BAD)
def test_malformed_spec_error_names_file_line_api_field(tmp_path, name):
    api, field, text, offsets = BAD[name]
    path, marker = _write(tmp_path, name, text)
    with pytest.raises(SpecError) as info:
        load_file(path)
    msg = str(info.value)
    allowed = [f"{path}:{marker + d}:" for d in offsets]
    assert any(a in msg for a in allowed), f"expected one of {allowed} in: {msg}"
    if api is None:  # the entry has no name: it is quoted, and no other API is named
        assert info.value.api in ("", "sin") and "'sin'" in msg, msg
    else:
        assert f" {api}: " in msg and info.value.api == api, msg
    assert f"field '{field}'" in msg and info.value.field == field, msg
    assert "(fix: " in msg, msg
    assert "__line__" not in msg, msg  # internal bookkeeping must not leak into messages


def test_api_not_a_mapping_is_not_blamed_on_its_neighbour(tmp_path):
    path, _ = _write(tmp_path, "neighbour", BAD["api-not-a-mapping"][2])
    with pytest.raises(SpecError) as info:
        load_file(path)
    assert "cos" not in str(info.value)


@pytest.mark.parametrize("text, needle", [
    ("library: numpy_ref\napis:\n  - name: sin\n    args: [x\n  - name: cos\n", "line 4"),
    ("library: numpy_ref\napis: [\n", "line 3"),
    ("library: numpy_ref\n\tapis: []\n", "line 2"),
], ids=["unclosed-flow", "eof-in-flow", "tab-indent"])
def test_yaml_syntax_error_names_file_and_line(tmp_path, text, needle):
    path = tmp_path / "syntax.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_file(path)
    msg = str(info.value)
    assert str(path) in msg and needle in msg and "YAML" in msg


@pytest.mark.parametrize("text, field", [
    ("- library: numpy_ref\n", "(file)"),
    ("apis: []\n", "library"),
    ("library: numpy_ref\n", "apis"),
    ("library: numpy_ref\napis: {name: sin}\n", "apis"),
], ids=["top-level-list", "no-library", "no-apis", "apis-mapping"])
def test_file_level_errors(tmp_path, text, field):
    path = tmp_path / "top.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_file(path)
    assert str(path) in str(info.value) and info.value.field == field


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError) as info:
        load_file(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(info.value)


VALID = """
library: numpy_ref
apis:
  - name: "mylib:op"
    dtypes: [float64, float32]
    capabilities: [rev, fwd, rev.rev]
    differentiable_outputs: [0]
    random: true
    kinks: none
    max_size: 16
    notes: a custom op
    tolerance:
      float32: {atol: 1.0e-4, rtol: 1.0e-3}
    known_issues:
      - reason: double backward wrong
        url: https://example.org/issues/1
        scenarios: [rev.rev]
        verdict: derivative_mismatch
    args:
      - name: x
        dtypes: [float64]
        rank: [1, 2]
        domain: positive
      - name: y
        same_shape_as: x
        differentiable: false
      - name: z
        broadcast_with: x
        keyword: true
      - name: axis
        kind: axis
        of: x
        optional: true
      - name: mode
        kind: choice
        choices: [a, b]
        default: a
      - name: xs
        kind: tensor_list
        length: 2
      - name: k
        kind: int
        low: 1
        high: 4
      - name: a
        dims: [m, k]
  - name: plain
"""


def test_valid_file_loads_with_right_fields(tmp_path):
    path = tmp_path / "valid.yaml"
    path.write_text(VALID.lstrip("\n"))
    spec, plain = load_file(path)
    assert spec.library == "numpy_ref" and spec.name == "mylib:op" and spec.id == "numpy_ref:mylib:op"
    assert spec.dtypes == ("float64", "float32") and spec.capabilities == ("rev", "fwd", "rev.rev")
    assert spec.differentiable_outputs == (0,) and spec.random and spec.kinks == "none"
    lines = VALID.lstrip("\n").splitlines()
    first = lines.index('  - name: "mylib:op"') + 1
    last = lines.index("  - name: plain") + 1
    assert spec.max_size == 16 and spec.notes == "a custom op" and spec.source == f"{path}:{first}"
    assert spec.tolerance == (("float32", Tolerance(1e-4, 1e-3)),)
    assert spec.known_issues == (KnownIssue("double backward wrong", "https://example.org/issues/1",
                                            ("rev.rev",), "derivative_mismatch"),)
    args = {a.name: a for a in spec.args}
    assert [a.name for a in spec.args] == ["x", "y", "z", "axis", "mode", "xs", "k", "a"]
    x = args["x"]
    assert (x.kind, x.dtypes, x.rank, x.domain, x.differentiable) == (ArgKind.TENSOR, ("float64",), (1, 2),
                                                                      "positive", True)
    assert args["y"].same_shape_as == "x" and not args["y"].differentiable
    assert args["z"].broadcast_with == "x" and args["z"].keyword and args["z"].rank == (0, 3)
    assert args["axis"].kind is ArgKind.AXIS and args["axis"].of == "x" and args["axis"].optional
    assert args["mode"].choices == ("a", "b") and args["mode"].default == "a"
    assert args["xs"].kind is ArgKind.TENSOR_LIST and args["xs"].length == (2, 2)
    assert (args["k"].kind, args["k"].low, args["k"].high) == (ArgKind.INT, 1, 4)
    assert args["a"].dims == ("m", "k")
    # defaults
    assert plain.args == () and plain.dtypes == ("float64", "float32") and not plain.random
    assert set(plain.capabilities) == {"rev", "fwd", "rev.rev", "fwd.rev", "rev.fwd", "fwd.fwd"}
    assert plain.kinks == "subgradient" and plain.source == f"{path}:{last}"


def test_load_specs_repo_numpy_ref():
    specs = load_specs(REPO / "api_specs", ["numpy_ref"])
    names = {s.name for s in specs.specs}
    assert len(specs.specs) >= 20
    assert all(s.library == "numpy_ref" for s in specs.specs)
    assert {"sin", "exp", "multiply", "matmul", "sum", "abs", "tanh"} <= names
    assert specs.get("numpy_ref", "matmul").args[0].dims == ("m", "k")


def test_load_specs_user_file_may_not_redefine_library_api(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("library: numpy_ref\napis:\n  - name: sin\n")
    with pytest.raises(SpecError) as info:
        load_specs(REPO / "api_specs", ["numpy_ref"], [extra])
    assert str(extra) in str(info.value) and "also defined" in str(info.value)


def test_load_specs_with_user_file(tmp_path):
    specs = load_specs(REPO / "api_specs", ["numpy_ref"], [REPO / "tests" / "specs" / "broken.yaml"])
    assert specs.get("numpy_ref", "broken_ops:tanh_fwd") is not None
    assert [s.name for s in specs.select(["numpy_ref"], ["broken_ops:*"])] == [
        "broken_ops:sin_tail", "broken_ops:tanh_fwd", "broken_ops:cube_second", "broken_ops:exp_raises",
        "broken_ops:noisy_sin", "broken_ops:cube_at_zero"]


# ---- probe hints ----------------------------------------------------------------------------------

def test_the_repository_probe_hints_load_with_reasons():
    from nablafuzz.specs.spec import load_probe_hints
    hints = load_probe_hints(Path(__file__).resolve().parents[1] / "api_specs" / "probe_hints.yaml", "tensorflow")
    assert hints["tf.nn.softmax_cross_entropy_with_logits"].drop
    logdet = hints["tf.linalg.logdet"]
    assert not logdet.drop and dict(logdet.args)["matrix"]["structure"] == "spd" and "positive-definite" in logdet.reason
    assert dict(hints["tf.reverse"].args)["axis"] == {"kind": "choice", "choices": [[0], [-1]]}  # no __line__
    assert hints["tf.image.rgb_to_hsv"].domain == "unit_interval"
    assert all(h.reason and h.url.startswith("https://") for h in hints.values())


@pytest.mark.parametrize("row, field", [
    ("{api: tf.reverse}", "hints.tensorflow"),
    ("{api: tf.reverse, reason: r, domain: complex}", "domain"),
    ("{api: tf.reverse, reason: r, shape: [2]}", "shape"),
], ids=["no-reason", "unknown-domain", "unknown-key"])
def test_malformed_probe_hint_names_file_field_and_fix(tmp_path, row, field):
    from nablafuzz.specs.spec import load_probe_hints
    path = tmp_path / "probe_hints.yaml"
    path.write_text(f"hints:\n  tensorflow:\n  - {row}\n")
    with pytest.raises(SpecError) as info:
        load_probe_hints(path, "tensorflow")
    assert str(path) in str(info.value) and info.value.field == field and "(fix: " in str(info.value)


def test_dropped_reasons_are_written_as_plain_one_line_comments(tmp_path):
    # OneFlow's error messages carry terminal colour codes, which YAML refuses even in comments
    from nablafuzz.specs.spec import write_specs
    out = tmp_path / "derived.yaml"
    write_specs(out, "numpy_ref", [{"name": "sin", "args": [{"name": "x"}]}], "test",
                ["oneflow.f: call fails: \x1b[1m\x1b[31mCheck failed\x1b[0m\n  at line 3"])
    assert load_file(out)[0].name == "sin"
    assert out.read_text().splitlines()[-1] == "# dropped: oneflow.f: call fails: Check failed at line 3"


def test_observed_support_makes_no_support_findings():
    # probed specs only saw support on a few trials: a mode that works or refuses against them
    # is not a finding (declared support, from OpInfo, still is)
    from nablafuzz.core.model import Execution, Outcome, ScenarioResult, Trial
    from nablafuzz.oracle.compare import compare
    from nablafuzz.specs.spec import spec_from_dict
    base = {"name": "sin", "args": [{"name": "x"}], "capabilities": ["rev"], "unsupported": ["fwd"]}
    results = (ScenarioResult("direct", Outcome.OK, outputs=()), ScenarioResult("rev", Outcome.UNSUPPORTED),
               ScenarioResult("fwd", Outcome.OK, 1.0, 1.0))
    ex = Execution(Trial("numpy_ref", "sin", 1, "float64", ()), results)
    declared = {c.verdict.value for c in compare(ex, spec_from_dict("numpy_ref", base, "t")).candidates}
    assert declared == {"missing_support", "undeclared_support"}
    observed = spec_from_dict("numpy_ref", dict(base, support="observed"), "t")
    assert compare(ex, observed).candidates == ()
    with pytest.raises(SpecError, match="support"):
        spec_from_dict("numpy_ref", dict(base, support="sometimes"), "t")
