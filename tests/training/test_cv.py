import numpy as np
import pytest

from polyfuse.config import TrainingConfig
from polyfuse.data.splits import kfold
from polyfuse.training.cv import cross_validate

FAST = TrainingConfig(epochs=8, batch_size=32, lr=3e-3, progress=False)


def test_cv_reports_every_fold_and_out_of_fold_predictions(signal_data, tmp_path):
    result = cross_validate(
        "early", signal_data, folds=3, repeats=2, seed=0, training=FAST, progress=False, dim=8
    )
    folds = result.folds
    assert set(folds["task"]) == {"y", "os"}
    assert len(folds.query("task == 'os' and metric == 'c_index'")) == 6
    summary = result.summary()
    c = folds.query("task == 'os' and metric == 'c_index'")["value"]
    assert summary.loc[("os", "c_index"), "mean"] == pytest.approx(c.mean())
    assert summary.loc[("os", "c_index"), "sd"] == pytest.approx(c.std(ddof=1))
    # every sample is predicted once per repeat, from a model that never saw it
    preds = result.predictions.query("task == 'y'")
    assert preds.groupby("repeat")["id"].nunique().tolist() == [160, 160]
    result.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"folds.csv", "summary.csv", "predictions.csv"}


def test_identical_splits_give_identical_results(signal_data):
    splits = kfold(signal_data, folds=3, seed=4)
    runs = [
        cross_validate("late", signal_data, splits=splits, training=FAST, progress=False, seed=4)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].folds["value"], runs[1].folds["value"])
