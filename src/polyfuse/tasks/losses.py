"""Per-sample task losses, and the discrete-time survival helpers they need.

Every loss takes float logits and returns one value per sample, shape ``(B,)``, so that
missing labels, task weights and loss balancing can be applied by the caller before reducing.
The one exception is :func:`cox_loss`: the Cox partial likelihood couples the samples of a batch
through their risk sets, so it is not a sum of per-sample terms and returns a scalar.

Discrete-time survival follows HEALNet / MCAT (``reference/methods.md`` §1(e)): quantile bins
cut on uncensored times, hazards ``h = sigmoid(logits)``, survival ``S = cumprod(1 - h)``,
risk ``-sum_t S(t)``, and the NLL with ``alpha = 0.4`` and inverse-frequency class weights.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "assign_bins",
    "binary_loss",
    "cox_loss",
    "discrete_risk",
    "discrete_survival_curve",
    "discrete_survival_nll",
    "inverse_frequency_weights",
    "multiclass_loss",
    "multilabel_loss",
    "regression_loss",
    "survival_bins",
]


def _flat(x: Tensor, name: str) -> Tensor:
    """Accept ``(B,)`` or ``(B, 1)``: single-output heads emit the latter."""
    if x.ndim == 2 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"{name} must have shape (B,) or (B, 1), got {tuple(x.shape)}")
    return x


def _same_length(a: Tensor, b: Tensor, names: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{names}: batch sizes differ ({a.shape[0]} vs {b.shape[0]})")


# --------------------------------------------------------------------------- classification


def binary_loss(logits: Tensor, target: Tensor, *, pos_weight: float | None = None) -> Tensor:
    """Binary cross-entropy with logits, per sample.

    ``pos_weight`` multiplies the positive term (as in ``torch.nn.BCEWithLogitsLoss``), the usual
    remedy for a rare positive class.
    """
    logits = _flat(logits, "logits")
    _same_length(logits, target, "binary_loss")
    pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=logits.dtype).to(logits)
    return F.binary_cross_entropy_with_logits(
        logits, target.to(logits.dtype), pos_weight=pw, reduction="none"
    )


def multiclass_loss(
    logits: Tensor, target: Tensor, *, class_weights: Tensor | None = None
) -> Tensor:
    """Softmax cross-entropy per sample; with ``class_weights`` each sample is scaled by w[y]."""
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (B, C), got {tuple(logits.shape)}")
    _same_length(logits, target, "multiclass_loss")
    w = None if class_weights is None else class_weights.to(logits)
    return F.cross_entropy(logits, target.long(), weight=w, reduction="none")


def multilabel_loss(
    logits: Tensor,
    target: Tensor,
    *,
    pos_weight: Tensor | None = None,
    reduction: Literal["mean", "none"] = "mean",
) -> Tensor:
    """Binary cross-entropy of every label: ``(B, K)`` with ``reduction="none"``, else the mean
    over the known labels of each sample ``(B,)``.

    NaN in ``target`` marks an unknown label (common when labels come from different cohorts);
    it contributes neither loss nor gradient (0 in the ``(B, K)`` output; a sample with no known
    label gets 0). ``pos_weight`` (K,) multiplies each label's positive term.
    """
    if logits.shape != target.shape or logits.ndim != 2:
        raise ValueError(
            f"logits and target must both be (B, K); got {tuple(logits.shape)} and "
            f"{tuple(target.shape)}"
        )
    known = ~torch.isnan(target)
    # Fill unknown labels before the BCE so no NaN ever enters the graph.
    filled = torch.where(known, target, torch.zeros_like(target)).to(logits.dtype)
    pw = None if pos_weight is None else pos_weight.to(logits)
    per_label = F.binary_cross_entropy_with_logits(logits, filled, pos_weight=pw, reduction="none")
    per_label = per_label * known.to(logits.dtype)
    if reduction == "none":
        return per_label
    return per_label.sum(dim=1) / known.sum(dim=1).clamp(min=1).to(logits.dtype)


# --------------------------------------------------------------------------- regression


def regression_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Squared error per sample."""
    pred = _flat(pred, "pred")
    target = _flat(target, "target")
    _same_length(pred, target, "regression_loss")
    return (pred - target.to(pred.dtype)) ** 2


