"""Evaluation metrics as plain functions: arrays or tensors in, a Python float out.

The computations are torchmetrics' (classification, regression) and torchsurv's (survival);
this module only converts inputs, handles missing labels, and turns "undefined" into NaN
instead of an exception, because in cross-validation a fold with one class or no event is an
expected outcome to be reported, not a crash. Malformed inputs (shape mismatch) still raise.

Classification inputs are probabilities:

* binary: ``probs (N,)`` or ``(N, 1)``, ``target (N,)`` in {0, 1} (NaN = unknown, dropped);
* multiclass: ``probs (N, C)``, ``target (N,)`` integer class;
* multilabel: ``probs (N, K)``, ``target (N, K)`` in {0, 1} with NaN = unknown label.

For multiclass (one-vs-rest) and multilabel inputs, ``average="macro"`` takes the unweighted
mean over the classes/labels where the metric is defined, and ``average="micro"`` pools every
known (sample, class) decision into one binary problem.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_f1_score,
    multiclass_f1_score,
    multiclass_recall,
)

__all__ = [
    "auprc",
    "auroc",
    "balanced_accuracy",
    "f1",
    "harrell_c_index",
    "integrated_brier_score",
    "mae",
    "r2",
    "rmse",
    "time_dependent_auc",
    "time_dependent_auc_curve",
    "uno_c_index",
]

ArrayLike = np.ndarray | Tensor | Sequence[float]
Average = Literal["macro", "micro"]
NAN = float("nan")


def _t(x: Any, dtype: torch.dtype = torch.float64) -> Tensor:
    """Detached CPU tensor of ``dtype`` from an array, tensor or sequence."""
    if isinstance(x, Tensor):
        return x.detach().cpu().to(dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def _float(x: Tensor | float) -> float:
    v = float(x)
    return v if np.isfinite(v) else NAN


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else NAN


# --------------------------------------------------------------------------- classification


def _binary_auroc(p: Tensor, y: Tensor) -> float:
    if y.numel() == 0 or y.min() == y.max():
        return NAN  # needs both classes
    return _float(binary_auroc(p, y.long()))


def _binary_auprc(p: Tensor, y: Tensor) -> float:
    if not bool((y == 1).any()):
        return NAN  # precision is undefined without a positive
    return _float(binary_average_precision(p, y.long()))


def _binary_balanced_accuracy(pred: Tensor, y: Tensor) -> float:
    """Mean recall over the classes present in ``y`` (sklearn's definition)."""
    if y.numel() == 0:
        return NAN
    recall = multiclass_recall(pred, y.long(), num_classes=2, average="none")
    present = torch.bincount(y.long(), minlength=2) > 0
    return _float(recall[present].mean())


def _binary_f1(pred: Tensor, y: Tensor) -> float:
    if not bool(((pred == 1) | (y == 1)).any()):
        return NAN  # no positive predicted or true: tp + fp + fn = 0
    return _float(binary_f1_score(pred, y.long()))


def _split_problem(probs: ArrayLike, target: ArrayLike) -> tuple[str, Tensor, Tensor]:
    """Return (kind, probs, target) with kind in binary / multiclass / multilabel."""
    p = _t(probs)
    y = _t(target)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"probs has {p.shape[0]} samples, target has {y.shape[0]}")
    if p.ndim == 1 and y.ndim == 1:
        known = ~torch.isnan(y)
        return "binary", p[known], y[known]
    if p.ndim == 2 and y.ndim == 1:
        if bool((y < 0).any()) or bool((y >= p.shape[1]).any()):
            raise ValueError(f"multiclass target must lie in 0..{p.shape[1] - 1}")
        return "multiclass", p, y.long()
    if p.ndim == 2 and y.shape == p.shape:
        return "multilabel", p, y
    raise ValueError(
        f"cannot read probs {tuple(p.shape)} with target {tuple(y.shape)}: use (N,)/(N,) for "
        "binary, (N, C)/(N,) for multiclass, (N, K)/(N, K) for multilabel"
    )


def _truth_matrix(kind: str, n_cols: int, y: Tensor) -> Tensor:
    """(N, K) 0/1 truth, NaN = unknown: one-hot for multiclass (one-vs-rest), as is otherwise."""
    return F.one_hot(y, n_cols).double() if kind == "multiclass" else y


