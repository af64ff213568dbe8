"""Every execution scenario of the numpy reference backend against hand-computed derivatives.

For f with tangents u, w and cotangent v (all from `quantities.direction`), the first-order
scenarios must equal <v, J u> and all six second-order ones v^T D^2 f [u, w].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import numpy as np
import pytest

from nablafuzz.core import quantities
from nablafuzz.core.model import Outcome
from nablafuzz.libraries.numpy_ref.adapter import OPS, NumpyRefAdapter
from nablafuzz.worker import scenarios

SEED = 7
SECOND = ("rev.rev", "rev.fwd", "fwd.rev", "fwd.fwd", "fd.rev", "fd.fwd")


@dataclass(frozen=True)
class Case:
    op: str
    xs: Tuple[np.ndarray, ...]
    params: Tuple[Tuple[str, object], ...]
    f: Callable[..., np.ndarray]
    jvp: Callable[..., np.ndarray]  # (xs, us) -> J u
    hvp: Callable[..., np.ndarray]  # (xs, us, ws) -> D^2 f [u, w]  (output-shaped)


RNG = np.random.default_rng(123)
X23 = RNG.uniform(-2, 2, (2, 3))
Y3 = RNG.uniform(-2, 2, (3,))
Y13 = RNG.uniform(-2, 2, (1, 3))
A = RNG.uniform(-1, 1, (2, 3))
B = RNG.uniform(-1, 1, (3, 4))
S = RNG.uniform(-3, 3, (2, 3, 4))

CASES = {
    "sin": Case("sin", (np.array([0.3, -1.2, 2.0, 0.0]),), (), lambda x: np.sin(x),
                lambda xs, us: np.cos(xs[0]) * us[0], lambda xs, us, ws: -np.sin(xs[0]) * us[0] * ws[0]),
    "sin-0d": Case("sin", (np.array(0.7),), (), lambda x: np.sin(x),
                   lambda xs, us: np.cos(xs[0]) * us[0], lambda xs, us, ws: -np.sin(xs[0]) * us[0] * ws[0]),
    "exp": Case("exp", (X23,), (), lambda x: np.exp(x),
                lambda xs, us: np.exp(xs[0]) * us[0], lambda xs, us, ws: np.exp(xs[0]) * us[0] * ws[0]),
    "multiply-broadcast-1d": Case("multiply", (X23, Y3), (), lambda x, y: x * y,
                                  lambda xs, us: us[0] * xs[1] + xs[0] * us[1],
                                  lambda xs, us, ws: us[0] * ws[1] + ws[0] * us[1]),
    "multiply-broadcast-keepdim": Case("multiply", (X23, Y13), (), lambda x, y: x * y,
                                       lambda xs, us: us[0] * xs[1] + xs[0] * us[1],
                                       lambda xs, us, ws: us[0] * ws[1] + ws[0] * us[1]),
    "matmul": Case("matmul", (A, B), (), lambda a, b: a @ b,
                   lambda xs, us: us[0] @ xs[1] + xs[0] @ us[1],
                   lambda xs, us, ws: us[0] @ ws[1] + ws[0] @ us[1]),
    "sum-axis1": Case("sum", (S,), (("axis", 1), ("keepdims", False)), lambda x: np.sum(x, axis=1),
                      lambda xs, us: np.sum(us[0], axis=1), lambda xs, us, ws: np.zeros((2, 4))),
    "sum-axis-neg-keepdims": Case("sum", (S,), (("axis", -1), ("keepdims", True)),
                                  lambda x: np.sum(x, axis=-1, keepdims=True),
                                  lambda xs, us: np.sum(us[0], axis=-1, keepdims=True),
                                  lambda xs, us, ws: np.zeros((2, 3, 1))),
    "sum-all": Case("sum", (S,), (("axis", None), ("keepdims", False)), lambda x: np.sum(x),
                    lambda xs, us: np.sum(us[0]), lambda xs, us, ws: np.zeros(())),
}


def _request(case: Case) -> Dict:
    inputs = [(x, True, False, f"x{i}") for i, x in enumerate(case.xs)]
    inputs += [(v, False, True, name) for name, v in case.params]
    return {"inputs": inputs, "seed": SEED, "scenarios": list(quantities.ALL), "diff_outputs": None}


def _expected(case: Case) -> Tuple[float, float, np.ndarray]:
    xs = list(case.xs)
    out = np.asarray(case.f(*xs))
    us = [quantities.direction(SEED, "u", i, x.shape, "float64") for i, x in enumerate(xs)]
    ws = [quantities.direction(SEED, "w", i, x.shape, "float64") for i, x in enumerate(xs)]
    v = quantities.direction(SEED, "v", 0, out.shape, "float64")
    first = float(np.sum(v * case.jvp(xs, us)))
    second = float(np.sum(v * case.hvp(xs, us, ws)))
    return first, second, out


@pytest.fixture(scope="module")
def results() -> Dict[str, Dict[str, object]]:
    adapter = NumpyRefAdapter()
    return {name: {r.scenario: r for r in scenarios.run_scenarios(adapter, OPS[c.op], _request(c))}
            for name, c in CASES.items()}


def test_results_come_in_batches_each_sent_before_the_next_computation():
    """Note [answers in batches]: unstaged, each scenario is computed alone, so each result is a
    batch of its own, except those the references' computation made together."""
    c = CASES["sin"]
    batches = list(scenarios.scenario_batches(NumpyRefAdapter(), OPS[c.op], _request(c)))
    assert [[r.scenario for r in b.results] for b in batches] == [
        ["direct"], ["rev"], ["fwd"], ["fd"], ["rev.rev"], ["rev.fwd"], ["fwd.rev"], ["fwd.fwd", "fd.rev", "fd.fwd"]]
    assert [b.last for b in batches] == [False] * 7 + [True]


