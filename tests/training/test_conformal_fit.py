"""Split-conformal outputs of a fitted model (#18 item 6): calibrated on the validation part,
saved with the model, added to predictions and to `polyfuse predict`'s columns, and their
coverage measured on patients the model never saw."""

from __future__ import annotations

import numpy as np
import pytest

from polyfuse.config import TrainingConfig
from polyfuse.data.dataset import ArraySource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.training.fit import FittedModel, fit_model
from polyfuse.training.settings import FitSettings

FAST = dict(epochs=15, batch_size=64, progress=False)


def _cohort(n: int, seed: int) -> MultimodalDataset:
    """A binary label, a regression target and a survival outcome, all from x0 + noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    signal = x[:, 0] + 0.5 * x[:, 1]
    label = (signal + rng.logistic(size=n) * 0.5 > 0).astype(np.float32)
    level = (signal + rng.normal(0, 0.5, n)).astype(np.float32)
    time = rng.exponential(np.exp(-signal)) * 10 + 0.1
    censor = rng.exponential(20, n) + 0.1
    surv = np.stack([np.minimum(time, censor), (time <= censor).astype(float)], 1)
    return MultimodalDataset(
        [f"p{i}" for i in range(n)],
        {"x": ModalitySpec("x", "tabular", (4,))},
        {"x": ArraySource(x, np.ones(n, bool))},
        {
            "y": TaskSpec("y", "binary"),
            "level": TaskSpec("level", "regression"),
            "os": TaskSpec("os", "survival"),
        },
        {"y": label, "level": level, "os": surv},
        name="conformal",
    )


@pytest.fixture(scope="module")
def fitted() -> FittedModel:
    training = TrainingConfig(**FAST, val_fraction=0.4, conformal=0.1)
    return fit_model("early", _cohort(1000, 0), FitSettings.of(training=training, seed=0))


def test_each_task_is_calibrated_and_covers_new_patients(fitted):
    """On 3,000 new patients from the same distribution, 90% sets, intervals and bounds cover
    about 90% (the validation part also picked the best epoch: a little less is possible)."""
    assert set(fitted.conformal) == {"y", "level", "os"}
    new = _cohort(3000, 1)
    metrics = fitted.evaluate(new, new.targets)
    assert 0.85 <= metrics["y"]["coverage"] <= 0.95
    assert 1.0 <= metrics["y"]["set_size"] < 2.0  # not every set is both classes
    assert 0.85 <= metrics["level"]["coverage"] <= 0.95
    truth = new.targets["os"]  # censoring leaves the survival coverage between two bounds
    assert metrics["os"]["coverage_low"] <= metrics["os"]["coverage_high"]
    assert metrics["os"]["coverage_low"] >= 0.8 and metrics["os"]["coverage_high"] <= 0.99
    scores = fitted.predict(new)
    order = np.argsort(scores["os"]["risk"])
    assert np.all(np.diff(scores["os"]["time_lower"][order]) <= 1e-9)  # riskier, earlier
    assert (scores["os"]["time_lower"] > 0).all() and len(truth) == 3000


def test_the_calibration_is_saved_and_predict_writes_its_columns(fitted, tmp_path):
    from polyfuse.inference.predictor import Predictor

    fitted.save(tmp_path)
    loaded = FittedModel.load(tmp_path)
    assert {t: c.to_dict() for t, c in loaded.conformal.items()} == {
        t: c.to_dict() for t, c in fitted.conformal.items()
    }
    new = _cohort(50, 2)
    frame = Predictor(loaded).predict(new)
    assert set(frame["y.set"]) <= {"", "0", "1", "0|1"} and frame["y.set"].str.len().gt(0).any()
    prob = frame["y.prob"]
    assert (frame.loc[prob > 0.95, "y.set"] == "1").all()  # a confident 1 is a set of one
    assert (frame["level.pred_low"] < frame["level.pred"]).all()
    assert (frame["level.pred"] < frame["level.pred_high"]).all()
    assert (frame["os.time_lower"] > 0).all()


def test_no_calibration_when_asked_for_none():
    training = TrainingConfig(**FAST, conformal=None)
    fitted = fit_model("early", _cohort(200, 0), FitSettings.of(training=training, seed=0))
    assert fitted.conformal == {}
    scores = fitted.predict(_cohort(20, 3))
    assert "set" not in scores["y"] and "time_lower" not in scores["os"]