def _averaged(
    fn: Callable[[Tensor, Tensor], float], scores: Tensor, truth: Tensor, average: Average
) -> float:
    """Macro: mean of ``fn`` per column where defined; micro: ``fn`` on all known pairs pooled."""
    known = ~torch.isnan(truth)
    if average == "micro":
        return fn(scores[known], truth[known])
    if average != "macro":
        raise ValueError(f"average must be 'macro' or 'micro', got {average!r}")
    cols = range(scores.shape[1])
    return _nanmean([fn(scores[known[:, k], k], truth[known[:, k], k]) for k in cols])


def _ranked(
    fn: Callable[[Tensor, Tensor], float], probs: ArrayLike, target: ArrayLike, average: Average
) -> float:
    """Apply a binary score-based metric to binary / multiclass / multilabel inputs."""
    kind, p, y = _split_problem(probs, target)
    if kind == "binary":
        return fn(p, y)
    return _averaged(fn, p, _truth_matrix(kind, p.shape[1], y), average)


def auroc(probs: ArrayLike, target: ArrayLike, *, average: Average = "macro") -> float:
    """Area under the ROC curve (one-vs-rest for multiclass); NaN if only one class is present."""
    return _ranked(_binary_auroc, probs, target, average)


def auprc(probs: ArrayLike, target: ArrayLike, *, average: Average = "macro") -> float:
    """Average precision (step-wise area under the PR curve, as sklearn); NaN with no positive."""
    return _ranked(_binary_auprc, probs, target, average)


def _decisions(kind: str, p: Tensor, threshold: float) -> Tensor:
    """Hard predictions: ``p >= threshold`` (binary, multilabel), one-hot argmax (multiclass)."""
    if kind == "multiclass":
        return F.one_hot(p.argmax(dim=1), p.shape[1]).long()
    return (p >= threshold).long()


def balanced_accuracy(
    probs: ArrayLike, target: ArrayLike, *, threshold: float = 0.5, average: Average = "macro"
) -> float:
    """Mean per-class recall over the classes present in ``target`` (sklearn's definition).

    Binary and multilabel predictions are ``probs >= threshold``; multiclass is the argmax.
    Multilabel macro averages the per-label binary balanced accuracies. ``average="micro"``
    pools the (one-vs-rest) binary decisions; sklearn has no equivalent.
    """
    kind, p, y = _split_problem(probs, target)
    if kind == "binary":
        return _binary_balanced_accuracy(_decisions(kind, p, threshold), y)
    if kind == "multiclass" and average == "macro":
        if y.numel() == 0:
            return NAN
        n_classes = p.shape[1]
        recall = multiclass_recall(p.argmax(dim=1), y, num_classes=n_classes, average="none")
        present = torch.bincount(y, minlength=n_classes) > 0
        return _float(recall[present].mean())
    pred = _decisions(kind, p, threshold)
    return _averaged(_binary_balanced_accuracy, pred, _truth_matrix(kind, p.shape[1], y), average)


def f1(
    probs: ArrayLike, target: ArrayLike, *, threshold: float = 0.5, average: Average = "macro"
) -> float:
    """F1 score; NaN when there is no positive in prediction or truth (sklearn would say 0).

    Multiclass macro averages over the classes that occur in target or prediction (as sklearn);
    multiclass micro equals accuracy. Multilabel macro skips labels where F1 is undefined.
    """
    kind, p, y = _split_problem(probs, target)
    if kind == "binary":
        return _binary_f1(_decisions(kind, p, threshold), y)
    if kind == "multiclass":
        if average not in ("macro", "micro"):
            raise ValueError(f"average must be 'macro' or 'micro', got {average!r}")
        if y.numel() == 0:
            return NAN
        pred = p.argmax(dim=1)
        return _float(multiclass_f1_score(pred, y, num_classes=p.shape[1], average=average))
    return _averaged(_binary_f1, _decisions(kind, p, threshold), y, average)


# --------------------------------------------------------------------------- survival


