"""Repro scripts: numpy_ref scripts really run (and reproduce the pipeline's numbers exactly);
the torch / jax / tensorflow / oneflow scripts parse and use each library's public AD API."""
import ast
import math
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import repro_ops  # noqa: F401  (tests/ is on sys.path: user ops resolve in-process too)
from repro_ops import declared, disagreement, make_report, tensor

import nablafuzz
from nablafuzz.core.model import ApiSpec, ArgKind, Aspect, ErrorInfo, InputValue, Tolerance, Verdict
from nablafuzz.core.tensors import to_record
from nablafuzz.libraries.numpy_ref.adapter import NumpyRefAdapter
from nablafuzz.reports import repro
from nablafuzz.reports.repro import ReproError, render
from nablafuzz.runtime.runner import trial_request
from nablafuzz.worker.scenarios import run_scenarios

TESTS = Path(__file__).resolve().parent
PACKAGE_PARENT = Path(nablafuzz.__file__).resolve().parent.parent
ALL = ("rev", "fwd", "fd", "rev.rev", "fwd.rev", "rev.fwd", "fwd.fwd", "fd.rev", "fd.fwd")
VALUE_LINE = re.compile(r"^(\S+) \((.+)\) = (\S+)$")


def run_script(tmp_path: Path, text: str, name: str = "repro_script.py") -> subprocess.CompletedProcess:
    path = tmp_path / name
    path.write_text(text)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_PARENT), str(TESTS)]))
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)


def printed_values(stdout: str) -> dict:
    return {m.group(1): float(m.group(3)) for m in map(VALUE_LINE.match, stdout.splitlines()) if m}


def pipeline_values(report) -> dict:
    """The same trial through the real scenario engine, in-process, with the numpy_ref adapter."""
    spec = ApiSpec("numpy_ref", report.trial.api, ())
    request = trial_request(report.trial, spec, ("direct",) + ALL)
    request["inputs"] = [(i["value"], i["differentiable"], i["keyword"], i["name"]) for i in request["inputs"]]
    adapter = NumpyRefAdapter()
    results = run_scenarios(adapter, adapter.resolve(report.trial.api), request)
    return {r.scenario: r.value for r in results if r.scenario != "direct"}


def _declared(report):
    """(report, the spec ids a test declares for it): `render`'s arguments."""
    return report, declared(report)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# --- numpy_ref scripts that actually run ---------------------------------------------------------

def test_wrong_user_op_prints_disagreement_and_exits_1(tmp_path):
    report = make_report("numpy_ref", "repro_ops:DOUBLE_VJP_SIN", [tensor([0.3, -1.2, 2.5])],
                         disagreements=[disagreement("rev", "fd")])
    proc = run_script(tmp_path, render(report, declared(report)))
    assert proc.returncode == 1, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("DISAGREEMENT: rev = ") and " vs fd = " in last and "max_abs=" in last
    values = printed_values(proc.stdout)
    assert values["rev"] == pytest.approx(2 * values["fd"], rel=1e-9)