# --------------------------------------------------------------------------- discrete survival


def discrete_survival_curve(logits: Tensor) -> Tensor:
    """S(t_k) = prod_{j<=k} (1 - h_j) with h = sigmoid(logits): survival at the end of bin k."""
    return torch.cumprod(1.0 - torch.sigmoid(logits), dim=1)


def discrete_risk(logits: Tensor) -> Tensor:
    """Risk score ``-sum_k S(t_k)`` (higher = earlier event), as HEALNet feeds to the c-index."""
    return -discrete_survival_curve(logits).sum(dim=1)


def discrete_survival_nll(
    logits: Tensor,
    bin: Tensor,
    event: Tensor,
    *,
    alpha: float = 0.4,
    class_weights: Tensor | None = None,
    eps: float = 1e-7,
) -> Tensor:
    """MCAT/HEALNet negative log-likelihood for discrete-time hazards, per sample.

    With ``c = 1 - event`` (censorship), ``h = sigmoid(logits)``, ``S = cumprod(1 - h)`` and
    ``S_pad = [1, S_0, ..., S_{K-1}]``::

        L_unc = -(1 - c) * (log S_pad[y] + log h[y])     # survived bins < y, event in bin y
        L_cen = -c * log S_pad[y + 1]                    # survived up to the end of bin y
        L     = (1 - alpha) * (L_cen + L_unc) * w[y] + alpha * L_unc

    ``w = class_weights`` (one per bin, e.g. :func:`inverse_frequency_weights`), or 1. The extra
    ``alpha * L_unc`` term up-weights uncensored samples, as in the reference. Probabilities are
    clamped at ``eps`` before the log, exactly like the reference, so the values match it.

    >>> logits = torch.zeros(1, 2)  # h = 0.5 in both bins
    >>> round(discrete_survival_nll(logits, torch.tensor([1]), torch.tensor([1.0])).item(), 4)
    1.3863
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (B, K), got {tuple(logits.shape)}")
    n_bins = logits.shape[1]
    y = _flat(bin, "bin").long()
    _same_length(logits, y, "discrete_survival_nll")
    _same_length(logits, _flat(event, "event"), "discrete_survival_nll")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_bins):
        raise ValueError(f"bin must lie in 0..{n_bins - 1}, got {y.min().item()}..{y.max().item()}")
    c = 1.0 - _flat(event, "event").to(logits.dtype)

    hazards = torch.sigmoid(logits)
    surv = torch.cumprod(1.0 - hazards, dim=1)
    s_pad = torch.cat([torch.ones_like(surv[:, :1]), surv], dim=1)
    col = y[:, None]
    s_before = torch.gather(s_pad, 1, col)[:, 0].clamp(min=eps)
    h_y = torch.gather(hazards, 1, col)[:, 0].clamp(min=eps)
    s_after = torch.gather(s_pad, 1, col + 1)[:, 0].clamp(min=eps)

    uncensored = -(1.0 - c) * (torch.log(s_before) + torch.log(h_y))
    censored = -c * torch.log(s_after)
    w = torch.ones_like(c) if class_weights is None else class_weights.to(logits)[y]
    return (1.0 - alpha) * (censored + uncensored) * w + alpha * uncensored


def survival_bins(
    time: np.ndarray, event: np.ndarray, n_bins: int = 4, eps: float = 1e-6
) -> np.ndarray:
    """Cut points (n_bins + 1,) for discretising survival time, fitted on a training split.

    Quantiles of the uncensored times only (censored times understate the event time), then the
    outer edges widened to the global ``min - eps`` / ``max + eps`` so every sample falls in a bin.
    Quantiles interpolate linearly, as ``pandas.qcut`` does.
    """
    time = np.asarray(time, dtype=float).reshape(-1)
    event = np.asarray(event).reshape(-1).astype(bool)
    if time.shape != event.shape:
        raise ValueError(f"time and event lengths differ ({time.size} vs {event.size})")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if not event.any():
        raise ValueError("survival_bins needs at least one uncensored sample (event == 1)")
    cuts = np.quantile(time[event], np.linspace(0.0, 1.0, n_bins + 1))
    cuts[0] = time.min() - eps
    cuts[-1] = time.max() + eps
    if np.any(np.diff(cuts) <= 0):
        raise ValueError(
            f"{n_bins} quantile bins are not distinct for these uncensored times "
            f"(cuts {cuts.tolist()}); use fewer bins"
        )
    return cuts


def assign_bins(time: Tensor, cuts: Tensor) -> Tensor:
    """Bin index of each time for half-open bins ``[cuts[k], cuts[k+1])``, clamped to 0..K-1.

    Same as ``pandas.cut(time, cuts, right=False, labels=False)`` inside the range; times outside
    it (e.g. test samples beyond the training follow-up) go to the first or last bin.
    """
    cuts = torch.as_tensor(cuts).to(device=time.device, dtype=torch.float64)
    idx = torch.searchsorted(cuts, time.to(torch.float64).contiguous(), right=True) - 1
    return idx.clamp(0, cuts.numel() - 2).long()


def inverse_frequency_weights(bins: np.ndarray, n_bins: int) -> np.ndarray:
    """Class weights ``1 / count`` per bin, normalised to sum 1 (HEALNet ``class_weights: inverse``).

    A bin absent from the training split gets weight 0 instead of an infinite one.
    """
    counts = np.bincount(np.asarray(bins, dtype=np.int64).reshape(-1), minlength=n_bins)
    if counts.size > n_bins:
        raise ValueError(f"bins contain values >= n_bins ({n_bins})")
    w = np.zeros(n_bins, dtype=float)
    seen = counts > 0
    w[seen] = 1.0 / counts[seen]
    total = w.sum()
    return w / total if total > 0 else w


# --------------------------------------------------------------------------- Cox


def cox_loss(
    log_risk: Tensor, time: Tensor, event: Tensor, *, ties: Literal["efron", "breslow"] = "efron"
) -> Tensor:
    """Negative Cox partial log-likelihood of the batch (a scalar, not per sample).

    Wraps ``torchsurv.loss.cox.neg_partial_log_likelihood`` (mean over event terms). Cox is not
    decomposable per sample: each term's risk set spans the batch, so batches should be large
    enough to hold several events. Ties between event times use ``ties`` ("efron" or "breslow").

    Two edge cases are handled here rather than in torchsurv:

    * no event in the batch (or fewer than 2 samples): returns 0 connected to ``log_risk``, so
      backward gives zero gradients instead of unused parameters;
    * a censored time equal to an event time: by convention the censored sample is still at risk
      at that time, but torchsurv's no-ties path decides by sort order. Censored times are moved
      up by one float32 ulp (torchsurv computes in float32), which fixes the order and changes
      nothing else.
    """
    from torchsurv.loss.cox import neg_partial_log_likelihood

    log_risk = _flat(log_risk, "log_risk")
    time = _flat(time, "time")
    event = _flat(event, "event").bool()
    _same_length(log_risk, time, "cox_loss")
    _same_length(log_risk, event, "cox_loss")
    if log_risk.shape[0] < 2 or not bool(event.any()):
        return log_risk.sum() * 0.0
    t = time.to(torch.float32)
    t = torch.where(event, t, torch.nextafter(t, torch.full_like(t, float("inf"))))
    with warnings.catch_warnings():
        # torchsurv warns on every batch with tied times; ties are expected (e.g. whole months).
        warnings.filterwarnings("ignore", message="Ties in `time` detected")
        return neg_partial_log_likelihood(log_risk, event, t, ties_method=ties, reduction="mean")