def _surv(time: ArrayLike, event: ArrayLike, name: str = "") -> tuple[Tensor, Tensor]:
    """float32 times and bool events, torchsurv's working types (it casts to float32 anyway)."""
    t = _t(time, torch.float64).reshape(-1)
    e = _t(event, torch.float64).reshape(-1)
    if t.shape != e.shape:
        raise ValueError(f"{name}time and {name}event lengths differ ({t.numel()} vs {e.numel()})")
    if torch.isnan(t).any() or torch.isnan(e).any():
        raise ValueError(f"{name}time / {name}event contain NaN; drop unlabelled samples first")
    if (t < 0).any():
        raise ValueError(f"{name}time must be non-negative")
    return t.to(torch.float32), e.bool()


def _risk(risk: ArrayLike, n: int) -> Tensor:
    r = _t(risk, torch.float32)
    if r.ndim == 2 and r.shape[1] == 1:
        r = r[:, 0]
    if r.shape != (n,):
        raise ValueError(f"risk must have shape ({n},), got {tuple(r.shape)}")
    return r


def _has_comparable_pair(time: Tensor, event: Tensor) -> bool:
    """Harrell-comparable: an event strictly before another time, or tied with a censoring."""
    if not bool(event.any()):
        return False
    if bool((time[event] < time.max()).any()):
        return True
    censored = time[~event]
    return bool(torch.isin(time[event], censored).any())


def _ipcw(train_time: Tensor, train_event: Tensor, at: Tensor) -> Tensor:
    """1 / G(at) with G the Kaplan-Meier censoring survival of the training data (0 where G=0)."""
    from torchsurv.stats.ipcw import get_ipcw

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Censoring distribution zero")
        return get_ipcw(train_event, train_time, new_time=at)


def harrell_c_index(risk: ArrayLike, time: ArrayLike, event: ArrayLike) -> float:
    """Harrell's concordance index (higher risk = earlier event); NaN with no comparable pair.

    Tied risks count 1/2; an event tied in time with a censoring is comparable; two tied events
    are not (the conventions of sksurv's ``concordance_index_censored``).
    """
    from torchsurv.metrics.cindex import ConcordanceIndex

    t, e = _surv(time, event)
    r = _risk(risk, t.numel())
    if not _has_comparable_pair(t, e):
        return NAN
    return _float(ConcordanceIndex()(r, e, t))


def uno_c_index(
    risk: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    train_time: ArrayLike,
    train_event: ArrayLike,
    *,
    tmax: float | None = None,
) -> float:
    """Uno's IPCW concordance index: Harrell's pairs weighted by 1 / G(T_i)^2.

    G, the censoring distribution, is estimated on the training split (so the test-set estimate
    does not depend on the test set's own censoring). ``tmax`` truncates as sksurv's ``tau``.
    NaN with no comparable pair, or no event in the training split (torchsurv needs one).
    """
    from torchsurv.metrics.cindex import ConcordanceIndex

    t, e = _surv(time, event)
    tt, te = _surv(train_time, train_event, "train_")
    r = _risk(risk, t.numel())
    if not _has_comparable_pair(t, e) or not bool(te.any()):
        return NAN
    w = _ipcw(tt, te, t)
    tm = None if tmax is None else torch.tensor(float(tmax), dtype=torch.float32)
    return _float(ConcordanceIndex()(r, e, t, weight=w, tmax=tm))


def _auc_inputs(
    risk: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    eval_times: ArrayLike,
    train_time: ArrayLike | None,
    train_event: ArrayLike | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor] | None:
    t, e = _surv(time, event)
    r = _risk(risk, t.numel())
    nt = _t(eval_times, torch.float32).reshape(-1)
    if train_time is None or train_event is None:
        tt, te = t, e
    else:
        tt, te = _surv(train_time, train_event, "train_")
    if not bool(e.any()) or not bool(te.any()):
        return None
    if bool((nt < t.min()).any()) or bool((nt >= t.max()).any()):
        return None  # no controls beyond the last follow-up: AUC(t) undefined
    return r, e, t, nt, _ipcw(tt, te, t), _ipcw(tt, te, nt)


