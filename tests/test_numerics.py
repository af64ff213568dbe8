"""`nablafuzz numerics`: interval transfer functions (soundness by sampling), vulnerable-op
flags, the softmax facts, and JAX's traced graphs of the planted suite (models/numerics.yaml)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nablafuzz.cli import main
from nablafuzz.core.graph import Graph, Node, from_wire, to_wire
from nablafuzz.numerics.intervals import TOP, Interval, analyse, vulnerable
from nablafuzz.numerics.run import analyse_model
from nablafuzz.specs.models import load_model_specs

ROOT = Path(__file__).resolve().parents[1]
PLANTED = ROOT / "models/numerics.yaml"
NAMES = ["log", "log1p", "sqrt", "rsqrt", "div", "pow", "exp", "sqrt_at_zero", "norm_at_zero"]
BACKWARD_ONLY = {"sqrt_at_zero", "norm_at_zero"}

UNARY = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh, "neg": np.negative, "abs": np.abs,
         "logistic": lambda v: 1 / (1 + np.exp(-v)), "log1p": np.log1p}
BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "max": np.maximum,
          "min": np.minimum}


def _graph(op: str, n_inputs: int, attrs=(), shape=(5,)) -> Graph:
    args = tuple(Node(i, "argument", (), shape, "float64") for i in range(n_inputs))
    node = Node(n_inputs, op, tuple(range(n_inputs)), shape, "float64", attrs)
    return Graph(args + (node,), tuple((f"a{i}", i) for i in range(n_inputs)), (n_inputs,))


@pytest.mark.parametrize("op", sorted(UNARY) + sorted(BINARY) + ["integer_pow"])
def test_transfer_functions_contain_every_sampled_value(op):
    rng = np.random.default_rng(0)
    for _ in range(40):
        bounds = [np.sort(rng.uniform(-3, 3, 2)) for _ in range(2)]
        if op in ("log", "sqrt"):
            bounds[0] = np.abs(bounds[0]) + 1e-3
        if op == "log1p":
            bounds[0] = np.abs(bounds[0]) - 0.5
        if op == "div" and bounds[1][0] <= 0 <= bounds[1][1]:
            bounds[1] = np.abs(bounds[1]) + 0.1
        bounds = [np.sort(b) for b in bounds]
        n = 2 if op in BINARY else 1
        attrs = (("y", int(rng.choice([-3, -2, 2, 3]))),) if op == "integer_pow" else ()
        if op == "integer_pow" and attrs[0][1] < 0 and bounds[0][0] <= 0 <= bounds[0][1]:
            bounds[0] = np.sort(np.abs(bounds[0])) + 0.1
        g = _graph(op, n, attrs)
        result = analyse(g, {f"a{i}": Interval(*map(float, bounds[i])) for i in range(n)}).intervals[n]
        xs = [rng.uniform(b[0], b[1], 200) for b in bounds[:n]] + [np.array(b) for b in bounds[:n]]
        with np.errstate(all="ignore"):
            if op == "integer_pow":
                values = [np.float64(v) ** attrs[0][1] for v in np.concatenate([xs[0], xs[1]])]
            elif op in BINARY:
                values = BINARY[op](xs[0], xs[1])
            else:
                values = UNARY[op](np.concatenate([xs[0], xs[1]]))
        values = np.asarray(values)
        assert np.all((values >= result.lo) & (values <= result.hi)), (op, bounds, result)


def test_vulnerable_operations_and_their_clamps():
    node = lambda op, **a: Node(0, op, (1, 2), (3,), "float32", tuple(a.items()))  # noqa: E731
    assert vulnerable(node("log"), [Interval(-1, 2)]).problem.startswith("log of")
    assert vulnerable(node("log"), [Interval(0.5, 2)]) is None
    assert vulnerable(node("div"), [TOP, Interval(-1, 1)]) is not None
    assert vulnerable(node("div"), [TOP, Interval(1, 2)]) is None
    assert vulnerable(node("exp"), [Interval(0, 100)]) is not None and vulnerable(node("exp"), [Interval(0, 80)]) is None
    assert vulnerable(node("integer_pow", y=-1), [Interval(-1, 1)]) is not None
    assert vulnerable(node("integer_pow", y=2), [Interval(-1, 1)]) is None
    flag = vulnerable(node("sqrt"), [Interval(-2, 3)])
    assert flag.safe.lo >= 0


def test_a_clamp_on_the_operand_proves_the_operation_safe():
    g = _graph("log", 1)
    start = {"a0": Interval(-1.0, 1.0)}
    (flag,) = analyse(g, start).flags
    assert analyse(g, start, {flag.node.id: flag}).flags == ()


def test_a_denominator_of_both_signs_is_pushed_off_zero_keeping_its_sign():
    g = _graph("div", 2)
    start = {"a0": Interval(1.0, 2.0), "a1": Interval(-1.0, 1.0)}
    (flag,) = analyse(g, start).flags
    assert flag.away > 0 and flag.safe == start["a1"]
    fixed = analyse(g, start, {flag.node.id: flag})
    assert fixed.flags == () and fixed.intervals[2].hi >= 2.0 / flag.away and fixed.intervals[2].lo <= -1.0 / flag.away


def test_x_times_x_is_never_negative_and_softmax_is_stable():
    nodes = (Node(0, "argument", (), (2, 4), "float32"),
             Node(1, "mul", (0, 0), (2, 4), "float32"),
             Node(2, "reduce_max", (0,), (2,), "float32", (("axes", (1,)),)),
             Node(3, "broadcast_in_dim", (2,), (2, 1), "float32"),
             Node(4, "sub", (0, 3), (2, 4), "float32"),
             Node(5, "exp", (4,), (2, 4), "float32"),
             Node(6, "reduce_sum", (5,), (2,), "float32", (("axes", (1,)),)),
             Node(7, "log", (6,), (2,), "float32"))
    a = analyse(Graph(nodes, (("x", 0),), (7,)), {"x": Interval(-1000.0, 1000.0)})
    assert a.intervals[1].lo == 0.0
    assert a.intervals[4].hi == 0.0 and a.intervals[5].hi <= 1.0 and a.intervals[6].lo >= 1.0
    assert a.flags == ()  # neither exp (its input <= 0) nor log (its input >= 1)


def test_unknown_operations_are_top_and_counted():
    a = analyse(_graph("erf_inv", 1), {"a0": Interval(0.0, 0.5)})
    assert a.intervals[1] == TOP and a.unknown == (("erf_inv", 1),)


def test_graph_crosses_the_wire_unchanged():
    g = _graph("integer_pow", 1, (("y", -2), ("axes", (0, 1))))
    assert from_wire(to_wire(g)) == g


@pytest.mark.parametrize("library", ["jax", "torch"])
@pytest.mark.parametrize("name", NAMES)
def test_planted_defects_are_flagged_and_their_safe_twins_are_not(tmp_path, name, library):
    specs = load_model_specs([PLANTED])
    planted = analyse_model(specs[f"planted_{name}"], library, None, None, True, tmp_path / "log")
    twin = analyse_model(specs[f"planted_{name}_safe"], library, None, None, True, tmp_path / "log")
    graphs = {f.graph for f in planted.findings}
    assert planted.findings and twin.findings == (), (planted.findings, twin.findings)
    assert graphs == {"backward"} if name in BACKWARD_ONLY else "forward" in graphs
    assert all(f.proved for f in planted.findings)
    assert planted.seconds < 1.0 and twin.seconds < 1.0
    # both tracers give the model's source line, the backward pass's operations included
    assert all("models/numerics.py:" in f.flag.node.source for f in planted.findings)


GRIST = ROOT / "models/grist.yaml"


@pytest.mark.parametrize("library", ["jax", "torch"])
def test_every_ported_grist_case_is_flagged(tmp_path, library):
    specs = load_model_specs([GRIST])
    assert len(specs) == 22
    missed = [name for name, spec in specs.items()
              if not analyse_model(spec, library, None, None, True, tmp_path / "log").findings]
    assert not missed


@pytest.mark.parametrize("name, uniform_finds, library", [("div", False, "jax"), ("exp", False, "jax"),
                                                          ("sqrt_at_zero", True, "jax"), ("exp", False, "torch"),
                                                          ("norm_at_zero", False, "torch")])
def test_confirmation_finds_failing_inputs_and_the_clamp_removes_the_failure(tmp_path, name, uniform_finds, library):
    from nablafuzz.numerics.run import Search
    spec = load_model_specs([PLANTED])[f"planted_{name}"]
    (finding,) = analyse_model(spec, library, None, None, True, tmp_path / "log", Search(seeds=3, steps=100,
                                                                                          uniform=500)).findings
    runs = finding.confirmations
    assert len(runs) == 3 and all(c.guided for c in runs)
    assert all(c.uniform for c in runs) == uniform_finds
    assert all(c.fixed_finite for c in runs) and all(c.fix_change < 1e-3 for c in runs)


@pytest.mark.parametrize("library", ["jax", "torch"])
def test_a_chain_of_defects_on_one_line_each_with_its_derivatives_and_its_own_clamp(tmp_path, library):
    """log(e / sum(e)): the log's derivative 1/p belongs to the log, the quotient's 1/s**2 to the
    division; at an input where every exp underflows, the division's clamp removes its 0/0, and
    the log(0) left is the log's own defect: finite only with both clamps."""
    from nablafuzz.numerics.run import Search
    spec = load_model_specs([ROOT / "models/models.yaml"])["digits_unsafe"]
    r = analyse_model(spec, library, None, None, True, tmp_path / "log", Search(seeds=2, steps=100, uniform=10))
    by_op = {f.flag.node.op: f for f in r.findings}
    assert set(by_op) == {"exp", "div", "log"} and all("models/digits.py:" in f.flag.node.source for f in r.findings)
    log, div = by_op["log"], by_op["div"]
    assert [d.node.inputs[1] for d in log.derivatives] == [div.fix_nodes[0][0]]  # 1/p: p is the quotient
    for f in r.findings:
        assert all(c.guided and c.removed and c.fixed_finite_all for c in f.confirmations), f
    assert not any(c.fixed_finite for c in div.confirmations)