@pytest.mark.parametrize("name", CASES)
def test_all_scenarios_ran_ok(name, results):
    got = results[name]
    assert list(got) == list(quantities.ALL)
    assert all(r.outcome is Outcome.OK for r in got.values()), {s: r.error for s, r in got.items()}


@pytest.mark.parametrize("name", CASES)
def test_direct_is_the_function(name, results):
    case = CASES[name]
    (out,) = results[name]["direct"].outputs
    np.testing.assert_allclose(out, case.f(*case.xs), rtol=1e-15, atol=0)


@pytest.mark.parametrize("mode", ["rev", "fwd"])
@pytest.mark.parametrize("name", CASES)
def test_first_order_ad_matches_analytic(name, mode, results):
    first, _, out = _expected(CASES[name])
    r = results[name][mode]
    assert r.value == pytest.approx(first, rel=1e-12, abs=1e-14)
    assert r.scale >= abs(r.value) * (1 - 1e-12) and math.isfinite(r.scale)
    (primal,) = r.outputs  # the primal returned alongside the derivative
    np.testing.assert_array_equal(primal, out)


@pytest.mark.parametrize("name", CASES)
def test_rev_gradient_is_vjp(name, results):
    """The full gradient (not just its projection) of <v, f> for the elementwise/broadcast cases."""
    case = CASES[name]
    r = results[name]["rev"]
    us = [quantities.direction(SEED, "u", i, x.shape, "float64") for i, x in enumerate(case.xs)]
    assert len(r.gradient) == len(case.xs)
    assert [g.shape for g in r.gradient] == [x.shape for x in case.xs]
    assert sum(float(np.sum(g * u)) for g, u in zip(r.gradient, us)) == pytest.approx(r.value, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("name", CASES)
def test_finite_differences_match_within_error_estimate(name, results):
    first, _, _ = _expected(CASES[name])
    r = results[name]["fd"]
    assert math.isfinite(r.value) and 0 <= r.error_estimate < 1e-8
    assert abs(r.value - first) <= r.error_estimate + 1e-15 * abs(first)


@pytest.mark.parametrize("scenario", SECOND)
@pytest.mark.parametrize("name", CASES)
def test_second_order_matches_analytic(name, scenario, results):
    _, second, _ = _expected(CASES[name])
    r = results[name][scenario]
    if quantities.is_reference(scenario):
        assert math.isfinite(r.value) and 0 <= r.error_estimate < 1e-8
        assert abs(r.value - second) <= r.error_estimate + 1e-15 * abs(second)
    else:
        assert r.value == pytest.approx(second, rel=1e-12, abs=1e-14)
        assert r.scale >= abs(r.value) * (1 - 1e-12)


def test_second_order_of_nonlinear_ops_is_not_trivially_zero():
    """Guard for the table above: the second-order checks compare real, non-zero numbers."""
    for name in ("sin", "exp", "multiply-broadcast-1d", "matmul"):
        assert abs(_expected(CASES[name])[1]) > 1e-3, name


def test_diff_outputs_selects_outputs():
    adapter = NumpyRefAdapter()
    x = np.array([0.2, -0.4])
    req = {"inputs": [(x, True, False, "x")], "seed": SEED, "scenarios": ["rev", "fwd"], "diff_outputs": [0]}
    got = {r.scenario: r for r in scenarios.run_scenarios(adapter, OPS["tanh"], req)}
    v = quantities.direction(SEED, "v", 0, x.shape, "float64")
    u = quantities.direction(SEED, "u", 0, x.shape, "float64")
    want = float(np.sum(v * (1 - np.tanh(x) ** 2) * u))
    assert got["rev"].value == pytest.approx(want, rel=1e-13)
    assert got["fwd"].value == pytest.approx(want, rel=1e-13)


def test_failed_direct_call_stops_the_trial():
    adapter = NumpyRefAdapter()
    a, b = np.ones((2, 3)), np.ones((2, 3))  # inner dimensions do not match
    req = {"inputs": [(a, True, False, "a"), (b, True, False, "b")], "seed": SEED,
           "scenarios": list(quantities.ALL), "diff_outputs": None}
    got = list(scenarios.run_scenarios(adapter, OPS["matmul"], req))
    assert [r.scenario for r in got] == ["direct"]
    assert got[0].outcome is Outcome.RAISED and got[0].error.type == "ValueError"


# ---- names --------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario, words, order", [
    ("direct", "direct call", 0),
    ("rev", "VJP", 1),
    ("fwd", "JVP", 1),
    ("fd", "finite differences", 1),
    ("fwd.rev", "JVP of VJP", 2),
    ("rev.fwd", "VJP of JVP", 2),
    ("rev.rev", "VJP of VJP", 2),
    ("fd.rev", "finite differences of VJP", 2),
])
def test_describe_and_order(scenario, words, order):
    assert quantities.describe(scenario) == words
    assert quantities.order(scenario) == order


