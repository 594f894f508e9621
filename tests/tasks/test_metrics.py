"""Metrics against independent implementations: scikit-learn and scikit-survival.

Expected values are computed in each test by calling sklearn / sksurv on the same data.
Tolerance: 1e-6 for classification and regression (float64 throughout); 1e-5 for survival,
because torchsurv casts times, risks and weights to float32 while sksurv stays in float64.
Tie handling is identical (torchsurv copies sksurv's conventions), so no other difference is
expected; the data below deliberately contain tied times and tied risks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from polyfuse.tasks import metrics as M

SURV_TOL = 1e-5
CLS_TOL = 1e-6


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# --------------------------------------------------------------------------- classification


def _binary(rng: np.random.Generator, n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1).round(2)  # rounding creates tied scores
    return p, y


def test_binary_vs_sklearn(rng: np.random.Generator) -> None:
    p, y = _binary(rng)
    assert M.auroc(p, y) == pytest.approx(skm.roc_auc_score(y, p), abs=CLS_TOL)
    assert M.auprc(p, y) == pytest.approx(skm.average_precision_score(y, p), abs=CLS_TOL)
    pred = (p >= 0.5).astype(int)
    assert M.balanced_accuracy(p, y) == pytest.approx(
        skm.balanced_accuracy_score(y, pred), abs=CLS_TOL
    )
    assert M.f1(p, y) == pytest.approx(skm.f1_score(y, pred), abs=CLS_TOL)
    pred3 = (p >= 0.3).astype(int)
    assert M.f1(p, y, threshold=0.3) == pytest.approx(skm.f1_score(y, pred3), abs=CLS_TOL)


def test_binary_accepts_tensors_and_column_vectors(rng: np.random.Generator) -> None:
    p, y = _binary(rng)
    pt = torch.tensor(p, dtype=torch.float32, requires_grad=True).unsqueeze(1)
    got = M.auroc(pt, torch.tensor(y))
    assert isinstance(got, float)
    assert got == pytest.approx(skm.roc_auc_score(y, p.astype(np.float32)), abs=CLS_TOL)


def test_binary_nan_targets_are_dropped(rng: np.random.Generator) -> None:
    p, y = _binary(rng)
    y_missing = y.astype(float)
    y_missing[:10] = np.nan
    assert M.auroc(p, y_missing) == pytest.approx(skm.roc_auc_score(y[10:], p[10:]), abs=CLS_TOL)


def test_undefined_classification_is_nan() -> None:
    p = np.array([0.2, 0.7, 0.9])
    assert math.isnan(M.auroc(p, np.ones(3)))
    assert math.isnan(M.auprc(p, np.zeros(3)))
    assert math.isnan(M.f1(np.array([0.1, 0.2]), np.zeros(2)))  # tp + fp + fn = 0
    assert math.isnan(M.auroc(np.array([]), np.array([])))
    # balanced accuracy with one class present is that class's recall (as sklearn)
    with pytest.warns(UserWarning):  # sklearn: "y_pred contains classes not in y_true"
        expected = skm.balanced_accuracy_score(np.ones(3), p >= 0.5)
    assert M.balanced_accuracy(p, np.ones(3)) == pytest.approx(expected)


def _multiclass(rng: np.random.Generator, n: int = 90, c: int = 4) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, c, n)
    p = rng.dirichlet(np.ones(c), n)
    p[np.arange(n), y] += 0.4
    return p / p.sum(1, keepdims=True), y


def test_multiclass_vs_sklearn(rng: np.random.Generator) -> None:
    p, y = _multiclass(rng)
    pred = p.argmax(1)
    assert M.auroc(p, y) == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=CLS_TOL
    )
    assert M.auroc(p, y, average="micro") == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", average="micro"), abs=CLS_TOL
    )
    assert M.auprc(p, y) == pytest.approx(skm.average_precision_score(y, p), abs=CLS_TOL)
    assert M.balanced_accuracy(p, y) == pytest.approx(
        skm.balanced_accuracy_score(y, pred), abs=CLS_TOL
    )
    assert M.f1(p, y) == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=CLS_TOL)
    assert M.f1(p, y, average="micro") == pytest.approx(skm.accuracy_score(y, pred), abs=CLS_TOL)


def test_multiclass_class_never_predicted_or_absent(rng: np.random.Generator) -> None:
    p, y = _multiclass(rng)
    p[:, 3] = 0.0  # class 3 never predicted: F1 = 0 for it, as sklearn
    pred = p.argmax(1)
    assert M.f1(p, y) == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=CLS_TOL)
    keep = y != 2  # class 2 absent from target but predicted: sklearn ignores it in recall
    pred_k = p[keep].argmax(1)
    with pytest.warns(UserWarning):  # sklearn: "y_pred contains classes not in y_true"
        expected = skm.balanced_accuracy_score(y[keep], pred_k)
    assert M.balanced_accuracy(p[keep], y[keep]) == pytest.approx(expected, abs=CLS_TOL)


def _multilabel(rng: np.random.Generator, n: int = 70, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, (n, k)).astype(float)
    p = np.clip(0.4 * y + 0.6 * rng.random((n, k)), 0, 1)
    return p, y


def test_multilabel_vs_sklearn(rng: np.random.Generator) -> None:
    p, y = _multilabel(rng)
    pred = (p >= 0.5).astype(int)
    for avg in ("macro", "micro"):
        assert M.auroc(p, y, average=avg) == pytest.approx(
            skm.roc_auc_score(y, p, average=avg), abs=CLS_TOL
        )
        assert M.auprc(p, y, average=avg) == pytest.approx(
            skm.average_precision_score(y, p, average=avg), abs=CLS_TOL
        )
        assert M.f1(p, y, average=avg) == pytest.approx(
            skm.f1_score(y, pred, average=avg), abs=CLS_TOL
        )
    per_label = [skm.balanced_accuracy_score(y[:, j], pred[:, j]) for j in range(3)]
    assert M.balanced_accuracy(p, y) == pytest.approx(np.mean(per_label), abs=CLS_TOL)


def test_multilabel_nan_labels_are_ignored(rng: np.random.Generator) -> None:
    p, y = _multilabel(rng)
    y[rng.random(y.shape) < 0.25] = np.nan
    known = ~np.isnan(y)
    # sklearn reference: per label on its known entries (macro), or all known pairs (micro)
    macro = np.mean([skm.roc_auc_score(y[known[:, j], j], p[known[:, j], j]) for j in range(3)])
    micro = skm.roc_auc_score(y[known], p[known])
    assert M.auroc(p, y) == pytest.approx(macro, abs=CLS_TOL)
    assert M.auroc(p, y, average="micro") == pytest.approx(micro, abs=CLS_TOL)
    f1_macro = np.mean(
        [skm.f1_score(y[known[:, j], j], p[known[:, j], j] >= 0.5) for j in range(3)]
    )
    assert M.f1(p, y) == pytest.approx(f1_macro, abs=CLS_TOL)
    # a label with one class among its known entries is skipped in the macro mean
    y[:, 0] = np.where(known[:, 0], 1.0, np.nan)
    macro_12 = np.mean([skm.roc_auc_score(y[known[:, j], j], p[known[:, j], j]) for j in (1, 2)])
    assert M.auroc(p, y) == pytest.approx(macro_12, abs=CLS_TOL)


def test_shape_errors_raise() -> None:
    with pytest.raises(ValueError):
        M.auroc(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError):
        M.auroc(np.zeros(4), np.zeros(5))


# --------------------------------------------------------------------------- survival


@pytest.fixture(scope="module")
def surv_data() -> dict[str, np.ndarray]:
    """Test and training splits; times rounded to 0.5 so ties occur in time and in risk."""
    rng = np.random.default_rng(1)
    n, n_train = 70, 200
    t = (np.minimum(rng.exponential(10, n), 30.0) * 2).round(0) / 2
    e = rng.random(n) < 0.6
    risk = (-t + rng.normal(0, 6, n)).round(0)
    tt = np.r_[rng.exponential(10, n_train - 1).round(0), 60.0]  # follow-up beyond the test
    te = np.r_[rng.random(n_train - 1) < 0.6, True]
    return {"t": t, "e": e, "risk": risk, "tt": tt, "te": te}


def _surv(event: np.ndarray, time: np.ndarray) -> np.ndarray:
    from sksurv.util import Surv

    return Surv.from_arrays(event=event.astype(bool), time=time)


def test_harrell_vs_sksurv(surv_data: dict[str, np.ndarray]) -> None:
    sm = pytest.importorskip("sksurv.metrics")
    d = surv_data
    # ties of every kind are present: event-event, event-censored, and tied risks
    t_ev, t_cen = d["t"][d["e"]], d["t"][~d["e"]]
    assert len(np.unique(t_ev)) < len(t_ev) and np.isin(t_ev, t_cen).any()
    assert len(np.unique(d["risk"])) < len(d["risk"])
    expected = sm.concordance_index_censored(d["e"], d["t"], d["risk"])[0]
    assert M.harrell_c_index(d["risk"], d["t"], d["e"]) == pytest.approx(expected, abs=SURV_TOL)
    got = M.harrell_c_index(torch.tensor(d["risk"]), torch.tensor(d["t"]), torch.tensor(d["e"]))
    assert got == pytest.approx(expected, abs=SURV_TOL)


@pytest.mark.parametrize("tau", [None, 12.0])
def test_uno_vs_sksurv(surv_data: dict[str, np.ndarray], tau: float | None) -> None:
    sm = pytest.importorskip("sksurv.metrics")
    d = surv_data
    expected = sm.concordance_index_ipcw(
        _surv(d["te"], d["tt"]), _surv(d["e"], d["t"]), d["risk"], tau=tau
    )[0]
    got = M.uno_c_index(d["risk"], d["t"], d["e"], d["tt"], d["te"], tmax=tau)
    assert got == pytest.approx(expected, abs=SURV_TOL)


def test_time_dependent_auc_vs_sksurv(surv_data: dict[str, np.ndarray]) -> None:
    sm = pytest.importorskip("sksurv.metrics")
    d = surv_data
    times = np.array([3.0, 6.0, 9.0, 14.0])
    train, test = _surv(d["te"], d["tt"]), _surv(d["e"], d["t"])
    curve, mean_auc = sm.cumulative_dynamic_auc(train, test, d["risk"], times)
    kw = {"train_time": d["tt"], "train_event": d["te"]}
    got_curve = M.time_dependent_auc_curve(d["risk"], d["t"], d["e"], times, **kw)
    np.testing.assert_allclose(got_curve, curve, atol=SURV_TOL)
    assert M.time_dependent_auc(d["risk"], d["t"], d["e"], times, **kw) == pytest.approx(
        mean_auc, abs=SURV_TOL
    )
    # a single time gives AUC(t); without training data the IPCW comes from the test set
    one, _ = sm.cumulative_dynamic_auc(test, test, d["risk"], [6.0])
    assert M.time_dependent_auc(d["risk"], d["t"], d["e"], [6.0]) == pytest.approx(
        one[0], abs=SURV_TOL
    )


def test_integrated_brier_vs_sksurv(surv_data: dict[str, np.ndarray]) -> None:
    sm = pytest.importorskip("sksurv.metrics")
    d = surv_data
    times = np.array([2.0, 5.0, 8.0, 12.0, 20.0])
    scale = np.exp(2.5 - d["risk"] / 10)
    curve = np.exp(-times[None, :] / scale[:, None])
    expected = sm.integrated_brier_score(
        _surv(d["te"], d["tt"]), _surv(d["e"], d["t"]), curve, times
    )
    got = M.integrated_brier_score(curve, times, d["t"], d["e"], d["tt"], d["te"])
    assert got == pytest.approx(expected, abs=SURV_TOL)


def test_undefined_survival_is_nan(surv_data: dict[str, np.ndarray]) -> None:
    d = surv_data
    none = np.zeros_like(d["e"])
    assert math.isnan(M.harrell_c_index(d["risk"], d["t"], none))
    assert math.isnan(M.uno_c_index(d["risk"], d["t"], none, d["tt"], d["te"]))
    # events only at the last time, nobody after them: no comparable pair
    assert math.isnan(M.harrell_c_index([1.0, 2.0], [5.0, 5.0], [1, 1]))
    # an event tied with a censoring is comparable
    assert M.harrell_c_index([2.0, 1.0], [5.0, 5.0], [1, 0]) == 1.0
    assert math.isnan(M.time_dependent_auc(d["risk"], d["t"], none, [5.0]))
    assert math.isnan(M.time_dependent_auc(d["risk"], d["t"], d["e"], [d["t"].max()]))
    assert np.isnan(M.time_dependent_auc_curve(d["risk"], d["t"], none, [3.0, 5.0])).all()


# --------------------------------------------------------------------------- regression


def test_regression_vs_sklearn(rng: np.random.Generator) -> None:
    y = rng.normal(size=50)
    p = y + rng.normal(scale=0.5, size=50)
    assert M.mae(p, y) == pytest.approx(skm.mean_absolute_error(y, p), abs=CLS_TOL)
    assert M.rmse(p, y) == pytest.approx(math.sqrt(skm.mean_squared_error(y, p)), abs=CLS_TOL)
    assert M.r2(p[:, None], y) == pytest.approx(skm.r2_score(y, p), abs=CLS_TOL)
    y_missing = y.copy()
    y_missing[:5] = np.nan
    assert M.r2(p, y_missing) == pytest.approx(skm.r2_score(y[5:], p[5:]), abs=CLS_TOL)
    assert math.isnan(M.r2(p[:3], np.ones(3)))
    assert math.isnan(M.mae(p[:2], np.full(2, np.nan)))
