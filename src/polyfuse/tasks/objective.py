"""One task's objective: its loss, how logits become scores, and its metrics.

Per-fold state (survival bin cut points, class weights) is fitted on training targets only and
kept as buffers, so it is saved with the weights and restored with them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from polyfuse.data.specs import TaskSpec
from polyfuse.errors import ConfigError, DataError
from polyfuse.tasks import losses
from polyfuse.tasks import metrics as M
from polyfuse.tasks.balancing import focal_weights


class TaskObjective(nn.Module):
    """Loss, scores and metrics of one task.

    A task contributes one loss *term* to loss balancing, except a multilabel task, which
    contributes one term per label (``"<task>/<label>"``): each label is its own task for the
    balancer (``reference/methods.md`` §4(c)). Terms whose targets are all unknown in a batch
    are left out, so they add neither loss nor gradient.

    Args:
        spec: the task.
        alpha: weight of the uncensored term in the discrete-time survival NLL (HEALNet/MCAT 0.4).
        class_weights: "inverse" weighs classes (or survival bins) by inverse training frequency,
            normalised to sum 1, as the HEALNet reference does for its survival bins; for binary
            and multilabel tasks it sets a per-label positive weight ``n_negative / n_positive``
            (inverse prevalence, as ``BCEWithLogitsLoss(pos_weight=...)``).
        focal_gamma: sample-level focal modulation ``(1 - p_t)^gamma`` (Lin et al. 2017) of the
            per-sample loss of classification tasks (binary, multiclass, multilabel); 0 = off.
            Survival and regression losses are not modulated (they have no ``p_t``).
        focal_detach: treat the focal weights as constants (default), or back-propagate
            through them as in the original focal loss.
    """

    def __init__(
        self,
        spec: TaskSpec,
        *,
        alpha: float = 0.4,
        class_weights: Literal["none", "inverse"] = "none",
        focal_gamma: float = 0.0,
        focal_detach: bool = True,
    ) -> None:
        super().__init__()
        if focal_gamma < 0:
            raise ConfigError(f"task '{spec.name}': focal_gamma must be >= 0, got {focal_gamma}")
        self.spec = spec
        self.alpha = alpha
        self.class_weights = class_weights
        self.focal_gamma = float(focal_gamma)
        self.focal_detach = bool(focal_detach)
        n = spec.out_dim
        self.register_buffer("weights", torch.ones(n))
        self.register_buffer("cuts", torch.zeros(spec.n_bins + 1 if self._discrete else 0))

    @property
    def _discrete(self) -> bool:
        return self.spec.type == "survival" and self.spec.survival_head == "discrete"

    @property
    def terms(self) -> list[str]:
        """Names of the loss terms this task hands to the balancer."""
        if self.spec.type == "multilabel":
            return [f"{self.spec.name}/{label}" for label in self.spec.classes]
        return [self.spec.name]

    @property
    def curve_times(self) -> list[float] | None:
        """The times of a discrete survival curve's values: S_k is survival at the end of bin
        k, `cuts[k + 1]` (None for other heads)."""
        return self.cuts[1:].tolist() if self._discrete else None

    def options(self) -> dict[str, object]:
        """The constructor options, as saved in a run directory."""
        return {
            "alpha": self.alpha,
            "class_weights": self.class_weights,
            "focal_gamma": self.focal_gamma,
            "focal_detach": self.focal_detach,
        }

    def fit(self, target: np.ndarray) -> TaskObjective:
        """Fit bin cut points and class weights on training targets (NaN = unknown)."""
        known = ~np.isnan(target).reshape(len(target), -1).any(1)
        t = target[known]
        kind, inverse = self.spec.type, self.class_weights == "inverse"
        if self._discrete:
            try:
                cuts = losses.survival_bins(t[:, 0], t[:, 1], self.spec.n_bins)
            except ValueError as exc:
                raise DataError(
                    f"task '{self.spec.name}': cannot cut survival bins: {exc}"
                ) from exc
            self.cuts.copy_(torch.as_tensor(cuts, dtype=torch.float32))
            if inverse:
                bins = losses.assign_bins(torch.as_tensor(t[:, 0]), self.cuts).numpy()
                w = losses.inverse_frequency_weights(bins, self.spec.n_bins)
                self.weights.copy_(torch.as_tensor(w, dtype=torch.float32))
        elif kind == "multiclass" and inverse:
            w = losses.inverse_frequency_weights(t.astype(np.int64), self.spec.out_dim)
            self.weights.copy_(torch.as_tensor(w * self.spec.out_dim, dtype=torch.float32))
        elif kind in ("binary", "multilabel") and inverse:
            y = target.reshape(len(target), -1)  # multilabel: each label has its own unknowns
            pos, neg = np.nansum(y == 1, 0), np.nansum(y == 0, 0)
            w = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
            self.weights.copy_(torch.as_tensor(w, dtype=torch.float32))
        return self

    def loss_terms(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Mean loss of each term over the samples whose target is known; terms with no known
        target in the batch are left out. Computed in float32 whatever the logits' precision
        (bf16 autocast gives bf16 logits; indexing them, CUDA's backward mixes the dtypes)."""
        logits = logits.float()
        if self.spec.type == "multilabel":
            return self._multilabel_terms(logits, target)
        known = ~torch.isnan(target.reshape(len(target), -1)).all(1)
        if not known.any():
            return {}
        logits, target = logits[known], target[known]
        kind = self.spec.type
        if kind == "survival":
            time, event = target[:, 0], target[:, 1]
            if not self._discrete:
                return {self.spec.name: losses.cox_loss(logits, time, event)}
            bins = losses.assign_bins(time, self.cuts)
            w = self.weights if self.class_weights == "inverse" else None
            per = losses.discrete_survival_nll(
                logits, bins, event, alpha=self.alpha, class_weights=w
            )
        elif kind == "binary":
            pw = self.weights[0] if self.class_weights == "inverse" else None
            per = losses.binary_loss(logits, target, pos_weight=pw)
            per = per * self._focal(torch.sigmoid(logits.reshape(-1)), target.reshape(-1))
        elif kind == "multiclass":
            w = self.weights if self.class_weights == "inverse" else None
            y = target.reshape(-1).long()
            per = losses.multiclass_loss(logits, y, class_weights=w)
            p_true = torch.softmax(logits, -1).gather(1, y[:, None])[:, 0]
            per = per * self._focal(p_true, torch.ones_like(p_true))
        else:
            per = losses.regression_loss(logits, target)
        return {self.spec.name: per.mean()}

    def _multilabel_terms(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        known = ~torch.isnan(target)
        filled = torch.where(known, target, torch.zeros_like(target))
        pw = self.weights if self.class_weights == "inverse" else None
        per = losses.multilabel_loss(logits, target, pos_weight=pw, reduction="none")
        per = per * self._focal(torch.sigmoid(logits), filled) * known
        count = known.sum(0)
        return {
            term: per[:, k].sum() / count[k] for k, term in enumerate(self.terms) if count[k] > 0
        }

    def _focal(self, prob: Tensor, target: Tensor) -> Tensor | float:
        if not self.focal_gamma:
            return 1.0
        return focal_weights(prob, target, gamma=self.focal_gamma, detach=self.focal_detach)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """The task's static loss: the mean of its terms (0, with a graph, when none is known)."""
        terms = self.loss_terms(logits, target)
        if not terms:
            return logits.sum() * 0.0
        return torch.stack(list(terms.values())).sum() / len(self.terms)

    @torch.no_grad()
    def kpis(self, logits: Tensor, target: np.ndarray) -> dict[str, float]:
        """A score in [0, 1] per term, higher is better (DTP's KPI): the task's primary metric
        (c-index, AUROC, R² clipped to [0, 1]); per label for multilabel; 0.5 if undefined."""
        scores = {k: v.cpu().numpy() for k, v in self.scores(logits).items()}
        if self.spec.type == "multilabel":
            prob = scores["prob"]
            raw = []
            for k in range(prob.shape[1]):
                known = ~np.isnan(target[:, k])
                y = target[known, k].astype(np.int64)
                raw.append(M.auroc(prob[known, k], y) if known.any() else float("nan"))
        else:
            metrics = self.metrics(scores, target, target)
            raw = [metrics.get("r2", next(iter(metrics.values()), float("nan")))]
        return {
            term: float(np.clip(v, 0.0, 1.0)) if np.isfinite(v) else 0.5
            for term, v in zip(self.terms, raw, strict=True)
        }

    @torch.no_grad()
    def scores(self, logits: Tensor) -> dict[str, Tensor]:
        """What a user reads: probabilities, a risk score (higher = earlier event), predictions;
        float32 also under bf16 autocast, whose 8-bit mantissa would tie close risks."""
        logits, kind = logits.float(), self.spec.type
        if kind == "survival":
            if self._discrete:
                return {
                    "risk": losses.discrete_risk(logits),
                    "survival": losses.discrete_survival_curve(logits),
                }
            return {"risk": logits.reshape(-1)}
        if kind == "binary":
            return {"prob": torch.sigmoid(logits.reshape(-1))}
        if kind == "multiclass":
            return {"prob": torch.softmax(logits, -1)}
        if kind == "multilabel":
            return {"prob": torch.sigmoid(logits)}
        return {"pred": logits.reshape(-1)}

    def metrics(
        self, scores: dict[str, np.ndarray], target: np.ndarray, train_target: np.ndarray
    ) -> dict[str, float]:
        """Metrics of one task on samples with a known target (train targets for IPCW)."""
        known = ~np.isnan(target.reshape(len(target), -1)).all(1)
        scores = {k: v[known] for k, v in scores.items()}
        y = target[known]
        kind = self.spec.type
        if kind == "survival":
            return self._survival_metrics(scores, y, train_target)
        if kind == "regression":
            p = scores["pred"]
            return {"mae": M.mae(p, y), "rmse": M.rmse(p, y), "r2": M.r2(p, y)}
        p = scores["prob"]
        if kind == "multilabel":
            return {
                "auroc": M.auroc(p, y),
                "auprc": M.auprc(p, y),
                "f1_macro": M.f1(p, y, average="macro"),
                "f1_micro": M.f1(p, y, average="micro"),
            }
        y = y.astype(np.int64)
        return {
            "auroc": M.auroc(p, y),
            "auprc": M.auprc(p, y),
            "balanced_accuracy": M.balanced_accuracy(p, y),
            "f1": M.f1(p, y),
        }

    def _survival_metrics(
        self, scores: dict[str, np.ndarray], y: np.ndarray, train: np.ndarray
    ) -> dict[str, float]:
        time, event, risk = y[:, 0], y[:, 1], scores["risk"]
        train = train[~np.isnan(train).any(1)]
        out = {
            "c_index": M.harrell_c_index(risk, time, event),
            "uno_c_index": M.uno_c_index(risk, time, event, train[:, 0], train[:, 1]),
        }
        times = _evaluation_times(time, event, train[:, 0])
        out["td_auc"] = (
            M.time_dependent_auc(
                risk, time, event, times, train_time=train[:, 0], train_event=train[:, 1]
            )
            if len(times)
            else float("nan")
        )
        if self._discrete and len(times):
            # S(t) is a step function over the bins: bin k covers [cuts[k], cuts[k+1]), and the
            # model's S_k is survival at the END of bin k, so inside a bin we read the lower,
            # end-of-bin value (conservative; the start-of-bin value is the other choice).
            cuts = self.cuts.cpu().numpy()
            k = np.clip(np.searchsorted(cuts, times, side="right") - 1, 0, self.spec.n_bins - 1)
            curve = scores["survival"][:, k]
            out["ibs"] = M.integrated_brier_score(
                curve, times, time, event, train[:, 0], train[:, 1]
            )
        return out


def _evaluation_times(time: np.ndarray, event: np.ndarray, train_time: np.ndarray) -> np.ndarray:
    """Quartiles of the observed event times, inside the follow-up of both splits."""
    events = time[event == 1]
    if len(events) < 2:
        return np.array([])
    t = np.unique(np.quantile(events, [0.25, 0.5, 0.75]))
    return t[(t > time.min()) & (t < min(time.max(), train_time.max()))]
