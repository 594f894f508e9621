"""The interaction generator: reproducible, labels driven only by the chosen pairs."""

from __future__ import annotations

import numpy as np
import pytest

from polyfuse.datasets.synthetic import InteractionTruth, make_interactions
from polyfuse.errors import ConfigError


def _features(data, m: str) -> np.ndarray:
    return data.sources[m].values


def test_same_seed_same_cohort_other_seed_differs():
    a, b = make_interactions(n=50, seed=3), make_interactions(n=50, seed=3)
    c = make_interactions(n=50, seed=4)
    np.testing.assert_array_equal(_features(a, "a"), _features(b, "a"))
    np.testing.assert_array_equal(a.targets["y"], b.targets["y"])
    assert not np.array_equal(_features(a, "a"), _features(c, "a"))


def test_specs_targets_and_truth():
    data = make_interactions(n=40, modalities={"x": 3, "y": 5, "z": 2}, pairs=[("y", "x")])
    assert {m: s.shape for m, s in data.specs.items()} == {"x": (3,), "y": (5,), "z": (2,)}
    assert all(s.kind == "tabular" for s in data.specs.values())
    assert data.specs["x"].feature_names == ("x0", "x1", "x2")
    assert data.tasks["y"].type == "binary"
    assert set(np.unique(data.targets["y"])) <= {0.0, 1.0}
    truth = data.truth
    assert isinstance(truth, InteractionTruth)
    assert truth.pairs == (("y", "x"),) and truth.pair_names == ("y+x",)
    assert set(truth.directions) == {"x", "y"}
    for w in truth.directions.values():
        np.testing.assert_allclose(np.linalg.norm(w), 1.0, rtol=1e-6)


def test_score_is_the_product_of_the_hidden_projections():
    data = make_interactions(n=200, pairs=[("a", "b")], task="regression", noise=0.0)
    t = data.truth
    s = (_features(data, "a") @ t.directions["a"]) * (_features(data, "b") @ t.directions["b"])
    np.testing.assert_allclose(t.score, s, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(data.targets["y"], s, rtol=1e-4, atol=1e-5)


def test_single_modalities_and_other_pairs_carry_no_linear_signal():
    data = make_interactions(n=20_000, pairs=[("a", "b")], seed=0)
    y = data.targets["y"] - data.targets["y"].mean()
    for m in "abc":
        corr = np.abs(_features(data, m).T @ y) / len(y)
        assert corr.max() < 0.03, m  # no main effect anywhere
    t = data.truth
    pa = _features(data, "a") @ t.directions["a"]
    pb = _features(data, "b") @ t.directions["b"]
    assert np.corrcoef(pa * pb, y)[0, 1] > 0.5  # but the pair's product does


def test_missing_keeps_one_modality_per_sample():
    data = make_interactions(n=500, missing=0.6, seed=2)
    present = data.presence.to_numpy()
    assert present.any(axis=1).all()
    assert 0.3 < 1 - present.mean() < 0.6
    for m in data.specs:
        absent = ~data.sources[m].present
        assert (_features(data, m)[absent] == 0).all()


def test_survival_and_main_effects():
    data = make_interactions(n=300, task="survival", main=1.0, seed=1)
    assert data.tasks["y"].type == "survival"
    time, event = data.targets["y"].T
    assert (time > 0).all() and set(np.unique(event)) <= {0.0, 1.0} and 0 < event.mean() < 1


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(modalities={"a": 3}),
        dict(pairs=[]),
        dict(pairs=[("a", "a")]),
        dict(pairs=[("a", "q")]),
        dict(task="multiclass"),
        dict(missing=1.0),
        dict(modalities={"a": 0, "b": 2}, pairs=[("a", "b")]),
    ],
    ids=str,
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ConfigError, match="make_interactions"):
        make_interactions(n=10, **kwargs)
