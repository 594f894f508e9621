"""Recalibrating a binary task's probabilities on held-out samples: Platt scaling or isotonic.

A network trained on a hundred patients is often over-confident: its AUROC can be good while
a predicted 90 % means 70 %. Recalibration maps the probabilities through a monotone function
fitted on samples the weights were not fitted on (the validation part), so the ranking, and
the AUROC, are unchanged and the probabilities move towards what is observed:

* Platt scaling (Platt 1999): a logistic regression of the label on logit(p), two numbers;
  the safe choice with few validation samples.
* isotonic regression (Zadrozny & Elkan 2002): a non-decreasing step function (scikit-learn's
  `IsotonicRegression`, its knots saved as lists), more flexible, hungrier for samples.

A recalibration is plain JSON, saved with the model and applied before the conformal sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("none", "platt", "isotonic")
EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Recalibration:
    """A fitted monotone map of probabilities: `platt` (slope, intercept on the logit) or
    `isotonic` (knots x → y, linear between them, clipped outside)."""

    method: str
    params: dict[str, Any]

    def __call__(self, prob: np.ndarray) -> np.ndarray:
        p = np.asarray(prob, dtype=float)
        if self.method == "platt":
            z = self.params["slope"] * _logit(p) + self.params["intercept"]
            return 1.0 / (1.0 + np.exp(-z))
        return np.interp(p, self.params["x"], self.params["y"])

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **self.params}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recalibration:
        params = {k: v for k, v in data.items() if k != "method"}
        return cls(data["method"], params)


def fit_recalibration(method: str, prob: np.ndarray, label: np.ndarray) -> Recalibration:
    """Fit `method` ("platt" or "isotonic") on held-out probabilities and 0/1 labels (unknown
    labels left out). Raises ValueError with a single class among the labels."""
    if method not in METHODS[1:]:
        raise ValueError(f"recalibration method must be one of {METHODS[1:]}, got {method!r}")
    p, y = np.asarray(prob, dtype=float), np.asarray(label, dtype=float)
    known = ~np.isnan(y)
    p, y = p[known], y[known]
    if len(np.unique(y)) < 2:
        raise ValueError(f"recalibration needs both classes among {len(y)} held-out labels")
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(_logit(p)[:, None], y)
        return Recalibration(
            "platt", {"slope": float(model.coef_[0, 0]), "intercept": float(model.intercept_[0])}
        )
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    return Recalibration(
        "isotonic", {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    )