def test_backward_only_defect_needs_the_backward_graph(tmp_path):
    spec = load_model_specs([PLANTED])["planted_sqrt_at_zero"]
    assert analyse_model(spec, "jax", None, None, False, tmp_path / "log").findings == ()


def test_shipped_unsafe_digits_flagged_safe_digits_proved_safe(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["numerics", "--model", "digits_unsafe", "--backward", "--out", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "exp overflows float32" in out and "log of a value" in out and "in its derivative" in out
    assert "fix:" not in out, "the clamps are shown with --fix"
    assert main(["numerics", "--model", "digits_unsafe", "--fix"]) == 0
    assert "fix: clamp the operand to" in capsys.readouterr().out
    assert main(["numerics", "--model", "digits_safe", "--backward"]) == 0
    assert "0 vulnerable operation(s)" in capsys.readouterr().out
    # narrowing the inputs and weights enough proves even the unsafe softmax's exp safe
    assert main(["numerics", "--model", "digits_unsafe", "--input-range=-0.001,0.001", "--weights=-0.001,0.001"]) == 0
    assert "exp overflows" not in capsys.readouterr().out


def test_bad_numerics_arguments_are_clear_errors(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["numerics", "--model", "nope"]) == 2
    assert "digits_unsafe" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["numerics", "--model", "digits_unsafe", "--input-range", "1,0"])


def test_a_confirmed_defect_becomes_a_report_that_replays(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    store = tmp_path / "store"
    assert main(["numerics", "--models", str(PLANTED), "--model", "planted_div", "--confirm", "--seeds", "2",
                 "--store", str(store)]) == 0
    (path,) = store.glob("jax/model_planted_div/*.json")
    from nablafuzz.reports.store import read_report
    report = read_report(path)
    assert report.fingerprint.verdict.value == "numerical_defect"
    assert "numerics.py:" in report.fingerprint.error_type and "keep the operand" in report.evidence.message
    capsys.readouterr()
    assert main(["replay", "--models", str(PLANTED), str(path)]) == 0
    assert "reproduced" in capsys.readouterr().out