def test_correct_op_prints_agreement_and_exits_0(tmp_path):
    report = make_report("numpy_ref", "repro_ops:SIN", [tensor([0.3, -1.2, 2.5])],
                         disagreements=[disagreement("rev", "fd"), disagreement("fwd", "fd")])
    proc = run_script(tmp_path, render(report, declared(report)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("AGREEMENT: ")
    assert "DISAGREEMENT" not in proc.stdout


def test_wrong_second_derivative_is_reproduced(tmp_path):
    report = make_report("numpy_ref", "repro_ops:TRIPLE_HESS_SIN", [tensor([[0.5, 1.0], [-2.0, 0.25]])],
                         scenarios=("fwd.rev", "rev.rev"), disagreements=[disagreement("fwd.rev", "fd.rev")])
    proc = run_script(tmp_path, render(report, declared(report)))
    assert proc.returncode == 1, proc.stderr
    assert "DISAGREEMENT: fwd.rev = " in proc.stdout
    assert "fwd.rev (JVP of VJP) = " in proc.stdout and "fd.rev (finite differences of VJP) = " in proc.stdout


CASES = {
    "sin": ("sin", [tensor([0.3, -1.2, 2.5, 0.0])], "float64"),
    "multiply-broadcast-f32": ("multiply", [tensor(np.linspace(-1, 2, 6).reshape(2, 3), "float32"),
                                            tensor([0.5, -1.5, 3.0], "float32", name="y")], "float32"),
    "sum-axis-keyword": ("sum", [tensor(np.arange(6.0).reshape(2, 3) / 7),
                                 InputValue("axis", ArgKind.AXIS, 1, False, True),
                                 InputValue("keepdims", ArgKind.BOOL, True, False, True)], "float64"),
    "matmul": ("matmul", [tensor(np.arange(6.0).reshape(2, 3) / 5, name="a"),
                          tensor(np.arange(6.0).reshape(3, 2) / 3 - 1, name="b")], "float64"),
    "user-op-with-alpha": ("repro_ops:SCALED_MUL", [tensor([1.0, 2.0]), tensor([0.5, -0.25], name="y"),
                                                    InputValue("alpha", ArgKind.FLOAT, 1.5, False, True)], "float64"),
    "tanh-0d": ("tanh", [tensor(0.75)], "float64"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_script_reproduces_the_pipeline_values_exactly(tmp_path, case):
    api, inputs, dtype = CASES[case]
    report = make_report("numpy_ref", api, inputs, dtype=dtype, scenarios=ALL,
                         disagreements=[disagreement("rev", "fd", dtype)])
    proc = run_script(tmp_path, render(report, declared(report)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got, want = printed_values(proc.stdout), pipeline_values(report)
    assert set(got) == set(ALL)
    assert all(same(got[s], want[s]) for s in ALL), (got, want)


def test_value_aspect_compares_primal_outputs(tmp_path):
    value = disagreement("rev", "direct", aspect=Aspect.VALUE, tolerance=Tolerance(1e-300, 1e-10))
    report = make_report("numpy_ref", "cos", [tensor([0.1, 0.2])], verdict=Verdict.VALUE_MISMATCH,
                         disagreements=[value])
    proc = run_script(tmp_path, render(report, declared(report)))
    assert proc.returncode == 0, proc.stderr
    assert "AGREEMENT: rev outputs vs direct outputs, max_abs=0" in proc.stdout


def test_status_verdict_calls_the_failing_scenario(tmp_path):
    report = make_report("numpy_ref", "repro_ops:RAISING_VJP", [tensor([0.1, 0.2])], verdict=Verdict.STATUS_MISMATCH,
                         error=ErrorInfo("NotImplementedError", "no VJP"))
    proc = run_script(tmp_path, render(report, declared(report)))
    assert proc.returncode != 0
    assert "NotImplementedError: repro_ops.RAISING_VJP has no VJP" in proc.stderr


def test_undeclared_support_runs_to_completion(tmp_path):
    report = make_report("numpy_ref", "sin", [tensor([0.1])], verdict=Verdict.UNDECLARED_SUPPORT,
                         scenarios=("fwd.fwd",))
    proc = run_script(tmp_path, render(report, declared(report)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "COMPLETED: fwd.fwd ran without an error"


def _literal_values(node: ast.AST) -> list:
    """Element values of an `np.array([...])` literal, read from the syntax tree (no eval)."""
    def one(n):
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "float":
            return float(n.args[0].value)
        if isinstance(n, ast.UnaryOp):
            return -one(n.operand)
        return n.value
    return [one(e) for e in node.elts]


def test_inputs_are_exact_literals_including_nonfinite_and_float32(tmp_path):
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 0.1, 1e-45, 3.4e38, -2.5], dtype="float32")
    report = make_report("numpy_ref", "sin", [tensor(values, "float32")], dtype="float32",
                         disagreements=[disagreement("rev", "fd", "float32")])
    text = render(report, declared(report))
    assert "float('nan')" in text and "float('-inf')" in text
    inputs = next(n.value for n in ast.parse(text).body if isinstance(n, ast.Assign) and n.targets[0].id == "INPUTS")
    array_call = inputs.values[0].func.value  # np.array([...], dtype=...).reshape(...)
    parsed = np.array(_literal_values(array_call.args[0]), dtype="float32")
    assert parsed.tobytes() == values.tobytes()
    assert run_script(tmp_path, text).returncode in (0, 1)


def test_header_and_no_exec_or_eval():
    report = make_report("numpy_ref", "sin", [tensor([1.0])], message="line one\nline two ```",
                         disagreements=[disagreement("rev", "fd")], versions=("numpy==2.1.0",))
    text = render(report, declared(report))
    head = text.splitlines()[:6]
    assert all(line.startswith("# ") for line in head)
    assert "numpy_ref:sin derivative_mismatch in rev (order 1)" in head[0]
    assert "numpy==2.1.0" in text and "Generated by nablafuzz; run with the library's own python" in text
    source = Path(repro.__file__).read_text()
    assert not re.search(r"\b(exec|eval)\(", source) and not re.search(r"\b(exec|eval)\(", text)


# --- library renderers: scripts parse and use the public AD API -----------------------------------

def _library_report(library, api, inputs, scenarios=("fwd.rev", "fd.rev")):
    return make_report(library, api, inputs, scenarios=scenarios,
                       disagreements=[disagreement(scenarios[0], scenarios[1])])


def _stack_inputs(keyword_name):
    pair = (to_record(np.array([1.0, 2.0])), to_record(np.array([3.0, 4.0])))
    return [InputValue("tensors", ArgKind.TENSOR_LIST, pair, True), InputValue(keyword_name, ArgKind.INT, 0, False, True)]


LIBRARY_CASES = [
    ("torch", "torch.atan2", [tensor([1.0], name="input"), tensor([2.0], name="other", differentiable=False)],
     ["import torch.autograd.forward_ad as fwAD", "torch.autograd.grad(", "fwAD.make_dual(", "fwAD.dual_level()",
      "torch.atan2(d[0], native(a['other']))", "create_graph=create_graph"]),
    ("torch", "torch.stack", _stack_inputs("dim"), ["torch.stack([d[0], d[1]], dim=0)", "torch.func.jvp("]),
    ("torch", "torch.nn.functional.gelu", [tensor([1.0], name="input"),
                                           InputValue("approximate", ArgKind.CHOICE, "tanh", False, True)],
     ["torch.nn.functional.gelu(d[0], approximate='tanh')"]),
    ("jax", "jax.numpy.arctan2", [tensor([1.0], name="x1"), tensor([2.0], name="x2")],
     ['jax.config.update("jax_enable_x64", True)', "jax.vjp(", "jax.jvp(", "jax.numpy.arctan2(d[0], d[1])"]),
    ("jax", "jax.numpy.stack", _stack_inputs("axis"), ["jax.numpy.stack([d[0], d[1]], axis=0)"]),
    ("tensorflow", "tf.math.atan2", [tensor([1.0], name="y"), tensor([2.0], name="x")],
     ["import tensorflow as tf", "tf.GradientTape()", "tf.autodiff.ForwardAccumulator(", "tf.math.atan2(d[0], d[1])"]),
    ("tensorflow", "tensorflow.math.sin", [tensor([1.0])], ["tf.math.sin(d[0])"]),
    # a raw op is capitalised like a torch layer, but is a function taking keywords
    ("tensorflow", "tf.raw_ops.BesselI0", [tensor([1.0], name="x", keyword=True)], ["tf.raw_ops.BesselI0(x=d[0])"]),
    ("oneflow", "oneflow.sin", [tensor([1.0])],
     ["import oneflow", "oneflow.autograd.grad(", "double-VJP", "oneflow.sin(d[0])"]),
    ("torch", "mypkg.ops:fancy", [tensor([1.0])], ["from mypkg.ops import fancy", "fancy(d[0])"]),
]


@pytest.mark.parametrize("library,api,inputs,expected", LIBRARY_CASES, ids=[c[1] for c in LIBRARY_CASES])
def test_library_scripts_parse_and_use_the_public_ad_api(library, api, inputs, expected):
    text = render(*_declared(_library_report(library, api, inputs)))
    ast.parse(text)
    compile(text, f"<repro {api}>", "exec")
    missing = [e for e in expected if e not in text]
    assert not missing, missing
    assert "fd.rev (finite differences of VJP)" not in text  # descriptions are data, printed at run time
    assert "'fd.rev': 'finite differences of VJP'" in text


def test_oneflow_script_has_no_forward_mode_api():
    text = render(*_declared(_library_report("oneflow", "oneflow.sin", [tensor([1.0])], ("fwd", "fd"))))
    assert "forward_ad" not in text and "ForwardAccumulator" not in text and "jax.jvp" not in text


@pytest.mark.parametrize("library,api,match", [
    ("mxnet", "mxnet.nd.sin", "no script renderer for library 'mxnet'"),
    ("torch", "os.system", "outside its library"),
    ("torch", "os:system", "standard-library"),
    ("torch", "torch.sin(x); import os", "not a plain Python name"),
    ("jax", "jax.numpy.import", "not a plain Python name"),
    ("numpy_ref", "subprocess:run", "standard-library"),
])
def test_unrenderable_reports_raise_repro_error(library, api, match):
    with pytest.raises(ReproError, match=re.escape(match)):
        render(*_declared(_library_report(library, api, [tensor([1.0])])))


def test_unsafe_argument_name_stays_a_string_literal():
    # a keyword name that is no identifier (layer parameters are `param:<name>`) is written as a
    # dict key, **{'name': value}: data, never code
    bad = tensor([1.0], name="x=1); import os; f(x", keyword=True)
    tree = ast.parse(render(*_declared(_library_report("torch", "torch.sin", [bad]))))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    assert "os" not in imported
    keys = [k.value for n in ast.walk(tree) if isinstance(n, ast.Dict) for k in n.keys if isinstance(k, ast.Constant)]
    assert "x=1); import os; f(x" in keys


def test_jit_scenario_needs_a_compiled_form():
    text = render(*_declared(_library_report("torch", "torch.sin", [tensor([1.0])], ("jit", "rev"))))
    assert "torch.compile(f, dynamic=True)" in text and "'jit': 'compiled VJP'" in text
    text = render(*_declared(_library_report("tensorflow", "tf.math.sin", [tensor([1.0])], ("jit", "rev"))))
    assert "tf.function(f, jit_compile=True)" in text
    for library, api in (("oneflow", "oneflow.sin"), ("numpy_ref", "sin")):
        with pytest.raises(ReproError, match="no compiled form for the 'jit' scenario"):
            render(*_declared(_library_report(library, api, [tensor([1.0])], ("rev", "jit"))))


def test_jax_api_module_is_imported_from_the_api_name():
    # `import jax` need not load jax.scipy.stats.norm; jnp.* and jax.numpy.* need no extra import
    imports = {api: [line for line in render(*_declared(_library_report("jax", api, [tensor([1.0])]))).splitlines()
                     if line.startswith("import jax")]
               for api in ("jax.scipy.stats.norm.logpdf", "jax.lax.reduce_max", "jnp.linalg.norm", "jax.numpy.sin",
                           "jax.scipy.spatial.transform.Rotation.from_quat")}
    base = ["import jax", "import jax.numpy as jnp"]
    assert imports == {"jax.scipy.stats.norm.logpdf": base + ["import jax.scipy.stats.norm"],
                       "jax.lax.reduce_max": base + ["import jax.lax"], "jnp.linalg.norm": base,
                       "jax.numpy.sin": base, "jax.scipy.spatial.transform.Rotation.from_quat":
                       base + ["import jax.scipy.spatial.transform"]}


# --- jax scripts run alone in the jax runtime's interpreter -------------------------------------

@pytest.fixture(scope="module")
def jax_runner(tmp_path_factory):
    from nablafuzz.runtime.registry import resolve_runtime
    from nablafuzz.runtime.runner import Runner
    r = Runner(resolve_runtime("jax", [str(TESTS)]), tmp_path_factory.mktemp("jax") / "w.log", 300.0)
    yield r
    r.close()


def run_alone(tmp_path: Path, text: str, library: str = "jax", pythonpath: str = "") -> subprocess.CompletedProcess:
    """As a maintainer runs a script: the runtime's own interpreter, nothing of nablafuzz importable."""
    from nablafuzz.runtime.install import load_registry
    entry = load_registry()[library]
    path = tmp_path / "repro_alone.py"
    path.write_text(text)
    env = dict(entry.get("env", {}), PATH="/usr/bin:/bin", PYTHONPATH=pythonpath)
    return subprocess.run([entry["python"], str(path)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)


def printed_outputs(stdout: str) -> list:
    """The outputs a script printed for `direct` (finite values: the list is JSON)."""
    import json
    (line,) = [line for line in stdout.splitlines() if line.startswith("direct (direct call) = ")]
    return [np.array(o) for o in json.loads(line.partition(" = ")[2])]


JAX_SCIPY = {
    "jax.scipy.stats.norm.logpdf": [tensor([0.3, -1.2, 2.5]), tensor([0.5, 0.1, -0.2], name="loc"),
                                    InputValue("scale", ArgKind.FLOAT, 1.5, False, True)],
    "jax.scipy.special.gammainc": [tensor([0.5, 2.0, 3.5], name="a", differentiable=False),
                                   tensor([0.7, 1.5, 4.0], name="x")],
}


@pytest.mark.parametrize("api", sorted(JAX_SCIPY))
def test_jax_scipy_script_runs_alone(tmp_path, api):
    pairs = [disagreement("rev", "fd"), disagreement("fwd", "fd"), disagreement("jit", "rev"),
             disagreement("fwd.rev", "fd.rev", tolerance=Tolerance(1e-10, 1e-6))]
    report = make_report("jax", api, JAX_SCIPY[api], scenarios=("rev", "fwd", "fd", "jit", "fwd.rev"),
                         disagreements=pairs)
    proc = run_alone(tmp_path, render(report, declared(report)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdicts = [line for line in proc.stdout.splitlines() if "AGREEMENT: " in line]
    assert len(verdicts) == 4 and all(line.startswith("AGREEMENT: ") for line in verdicts), proc.stdout
    assert "Error" not in proc.stderr


def test_jax_complex_outputs_match_the_worker(jax_runner, tmp_path):
    """fft's complex output is flattened to (Re, Im) pairs by the script exactly as by the adapter."""
    from nablafuzz.specs.spec import _Ctx, parse_api
    value = disagreement("jit", "direct", aspect=Aspect.VALUE, tolerance=Tolerance(1e-12, 1e-12))
    report = make_report("jax", "jax.numpy.fft.fft", [tensor([1.0, -2.0, 0.5, 3.0], name="a")],
                         scenarios=("rev", "fwd", "jit"), disagreements=[disagreement("rev", "fwd"), value])
    spec = parse_api(_Ctx("test"), "jax", {"name": "jax.numpy.fft.fft", "args": [{"name": "a"}]})
    ex = jax_runner.run(report.trial, spec, ("direct", "rev", "fwd", "jit"))
    proc = run_alone(tmp_path, render(report, declared(report)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (want,), (got,) = ex.get("direct").outputs, printed_outputs(proc.stdout)
    assert got.shape == want.shape == (4, 2)
    np.testing.assert_array_equal(got, want)
    values = printed_values(proc.stdout)
    for s in ("rev", "fwd", "jit"):
        assert values[s] == pytest.approx(ex.get(s).value, rel=1e-12, abs=1e-12), s


def test_jax_float32_scenarios_match_the_worker(jax_runner, tmp_path):
    """float32 inputs: Q = <v, J u> is float64 as in the adapter, and each cotangent takes its
    output's dtype (rev.rev's float32 cotangent of the float64 Q is cast), so every value is the worker's."""
    from nablafuzz.specs.spec import _Ctx, parse_api
    scenarios = ("rev", "fwd", "jit", "rev.rev", "rev.fwd", "fwd.rev", "fwd.fwd")
    report = make_report("jax", "jax.numpy.sin", [tensor([0.3, 0.8, -2.5], "float32")], dtype="float32",
                         scenarios=scenarios, disagreements=[disagreement("rev.fwd", "rev.rev", "float32")])
    spec = parse_api(_Ctx("test"), "jax", {"name": "jax.numpy.sin", "args": [{"name": "x"}]})
    ex = jax_runner.run(report.trial, spec, ("direct",) + scenarios)
    proc = run_alone(tmp_path, render(report, declared(report)))
    assert proc.returncode in (0, 1) and "AGREEMENT: rev.fwd = " in proc.stdout, proc.stdout + proc.stderr
    values = printed_values(proc.stdout)
    for s in scenarios:
        assert values[s] == pytest.approx(ex.get(s).value, rel=1e-12), s


def test_jax_jit_agreement_exits_0(tmp_path):
    value = disagreement("jit", "direct", aspect=Aspect.VALUE, tolerance=Tolerance(1e-300, 1e-12))
    report = make_report("jax", "jax.numpy.sin", [tensor([0.25, -1.5, 3.0])], scenarios=("jit", "rev"),
                         disagreements=[disagreement("jit", "rev"), value])
    proc = run_alone(tmp_path, render(report, declared(report)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "jit (compiled VJP) = " in proc.stdout and "DISAGREEMENT" not in proc.stdout
    assert "AGREEMENT: jit = " in proc.stdout and "AGREEMENT: jit outputs vs direct outputs" in proc.stdout


def test_jax_jit_disagreement_found_by_the_pipeline_is_shown_alone(jax_runner, tmp_path):
    """A planted jit-only bug (tests/helper_jax_ops.py: 3x under jit, 2x eagerly) found by the real
    pipeline renders a script that, run alone, prints the disagreement against `jit`."""
    from nablafuzz.core.quantities import COMPILED
    from nablafuzz.oracle.verdict import judge
    from nablafuzz.reports.store import Store
    from nablafuzz.specs.spec import _Ctx, parse_api
    spec = parse_api(_Ctx("test"), "jax", {"name": "helper_jax_ops:jit_differs", "args": [{"name": "x"}]})
    report = make_report("jax", spec.name, [tensor([0.5, 1.5])])
    ex = jax_runner.run(report.trial, spec, ALL + (COMPILED,))
    findings = judge(ex, spec, jax_runner).findings
    assert {f.candidate.verdict for f in findings} >= {Verdict.DERIVATIVE_MISMATCH, Verdict.VALUE_MISMATCH}
    for finding in findings:  # the compiled VJP and the compiled outputs each disagree with eager
        assert COMPILED in finding.candidate.scenarios
        report, _ = Store(tmp_path / "store").record(finding, finding.trial, ("jax 0.10.2",), "test")
        text = render(report, declared(report))
        assert "import nablafuzz" not in text and "from nablafuzz" not in text
        proc = run_alone(tmp_path, text, pythonpath=str(TESTS))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        last = proc.stdout.strip().splitlines()[-1]
        assert last.startswith("DISAGREEMENT: ") and "jit" in last, proc.stdout


@pytest.mark.parametrize("library, api, swap", [
    ("torch", "torch.linalg.eigvalsh", "d[0].permute(*[0, 2, 1])"),
    ("jax", "jax.numpy.linalg.eigvalsh", "jnp.transpose(d[0], [0, 2, 1])"),
    ("tensorflow", "tf.linalg.eigvalsh", "tf.transpose(d[0], [0, 2, 1])"),
])
def test_symmetric_projection_is_in_the_script(library, api, swap):
    report = _library_report(library, api, [tensor(np.eye(3)[None].repeat(2, axis=0))])
    report = replace(report, trial=replace(report.trial, projections=(("x", "symmetric"),)))
    text = render(*_declared(report))
    ast.parse(text)
    assert f"((d[0]) + {swap}) * 0.5" in text
    with pytest.raises(ReproError, match="symmetrise"):
        numpy_ref = make_report("numpy_ref", "sin", [tensor(np.eye(2))], disagreements=[disagreement("rev", "fd")])
        render(*_declared(replace(numpy_ref, trial=replace(numpy_ref.trial, projections=(("x", "symmetric"),)))))


@pytest.mark.parametrize("library, api, want", [
    ("torch", "torch._softmax_backward_data", "input_dtype=torch.float64"),
    ("jax", "jax.numpy.cumsum", "dtype=jnp.dtype('float64')"),
    ("tensorflow", "tf.math.cumsum", "dtype=tf.as_dtype('float64')"),
    ("oneflow", "oneflow.cumsum", "dtype=oneflow.float64"),
])
def test_dtype_arguments_are_the_librarys_dtype_objects(library, api, want):
    name = want.split("=")[0]
    report = _library_report(library, api, [tensor([1.0, 2.0]), InputValue(name, ArgKind.DTYPE, "float64", keyword=True)])
    text = render(*_declared(report))
    ast.parse(text)
    assert want in text.replace(" ", "")
    bad = replace(report, trial=replace(report.trial, inputs=report.trial.inputs[:1] + (
        InputValue(name, ArgKind.DTYPE, "__import__('os')", keyword=True),)))
    with pytest.raises(ReproError, match="not one of"):
        render(*_declared(bad))