def test_all_compositions_up_to_order_two_are_listed():
    assert set(SECOND) == set(quantities.SECOND_ORDER)
    assert quantities.ALL[:4] == ("direct", "rev", "fwd", "fd")
    assert [s for s in quantities.ALL if quantities.is_reference(s)] == ["fd", "fd.rev", "fd.fwd"]


# ---- Richardson extrapolation and unusable references -------------------------------------------

@pytest.mark.parametrize("fn, deriv", [
    (lambda t: math.sin(0.7 + t), math.cos(0.7)),
    (lambda t: math.exp(2 * t) * 3.0, 6.0),
    (lambda t: (1.5 + t) ** 5, 5 * 1.5 ** 4),
    (lambda t: 1e-18 * math.tanh(t + 0.3), 1e-18 * (1 - math.tanh(0.3) ** 2)),
], ids=["sin", "exp", "poly", "tiny-scale"])
def test_richardson_smooth(fn, deriv):
    value, err, scale = scenarios.richardson(fn, quantities.STEP)
    assert abs(value - deriv) <= 1e-9 * max(1.0, abs(deriv)) and abs(value - deriv) <= 1e-6 * abs(deriv)
    assert 0 <= err <= 1e-8 * max(1.0, abs(deriv)) and err < abs(deriv)
    assert abs(value - deriv) <= err + 1e-15 * abs(deriv)  # the estimate covers the actual error
    assert scale == pytest.approx(abs(deriv), rel=1e-3)


@pytest.mark.parametrize("fn", [
    lambda t: abs(t),
    lambda t: max(t, 0.0),
    lambda t: abs(t - quantities.STEP / 8),  # kink inside the smallest step, not at 0
    lambda t: 2.0 * t + abs(t),
], ids=["abs", "relu", "off-centre-kink", "kink-plus-linear"])
def test_richardson_kink_within_step_is_unusable(fn):
    value, err, _ = scenarios.richardson(fn, quantities.STEP)
    assert math.isnan(value) and math.isinf(err)
    assert scenarios._extrapolated(fn, quantities.STEP, 2.0 ** -52)[3]  # and says why (cross.py: _kinked)


def test_a_reference_unusable_for_another_reason_is_not_called_a_kink():
    assert not scenarios._extrapolated(lambda t: math.sin(0.7 + t), quantities.STEP, 2.0 ** -52)[3]
    value, _, _, kinked = scenarios._extrapolated(lambda t: math.inf if t > 0 else 0.0, quantities.STEP, 2.0 ** -52)
    assert math.isnan(value) and not kinked  # a pole or the edge of the domain: no kink to speak of


@pytest.mark.parametrize("xs, scenario_list", [
    ((np.array([1e300, 0.5]),), ["fd", "fd.rev", "fd.fwd"]),
    ((np.array([[0.5, 2e17]]),), ["fd"]),
], ids=["1e300", "2e17"])
def test_finite_differences_unusable_when_input_absorbs_step(xs, scenario_list):
    adapter = NumpyRefAdapter()
    req = {"inputs": [(x, True, False, "x") for x in xs], "seed": SEED, "scenarios": ["rev"] + scenario_list,
           "diff_outputs": None}
    got = {r.scenario: r for r in scenarios.run_scenarios(adapter, OPS["sin"], req)}
    assert got["rev"].outcome is Outcome.OK and math.isfinite(got["rev"].value)
    for s in scenario_list:
        assert got[s].outcome is Outcome.OK
        assert math.isnan(got[s].value) and math.isinf(got[s].error_estimate), s


def test_step_fits_boundary():
    d = [np.array([1.0])]
    assert scenarios.step_fits([np.array([1.0])], d, quantities.STEP)
    assert not scenarios.step_fits([np.array([1e300])], d, quantities.STEP)
    assert scenarios.step_fits([np.zeros(0)], [np.zeros(0)], quantities.STEP)  # empty input: nothing moves
