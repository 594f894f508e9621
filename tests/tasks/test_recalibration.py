"""Platt and isotonic recalibration: equal to scikit-learn's fits, the ranking kept, an
over-confident model's probabilities brought back towards what is observed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit, logit

from polyfuse.tasks.recalibration import Recalibration, fit_recalibration


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True probabilities q; the model says expit(3 logit q): right order, far too extreme."""
    rng = np.random.default_rng(seed)
    q = expit(rng.normal(0, 1.2, n))
    return expit(3 * logit(q)), rng.binomial(1, q).astype(float)


def test_platt_is_a_logistic_regression_on_the_logit_and_undoes_overconfidence():
    from sklearn.linear_model import LogisticRegression

    p, y = _overconfident(3000, 0)
    platt = fit_recalibration("platt", p, y)
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000)
    reference.fit(logit(np.clip(p, 1e-6, 1 - 1e-6))[:, None], y)
    assert platt.params["slope"] == pytest.approx(reference.coef_[0, 0], rel=1e-4)
    assert platt.params["slope"] == pytest.approx(1 / 3, abs=0.05)  # the distortion undone
    new_p, new_y = _overconfident(3000, 1)
    fixed = platt(new_p)
    assert np.all(np.diff(fixed[np.argsort(new_p)]) >= 0)  # the ranking is kept
    before = np.mean((new_p - new_y) ** 2)
    assert np.mean((fixed - new_y) ** 2) < before - 0.01  # Brier improves on new patients


def test_isotonic_is_scikit_learns_and_round_trips_through_json():
    from sklearn.isotonic import IsotonicRegression

    p, y = _overconfident(1000, 2)
    iso = fit_recalibration("isotonic", p, np.where(np.arange(1000) % 50 == 0, np.nan, y))
    known = np.arange(1000) % 50 != 0
    reference = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(p[known], y[known])
    grid = np.linspace(0, 1, 101)
    np.testing.assert_allclose(iso(grid), reference.predict(grid), atol=1e-12)
    again = Recalibration.from_dict(json.loads(json.dumps(iso.to_dict())))
    np.testing.assert_array_equal(again(grid), iso(grid))


def test_recalibration_refuses_one_class_and_unknown_methods():
    with pytest.raises(ValueError, match="both classes"):
        fit_recalibration("platt", np.array([0.2, 0.7]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="must be one of"):
        fit_recalibration("beta", np.array([0.2, 0.7]), np.array([0.0, 1.0]))


def test_a_fit_with_recalibration_saves_it_and_predicts_through_it(tmp_path):
    from polyfuse.config import TrainingConfig
    from polyfuse.data.dataset import ArraySource, MultimodalDataset
    from polyfuse.data.specs import ModalitySpec, TaskSpec
    from polyfuse.training.fit import FittedModel, fit_model
    from polyfuse.training.settings import FitSettings

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)).astype(np.float32)
    data = MultimodalDataset(
        [f"p{i}" for i in range(300)],
        {"x": ModalitySpec("x", "tabular", (3,))},
        {"x": ArraySource(x, np.ones(300, bool))},
        {"y": TaskSpec("y", "binary")},
        {"y": (x[:, 0] + rng.normal(size=300) > 0).astype(np.float32)},
    )
    training = TrainingConfig(epochs=5, progress=False, recalibration="platt")
    fitted = fit_model("early", data, FitSettings.of(training=training, seed=0))
    raw = fitted.predict(data, calibrated=False)["y"]["prob"]
    assert set(fitted.recalibration) == {"y"}
    np.testing.assert_allclose(fitted.predict(data)["y"]["prob"], fitted.recalibration["y"](raw))
    fitted.save(tmp_path)
    loaded = FittedModel.load(tmp_path)
    np.testing.assert_array_equal(
        loaded.predict(data)["y"]["prob"], fitted.predict(data)["y"]["prob"]
    )
