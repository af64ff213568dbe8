"""The probing spec source: parameter roles, templates, and probing real JAX functions."""
from __future__ import annotations

import pytest
from helper_adapter import worker_catalogue

from nablafuzz.derive.probing import (Entry, NoTemplate, Param, entry_from_dict, families, probe_entries, role, roles,
                                      template)
from nablafuzz.runtime.registry import resolve_runtime
from nablafuzz.specs.spec import spec_from_dict


def P(name, annotation="ArrayLike", required=True, kind="positional_or_keyword", **default):
    return Param(name, kind, annotation, required, default.get("default"), "default" in default)


@pytest.mark.parametrize("param, expected", [
    (P("x"), "tensor"),
    (P("arrays", "Sequence[ArrayLike]"), "tensor_list"),
    (P("args", "", False, "var_positional"), "varargs"),
    (P("axis", "int | Sequence[int] | None", False, default=None), "opt_axis"),
    (P("axes", "Sequence[int]"), "axes"),
    (P("keepdims", "bool", False, default=False), "keepdims"),
    (P("shape", "Shape"), "shape"),
    (P("indices"), "index"),
    (P("condition"), "mask"),
    (P("n", "int"), "int"),
    (P("loc", "ArrayLike", False, default=0), "opt_tensor"),
    (P("dtype", "DTypeLike | None", False, default=None), ""),
    (P("initial", "ArrayLike | None", False, default=None), ""),
    (P("kwargs", "", False, "var_keyword"), ""),
])
def test_roles_from_names_and_annotations(param, expected):
    assert role(param) == expected


@pytest.mark.parametrize("param, why", [(P("key"), "random key"), (P("fun", "Callable"), "needs a Callable")])
def test_unfillable_parameters_are_refused_with_the_reason(param, why):
    with pytest.raises(NoTemplate, match=why):
        role(param)


def test_an_optional_first_array_becomes_the_input():
    # clip(arr=None, /, min=None, max=None): no required array, the first array parameter is the input
    entry = Entry("jax.numpy.clip", "jax.numpy", (P("arr", "ArrayLike | None", False, "positional_only", default=None),
                                                  P("min", "ArrayLike | None", False, default=None)))
    assert [r for _, r in roles(entry)] == ["tensor"]


def test_no_array_argument_is_refused():
    with pytest.raises(NoTemplate, match="no array argument"):
        roles(Entry("jax.numpy.eye", "jax.numpy", (P("N", "int"),)))


def test_every_family_gives_a_valid_spec():
    entry = Entry("lib.f", "lib", (P("a"), P("b"), P("axis", "int | None", False, default=None),
                                   P("keepdims", "bool", False, default=False), P("loc", "ArrayLike", False, default=0)))
    rs = roles(entry)
    for family in families(entry, rs) + ["fixed"]:
        for optional in (True, False):
            args = template(rs, family, "positive", optional)
            spec = spec_from_dict("jax", {"name": "lib.f", "args": args}, "test")
            assert [a.name for a in spec.args][:2] == ["a", "b"]
            assert ("loc" in [a.name for a in spec.args]) == optional
            assert spec.args[0].domain == "positive"


def test_family_order_follows_the_api():
    matrix = Entry("jax.numpy.linalg.solve", "jax.numpy.linalg", (P("a"), P("b")))
    shaped = Entry("jax.numpy.reshape", "jax.numpy", (P("a"), P("shape", "Shape")))
    assert families(matrix, roles(matrix))[0] == "square"
    assert families(shaped, roles(shaped))[0] == "fixed"


@pytest.fixture(scope="module")
def jax_catalogue(tmp_path_factory):
    return {e["name"]: e for e in worker_catalogue("jax", tmp_path_factory.mktemp("cat") / "w.log")["entries"]}


def test_jax_catalogue_lists_public_callables_once(jax_catalogue):
    assert len(jax_catalogue) >= 700
    assert "jax.numpy.sin" in jax_catalogue and "jax.scipy.stats.norm.logpdf" in jax_catalogue
    # the same object under two names, and a wrapper documented as an alias, are listed once
    assert jax_catalogue["jax.nn.silu"]["aliases"] == ["jax.nn.swish"] and "jax.nn.swish" not in jax_catalogue
    assert jax_catalogue["jax.numpy.arccos"]["aliases"] == ["jax.numpy.acos"] and "jax.numpy.acos" not in jax_catalogue
    assert not any(n.startswith("jax.random.") for n in jax_catalogue)