def time_dependent_auc_curve(
    risk: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    eval_times: ArrayLike,
    *,
    train_time: ArrayLike | None = None,
    train_event: ArrayLike | None = None,
) -> np.ndarray:
    """Cumulative/dynamic AUC(t) at each of ``eval_times`` (sorted, unique), IPCW-weighted.

    Cases are events by t (weighted 1 / G(T_i)), controls are still at risk after t. G comes from
    the training split when given, else from the evaluated samples themselves. All NaN when an
    eval time lies outside the follow-up ``[min(time), max(time))`` or there is no event.
    """
    from torchsurv.metrics.auc import Auc

    inputs = _auc_inputs(risk, time, event, eval_times, train_time, train_event)
    if inputs is None:
        return np.full(np.asarray(eval_times).reshape(-1).shape, NAN)
    r, e, t, nt, w, w_new = inputs
    values = Auc()(r, e, t, auc_type="cumulative", weight=w, new_time=nt, weight_new_time=w_new)
    return values.double().numpy()


def time_dependent_auc(
    risk: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    eval_times: ArrayLike,
    *,
    train_time: ArrayLike | None = None,
    train_event: ArrayLike | None = None,
) -> float:
    """Mean cumulative/dynamic AUC over ``eval_times``, weighted by the Kaplan-Meier event density.

    One number per fold, equal to sksurv's ``cumulative_dynamic_auc(...)[1]`` (the AUC itself for
    a single eval time). See :func:`time_dependent_auc_curve` for AUC(t) and the conventions.
    """
    from torchsurv.metrics.auc import Auc

    inputs = _auc_inputs(risk, time, event, eval_times, train_time, train_event)
    if inputs is None:
        return NAN
    r, e, t, nt, w, w_new = inputs
    auc = Auc()
    auc(r, e, t, auc_type="cumulative", weight=w, new_time=nt, weight_new_time=w_new)
    return _float(auc.integral())


def integrated_brier_score(
    survival_curve: ArrayLike,
    eval_times: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    train_time: ArrayLike,
    train_event: ArrayLike,
) -> float:
    """IPCW integrated Brier score (Graf 1999) of predicted survival S_i(t) at ``eval_times``.

    ``survival_curve[i, k]`` is S_i(eval_times[k]); eval times must be sorted and unique. The
    Brier score at each time is integrated by the trapezoidal rule and divided by the span, as
    sksurv does; a single eval time gives the Brier score itself. Lower is better.
    """
    from torchsurv.metrics.brier_score import BrierScore

    t, e = _surv(time, event)
    tt, te = _surv(train_time, train_event, "train_")
    nt = _t(eval_times, torch.float32).reshape(-1)
    s = _t(survival_curve, torch.float32)
    if s.ndim == 1 and nt.numel() == 1:
        s = s[:, None]
    if s.shape != (t.numel(), nt.numel()):
        raise ValueError(
            f"survival_curve must have shape ({t.numel()}, {nt.numel()}), got {tuple(s.shape)}"
        )
    if not bool(te.any()):
        return NAN
    bs = BrierScore()
    bs(
        s.clamp(0.0, 1.0),
        e,
        t,
        new_time=nt,
        weight=_ipcw(tt, te, t),
        weight_new_time=_ipcw(tt, te, nt),
    )
    return _float(bs.integral())


# --------------------------------------------------------------------------- regression


def _regression(pred: ArrayLike, target: ArrayLike) -> tuple[Tensor, Tensor]:
    p = _t(pred)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    y = _t(target)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(
            f"pred and target must both be (N,), got {tuple(p.shape)}, {tuple(y.shape)}"
        )
    known = ~torch.isnan(y)  # NaN target = missing label
    return p[known], y[known]


def mae(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean absolute error over samples with a known target."""
    p, y = _regression(pred, target)
    return _float(mean_absolute_error(p, y)) if y.numel() else NAN


def rmse(pred: ArrayLike, target: ArrayLike) -> float:
    """Root mean squared error over samples with a known target."""
    p, y = _regression(pred, target)
    return _float(mean_squared_error(p, y, squared=False)) if y.numel() else NAN


def r2(pred: ArrayLike, target: ArrayLike) -> float:
    """Coefficient of determination; NaN with < 2 samples or a constant target."""
    p, y = _regression(pred, target)
    if y.numel() < 2 or bool((y == y[0]).all()):
        return NAN
    return _float(r2_score(p, y))
