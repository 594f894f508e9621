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
from polyfuse.errors import DataError
from polyfuse.tasks import losses
from polyfuse.tasks import metrics as M


class TaskObjective(nn.Module):
    """Loss, scores and metrics of one task.

    Args:
        spec: the task.
        alpha: weight of the uncensored term in the discrete-time survival NLL (HEALNet/MCAT 0.4).
        class_weights: "inverse" weighs classes (or survival bins) by inverse training frequency,
            normalised to sum 1, as the HEALNet reference does for its survival bins.
    """

    def __init__(
        self,
        spec: TaskSpec,
        *,
        alpha: float = 0.4,
        class_weights: Literal["none", "inverse"] = "none",
    ) -> None:
        super().__init__()
        self.spec = spec
        self.alpha = alpha
        self.class_weights = class_weights
        n = spec.out_dim
        self.register_buffer("weights", torch.ones(n))
        self.register_buffer("cuts", torch.zeros(spec.n_bins + 1 if self._discrete else 0))

    @property
    def _discrete(self) -> bool:
        return self.spec.type == "survival" and self.spec.survival_head == "discrete"

    def fit(self, target: np.ndarray) -> TaskObjective:
        """Fit bin cut points and class weights on training targets (NaN = unknown)."""
        known = ~np.isnan(target).reshape(len(target), -1).any(1)
        t = target[known]
        if self._discrete:
            try:
                cuts = losses.survival_bins(t[:, 0], t[:, 1], self.spec.n_bins)
            except ValueError as exc:
                raise DataError(
                    f"task '{self.spec.name}': cannot cut survival bins: {exc}"
                ) from exc
            self.cuts.copy_(torch.as_tensor(cuts, dtype=torch.float32))
            if self.class_weights == "inverse":
                bins = losses.assign_bins(torch.as_tensor(t[:, 0]), self.cuts).numpy()
                w = losses.inverse_frequency_weights(bins, self.spec.n_bins)
                self.weights.copy_(torch.as_tensor(w, dtype=torch.float32))
        elif self.spec.type == "multiclass" and self.class_weights == "inverse":
            w = losses.inverse_frequency_weights(t.astype(np.int64), self.spec.out_dim)
            self.weights.copy_(torch.as_tensor(w * self.spec.out_dim, dtype=torch.float32))
        return self

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Mean loss over the samples whose target is known (0 when there are none)."""
        known = ~torch.isnan(target.reshape(len(target), -1)).all(1)
        if self.spec.type == "multilabel":
            return _mean(losses.multilabel_loss(logits, target), known)
        if not known.any():
            return logits.sum() * 0.0
        logits, target = logits[known], target[known]
        kind = self.spec.type
        if kind == "survival":
            time, event = target[:, 0], target[:, 1]
            if not self._discrete:
                return losses.cox_loss(logits, time, event)
            bins = losses.assign_bins(time, self.cuts)
            w = self.weights if self.class_weights == "inverse" else None
            per = losses.discrete_survival_nll(
                logits, bins, event, alpha=self.alpha, class_weights=w
            )
        elif kind == "binary":
            per = losses.binary_loss(logits, target)
        elif kind == "multiclass":
            w = self.weights if self.class_weights == "inverse" else None
            per = losses.multiclass_loss(logits, target.long(), class_weights=w)
        else:
            per = losses.regression_loss(logits, target)
        return per.mean()

    @torch.no_grad()
    def scores(self, logits: Tensor) -> dict[str, Tensor]:
        """What a user reads: probabilities, a risk score (higher = earlier event), predictions."""
        kind = self.spec.type
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


def _mean(per_sample: Tensor, known: Tensor) -> Tensor:
    return (per_sample * known).sum() / known.sum().clamp(min=1)