def test_probing_real_jax_functions(jax_catalogue, tmp_path):
    names = ["jax.numpy.sin", "jax.numpy.log", "jax.numpy.linalg.solve", "jax.numpy.reshape", "jax.numpy.argmax",
             "jax.numpy.sum", "jax.scipy.stats.norm.logpdf"]
    entries = [entry_from_dict(jax_catalogue[n]) for n in names]
    out = {e.name: (spec, why) for e, spec, why in probe_entries(resolve_runtime("jax"), entries, tmp_path, workers=2)}
    for name in names[:4] + names[5:]:
        spec, why = out[name]
        assert spec is not None, (name, why)
        spec_from_dict("jax", spec, "test")  # valid
        assert "3/3 trials valid" in spec["notes"], spec["notes"]
    assert out["jax.numpy.log"][0]["args"][0]["domain"] == "positive"  # real inputs gave NaNs
    assert out["jax.numpy.linalg.solve"][0]["args"][0]["dims"] == ["n", "n"]
    assert out["jax.numpy.reshape"][0]["notes"].startswith("probed: fixed")
    assert {a["name"] for a in out["jax.numpy.sum"][0]["args"]} >= {"a", "axis", "keepdims"}
    assert {a["name"] for a in out["jax.scipy.stats.norm.logpdf"][0]["args"]} == {"x", "loc", "scale"}
    assert out["jax.numpy.argmax"] == (None, "no floating-point output")


def test_reprobing_a_few_apis_keeps_the_rest_of_the_file(tmp_path):
    from nablafuzz.derive.specsource import _keep_others
    from nablafuzz.specs.spec import load_file, write_specs
    out = tmp_path / "derived.yaml"
    old = [{"name": "lib.a", "args": [{"name": "x"}]}, {"name": "lib.b", "args": [{"name": "x"}]}]
    write_specs(out, "jax", old, "test", ["lib.c: no floating-point output", "lib.d: has no array argument"])
    new = [{"name": "lib.b", "args": [{"name": "x"}, {"name": "y"}]}, {"name": "lib.c", "args": [{"name": "x"}]}]
    apis, dropped = _keep_others(out, ["lib.b", "lib.c"], new, ["lib.e: not selected, not kept"])
    write_specs(out, "jax", sorted(apis, key=lambda a: a["name"]), "test", dropped)
    specs = {s.name: s for s in load_file(out)}
    assert set(specs) == {"lib.a", "lib.b", "lib.c"} and len(specs["lib.b"].args) == 2
    assert dropped == ["lib.d: has no array argument"]


def test_a_template_without_differentiable_input_is_rejected(jax_catalogue, tmp_path):
    # rfftfreq(n, d=1.0): without `d` nothing is differentiable, so `d` must be an input
    entry = entry_from_dict(jax_catalogue["jax.numpy.fft.rfftfreq"])
    ((_, spec, why),) = list(probe_entries(resolve_runtime("jax"), [entry], tmp_path, workers=1))
    assert spec is not None, why
    assert "d" in [a["name"] for a in spec["args"]]


def test_an_array_order_parameter_is_an_integer():
    # polygamma(n, x): n must be integer-valued, so it is drawn as an int64 scalar
    entry = Entry("jax.scipy.special.polygamma", "jax.scipy.special", (P("n"), P("x")))
    rs = roles(entry)
    assert [r for _, r in rs] == ["order", "tensor"]
    (n, x) = template(rs, "elementwise", "real", False)
    assert n["dtypes"] == ["int64"] and n["differentiable"] is False and x["name"] == "x"


def test_generated_tensorflow_type_variables_are_arrays():
    assert role(P("features", "typing.Annotated[typing.Any, ~TV_Relu_T]")) == "tensor"


