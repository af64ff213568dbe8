"""Structured inputs: drawn with their structure, kept by the shapes, symmetric directions where
the contract needs them, and bugs that only structured values reach are found."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nablafuzz.campaign import run_campaign
from nablafuzz.core.config import make_config
from nablafuzz.core.errors import SpecError
from nablafuzz.core.model import Verdict
from nablafuzz.core.structures import STRUCTURES, draw, fit_shape
from nablafuzz.core.tensors import to_array
from nablafuzz.reports.store import Store
from nablafuzz.specs.generate import generate
from nablafuzz.specs.spec import _Ctx, load_specs, parse_api

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
RNG = np.random.default_rng(3)

CHECKS = {
    "lower_triangular": lambda a: np.array_equal(a, np.tril(a)) and np.all(np.tril(a, -1)[..., 1:, :1] != 0)
    and np.all(np.abs(np.diagonal(a, axis1=-2, axis2=-1)) >= 0.5),
    "upper_triangular": lambda a: np.array_equal(a, np.triu(a)) and np.all(np.abs(np.diagonal(a, axis1=-2, axis2=-1)) >= 0.5),
    "symmetric": lambda a: np.array_equal(a, np.swapaxes(a, -1, -2)),
    "spd": lambda a: np.allclose(a, np.swapaxes(a, -1, -2)) and np.linalg.eigvalsh(a).min() > 0.4,
    "orthogonal": lambda a: np.allclose(np.swapaxes(a, -1, -2) @ a, np.eye(a.shape[-1])),
    "rank_deficient": lambda a: np.all(np.linalg.matrix_rank(a) < min(a.shape[-2:])),
    "near_singular": lambda a: np.all(np.linalg.svd(a, compute_uv=False)[..., -1] < 1e-3)
    and np.all(np.linalg.svd(a, compute_uv=False)[..., 0] > 0.4),
    "permutation": lambda a: np.all(a.sum(-1) == 1) and np.all(a.sum(-2) == 1) and set(np.unique(a)) <= {0.0, 1.0},
    "sorted": lambda a: np.all(np.diff(a, axis=-1) >= 0),
    "unique": lambda a: len(np.unique(a)) == a.size,
}


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("shape", [(3, 3), (2, 4, 4), (3, 2)], ids=["square", "batched", "wide"])
def test_drawn_values_have_their_structure(structure, shape):
    shape = fit_shape(structure, shape)
    a = draw(structure, RNG, shape, "float64")
    assert a.shape == shape and CHECKS[structure](a), (structure, a)


def test_structure_is_a_validated_spec_field():
    spec = parse_api(_Ctx("t"), "numpy_ref", {"name": "f", "args": [{"name": "a", "structure": "spd"}]})
    assert spec.args[0].structure == "spd"
    with pytest.raises(SpecError, match="structure"):
        parse_api(_Ctx("t"), "numpy_ref", {"name": "f", "args": [{"name": "a", "structure": "positive_definite"}]})


def test_generator_keeps_structure_square_shapes_and_symmetric_projection():
    spec = parse_api(_Ctx("t"), "numpy_ref", {"name": "f", "args": [
        {"name": "a", "structure": "spd", "rank": [0, 3]}, {"name": "l", "structure": "lower_triangular"}]})
    seen = 0
    for i in range(40):
        t = generate(spec, 1, i)
        a, low = (to_array(v.value) for v in t.inputs)
        assert a.ndim >= 2 and a.shape[-1] == a.shape[-2] and low.shape[-1] == low.shape[-2]
        assert t.projections == (("a", "symmetric"), ("l", "lower"))  # directions that keep each structure
        if a.size:
            seen += 1
            assert np.linalg.eigvalsh(a.astype(np.float64)).min() > 0
    assert seen >= 30


def _campaign(tmp_path, monkeypatch, api, structure, trials=6):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    spec = tmp_path / f"{api}-{structure or 'plain'}.yaml"
    arg = f"{{name: x, dims: [4, 4]{', structure: ' + structure if structure else ''}}}"
    spec.write_text(f'library: numpy_ref\napis:\n  - name: "helper_structured_ops:{api}"\n    args: [{arg}]\n')
    store = tmp_path / f"store-{api}-{structure}"
    run_campaign(make_config("default", libraries=["numpy_ref"], apis=["helper_structured_ops:*"],
                             spec_files=[str(spec)], spec_dir=str(ROOT / "api_specs"), store_dir=str(store),
                             campaign_dir=str(tmp_path / "c"), workers=1, trials_per_api=trials, budget_s=300,
                             name=f"{api}-{structure}"))
    reports, errors = Store(store).load_all()
    assert not errors
    return reports


def test_bug_only_lower_triangular_factors_reach_is_found_with_the_structure(tmp_path, monkeypatch):
    (report,) = _campaign(tmp_path, monkeypatch, "square_wrong_on_lower", "lower_triangular")
    assert report.fingerprint.verdict is Verdict.DERIVATIVE_MISMATCH and "rev" in report.fingerprint.scenarios
    assert _campaign(tmp_path, monkeypatch, "square_wrong_on_lower", "") == []  # random matrices never reach it
    assert _campaign(tmp_path, monkeypatch, "square", "lower_triangular") == []  # the correct twin


def test_symmetric_directions_keep_an_eigh_like_op_consistent(tmp_path, monkeypatch):
    # an op on symmetric input with the symmetric-gradient convention: correct along symmetric
    # directions (its contract), so not reported with the structure; along full random
    # directions it disagrees with finite differences, which is what the projection avoids
    assert _campaign(tmp_path, monkeypatch, "sym_sq", "symmetric") == []
    assert _campaign(tmp_path, monkeypatch, "sym_sq", "spd") == []
    assert _campaign(tmp_path, monkeypatch, "sym_sq", "") != []


def _user_campaign(tmp_path, monkeypatch, api, args_yaml, trials=12):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    spec = tmp_path / f"{api}.yaml"
    spec.write_text(f'library: numpy_ref\napis:\n  - name: "helper_structured_ops:{api}"\n    args: {args_yaml}\n')
    store = tmp_path / f"store-{api}"
    run_campaign(make_config("default", libraries=["numpy_ref"], apis=["helper_structured_ops:*"],
                             spec_files=[str(spec)], spec_dir=str(ROOT / "api_specs"), store_dir=str(store),
                             campaign_dir=str(tmp_path / "c"), workers=1, trials_per_api=trials, budget_s=300,
                             name=api))
    reports, errors = Store(store).load_all()
    assert not errors
    return reports


TAKE = "[{name: x, dims: [5]}, {name: idx, dims: [4], dtypes: [int64], differentiable: false, values: [0, 3, 1, 4]}]"
WHERE = ("[{name: x, dims: [4]}, {name: y, same_shape_as: x}, "
         "{name: cond, same_shape_as: x, dtypes: [bool, uint32], differentiable: false}]")


def test_index_seeds_move_to_duplicates_within_their_range():
    spec = parse_api(_Ctx("t"), "numpy_ref", {"name": "f", "args": [
        {"name": "idx", "dims": [4], "dtypes": ["int64"], "differentiable": False, "values": [0, 3, 1, 4]}]})
    drawn = [to_array(generate(spec, 2, i).inputs[0].value) for i in range(60)]
    assert all(a.min() >= 0 and a.max() <= 4 for a in drawn)  # within the sample's range
    assert any(len(set(a.tolist())) < 4 for a in drawn)  # duplicates
    assert any(a.tolist() == [0, 3, 1, 4] for a in drawn) and len({tuple(a.tolist()) for a in drawn}) > 10


def test_sorted_integer_ids_are_drawn_sorted_with_repeats():
    """`structure: sorted` on an integer tensor (tf.math.segment_sum's segment_ids): sorted along
    the last axis, repeats allowed, within low..high, and not always the same."""
    spec = parse_api(_Ctx("t"), "numpy_ref", {"name": "f", "args": [
        {"name": "ids", "dims": [5], "dtypes": ["int64"], "differentiable": False, "low": 0, "high": 2,
         "structure": "sorted"}]})
    drawn = [to_array(generate(spec, 2, i).inputs[0].value) for i in range(40)]
    assert all(a.dtype == np.int64 and np.all(np.diff(a) >= 0) and a.min() >= 0 and a.max() <= 2 for a in drawn)
    assert len({tuple(a.tolist()) for a in drawn}) > 5 and any(len(set(a.tolist())) < a.size for a in drawn)


def test_bug_only_duplicate_indices_reach_is_found_and_its_twin_is_not(tmp_path, monkeypatch):
    (report,) = _user_campaign(tmp_path, monkeypatch, "take_dup_bug", TAKE)
    assert report.fingerprint.verdict is Verdict.DERIVATIVE_MISMATCH
    idx = next(i for i in report.trial.inputs if i.name == "idx")
    assert len(set(idx.value.values)) < len(idx.value.values)  # its trial has a duplicated index
    assert _user_campaign(tmp_path, monkeypatch, "take", TAKE) == []


def test_bug_only_a_uint32_predicate_reaches_is_found_and_its_twin_is_not(tmp_path, monkeypatch):
    (report,) = _user_campaign(tmp_path, monkeypatch, "where_uint32_bug", WHERE)
    assert next(i for i in report.trial.inputs if i.name == "cond").value.dtype == "uint32"
    assert _user_campaign(tmp_path, monkeypatch, "where", WHERE) == []


def test_summary_counts_trials_and_findings_per_structure(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    spec = tmp_path / "s.yaml"
    spec.write_text('library: numpy_ref\napis:\n  - name: "helper_structured_ops:square_wrong_on_lower"\n'
                    '    args: [{name: x, dims: [4, 4], structure: lower_triangular}]\n'
                    '  - {name: "helper_structured_ops:square", args: [{name: x, dims: [4, 4]}]}\n')
    summary = run_campaign(make_config("default", libraries=["numpy_ref"], apis=["helper_structured_ops:*"],
                                       spec_files=[str(spec)], spec_dir=str(ROOT / "api_specs"),
                                       store_dir=str(tmp_path / "s"), campaign_dir=str(tmp_path / "c"),
                                       workers=1, trials_per_api=5))
    ((name, trials, valid, findings),) = summary.structures
    assert (name, trials, valid) == ("lower_triangular", 5, 5) and findings >= 1
    assert "structured inputs (trials / valid / findings): lower_triangular 5/5/" in "\n".join(summary.lines())


def test_a_documented_undefined_result_for_duplicate_indices_is_a_convention(tmp_path, monkeypatch):
    # the planted take drops repeated contributions; declared (as torch documents index_copy_ and
    # put_) to be undefined for a repeated index, it is classified, counted and never reported
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    spec = tmp_path / "take.yaml"
    spec.write_text('library: numpy_ref\napis:\n  - name: "helper_structured_ops:take_dup_bug"\n'
                    f'    args: {TAKE}\n    known_issues: [{{reason: "undefined for a repeated index", '
                    'url: "https://example.org/docs", when: duplicate_indices}]\n')
    summary = run_campaign(make_config("default", libraries=["numpy_ref"], apis=["helper_structured_ops:*"],
                                       spec_files=[str(spec)], spec_dir=str(ROOT / "api_specs"),
                                       store_dir=str(tmp_path / "s"), campaign_dir=str(tmp_path / "c"),
                                       workers=1, trials_per_api=12))
    assert Store(tmp_path / "s").load_all() == ([], []) and dict(summary.dismissed).get("known_issue", 0) >= 1


def test_minimisation_keeps_symmetrised_inputs_square():
    from dataclasses import replace

    from nablafuzz.campaign.minimize import minimise
    spec = parse_api(_Ctx("t"), "numpy_ref", {"name": "f", "args": [{"name": "a", "structure": "spd", "dims": [4, 4]}]})
    trial = generate(spec, 0, 0)
    seen = []

    def reproduces(t):
        seen.append(to_array(t.inputs[0].value).shape)
        return True  # everything "reproduces": the minimiser shrinks as far as it may
    small = minimise(trial, reproduces)
    assert all(s[-1] == s[-2] for s in seen) and to_array(small.inputs[0].value).shape == (1, 1)
    unprojected = replace(trial, projections=())
    assert to_array(minimise(unprojected, lambda t: True).inputs[0].value).shape in ((1, 1), (1,), ())


def test_a_triangular_factor_follows_the_calls_upper_flag():
    spec = parse_api(_Ctx("t"), "numpy_ref", {"name": "f", "args": [
        {"name": "l", "structure": "lower_triangular", "dims": [3, 3]}, {"name": "upper", "kind": "bool"}]})
    for i in range(20):
        t = generate(spec, 0, i)
        a, upper = to_array(t.inputs[0].value), t.inputs[1].value
        assert np.array_equal(a, np.triu(a) if upper else np.tril(a))
        assert t.projections == (("l", "upper" if upper else "lower"),)


MATMUL = "[{name: a, dims: [3, 3]}, {name: b, dims: [3, 2]}]"


def test_batched_operands_broadcast_on_either_side():
    spec = parse_api(_Ctx("t"), "numpy_ref", {"name": "f", "batched": True, "args": [
        {"name": "a", "dims": [3, 3], "structure": "spd"}, {"name": "b", "dims": [3, 2]}]})
    shapes = [[to_array(i.value).shape for i in generate(spec, 4, k).inputs] for k in range(200)]
    batched = [s for s in shapes if s != [(3, 3), (3, 2)]]
    assert 0.15 < len(batched) / len(shapes) < 0.45
    assert all(a[-2:] == (3, 3) and b[-2:] == (3, 2) and len(np.broadcast_shapes(a[:-2], b[:-2])) >= 1
               for a, b in batched)
    assert any(len(a) == 2 for a, b in batched) and any(len(b) == 2 for a, b in batched)  # either side unbatched
    assert any(a[:-2] != b[:-2] and len(a) == len(b) for a, b in batched)  # size-1 axes broadcast
    for k in range(40):  # every batch element of a structured operand keeps its structure
        a = to_array(generate(spec, 4, k).inputs[0].value)
        assert np.allclose(a, np.swapaxes(a, -1, -2)) and np.linalg.eigvalsh(a).min() > 0


def test_bug_only_a_broadcast_batch_reaches_is_found_and_its_twin_is_not(tmp_path, monkeypatch):
    batched = MATMUL + "\n    batched: true"
    (report,) = _user_campaign(tmp_path, monkeypatch, "matmul_bcast_bug", batched)
    a, b = (to_array(i.value) for i in report.trial.inputs)
    assert a.shape[:-2] != b.shape[:-2]  # its trial broadcasts one operand's batch
    unbatched = tmp_path / "unbatched"
    unbatched.mkdir()
    assert _user_campaign(unbatched, monkeypatch, "matmul_bcast_bug", MATMUL) == []  # never reached unbatched
    assert _user_campaign(tmp_path, monkeypatch, "matmul", batched) == []


def test_batching_probe_learns_which_real_apis_map_over_a_batch(tmp_path):
    from nablafuzz.cli import derive_batching
    from nablafuzz.specs.batching import load_batched
    for library, solve, conv in (
            ("torch", "torch.linalg.solve", "torch.nn.functional.conv2d"),
            ("jax", "jax.numpy.linalg.solve", "jax.scipy.signal.convolve2d")):
        spec = tmp_path / f"{library}.yaml"
        spec.write_text(f"library: {library}\napis:\n"
                        f"  - {{name: {solve}, args: [{{name: a, dims: [3, 3]}}, {{name: b, dims: [3, 2]}}]}}\n"
                        f"  - {{name: {conv}, args: [{{name: x, dims: [1, 1, 4, 4]}}, {{name: w, dims: [1, 1, 2, 2]}}]}}\n")
        assert derive_batching(tmp_path, library, ("*",), False, [spec]) == 1
    assert set(load_batched(tmp_path / "batching.yaml")) == {"torch:torch.linalg.solve", "jax:jax.numpy.linalg.solve"}
    specs = load_specs(tmp_path, ["torch"], [tmp_path / "torch.yaml"])
    assert [s.name for s in specs.specs if s.batched] == ["torch.linalg.solve"]