def test_keyword_only_axis_is_passed_by_keyword():
    # raw ops take keywords only: Cumsum(x=..., axis=...)
    entry = Entry("tf.raw_ops.Cumsum", "tf.raw_ops", (P("x", "Tensor", kind="keyword_only"),
                                                      P("axis", "int", kind="keyword_only")))
    x, axis = template(roles(entry), "elementwise", "real", False)
    assert x["keyword"] and axis["keyword"] and axis["kind"] == "axis"


def test_an_api_taking_only_float32_is_probed_in_float32():
    from nablafuzz.derive.probing import probe_dtype
    entry = entry_from_dict({"name": "tf.raw_ops.FusedBatchNorm", "module": "tf.raw_ops", "dtypes": ["float32"],
                             "params": [{"name": "x", "kind": "keyword_only", "annotation": "Tensor", "required": True}]})
    assert entry.dtypes == ("float32",)
    assert probe_dtype({"dtypes": ["float32"]}) == "float32"
    assert probe_dtype({}) == "float64" and probe_dtype({"dtypes": ["float32", "float64"]}) == "float64"


def test_a_probe_hint_drops_an_api_or_lays_out_its_arguments(tmp_path):
    from nablafuzz.derive.probing import Prober
    from nablafuzz.runtime.runner import Runner
    from nablafuzz.specs.spec import ProbeHint
    runtime = resolve_runtime("numpy_ref")
    runner = Runner(runtime, tmp_path / "w.log", 30.0)
    try:
        prober = Prober("numpy_ref", runner)
        entry = Entry("sum", "numpy_ref", (P("x"), P("axis", "int")))
        spec, why = prober.probe(entry, ProbeHint("sum", "needs ordered inputs", drop=True))
        assert spec is None and why == "needs ordered inputs (probe hint)"
        hint = ProbeHint("sum", "axis is the first", domain="positive",
                         args=(("axis", {"kind": "choice", "choices": [0]}),))
        spec, why = prober.probe(entry, hint)
        assert spec is not None, why
        x, axis = spec["args"]
        assert x["domain"] == "positive" and axis == {"name": "axis", "kind": "choice", "choices": [0]}
        assert "hint: axis is the first" in spec["notes"]
    finally:
        runner.close()


@pytest.mark.parametrize("doc, params, want", [
    ("Factor of a symmetric positive-definite matrix.", ["m"], {"m": "spd"}),
    ("Solves x @ t = y where t is a lower triangular matrix.", ["y", "t"], {"t": "lower_triangular"}),
    ("Solves with a square upper-triangular matrix t.\n\nflag: whether t is lower or upper triangular.", ["t", "flag"],
     {"t": "upper_triangular"}),
    ("Spectrum of a real symmetric matrix.", ["h"], {"h": "symmetric"}),
    ("Returns the lower triangular part of x.", ["x"], {}),  # about the output
    ("Pseudo-inverse. m is assumed to be symmetric if sym is True.", ["m", "sym"], {}),  # a flag's contract
    ("band: if True, then assume that m is upper-triangular.", ["m", "band"], {}),
    ("Eigenvalues of a symmetric tridiagonal matrix.", ["d", "e"], {}),  # given by its diagonals
    ("Applies symmetric padding to x.", ["x"], {}),
])
def test_structures_stated_by_a_docstring(doc, params, want):
    from nablafuzz.core.structures import doc_structures
    assert doc_structures(doc, params) == want


def test_real_docstrings_give_their_structures(jax_catalogue, tmp_path):
    # JAX's catalogue carries what each docstring states; the probe applies it to the template
    assert jax_catalogue["jax.numpy.linalg.eigh"]["structures"] == {"a": "symmetric"}
    assert jax_catalogue["jax.numpy.linalg.solve"]["structures"] == {}
    assert not jax_catalogue["jax.scipy.linalg.expm"]["structures"]  # only a flag says "upper-triangular"
    entry = entry_from_dict(jax_catalogue["jax.numpy.linalg.eigh"])
    ((_, spec, why),) = probe_entries(resolve_runtime("jax"), [entry], tmp_path, workers=1)
    assert spec is not None and spec["args"][0]["structure"] == "symmetric", why
