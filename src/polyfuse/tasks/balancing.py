"""Task-level loss balancing and sample-level focal weights (``reference/methods.md`` §4(c)).

A :class:`LossBalancer` turns a dict of per-task scalar losses into one scalar. The training
loop calls :meth:`LossBalancer.forward` every step and :meth:`LossBalancer.epoch_end` once per
epoch (with epoch-mean task losses and, for DTP, a validation KPI per task in ``[0, 1]``).

* ``static`` -- fixed weights (default 1): ``L = sum_t w_t L_t``.
* ``uncertainty`` (alias ``uw``; Kendall et al. 2018) -- learned log-variances ``s_t``.
* ``dwa`` (Liu et al. 2019) -- ``w_t = K softmax_t(r_t / T)``, ``r_t = L_t(e-1) / L_t(e-2)``.
* ``dtp`` (Guo et al. 2018) -- ``w_t = -(1 - k_t)^gamma log k_t`` on a smoothed KPI ``k_t``.
* ``gradnorm`` (Chen et al. 2018) -- ``w = K softmax(v)``, ``v`` learned so that the gradient
  norms of the weighted task losses on the shared parameters move together.

Balancers that need a validation KPI set ``needs_kpis``; those that need the shared parameters
(to take per-task gradients) set ``needs_shared`` and receive them as ``shared=``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from polyfuse.errors import ConfigError, did_you_mean

__all__ = [
    "BALANCERS",
    "DTPBalancer",
    "DWABalancer",
    "GradNormBalancer",
    "LossBalancer",
    "StaticBalancer",
    "UncertaintyBalancer",
    "build_balancer",
    "focal_weights",
]


class LossBalancer(nn.Module):
    """Base class: combine per-task scalar losses into one scalar loss."""

    needs_kpis = False
    needs_shared = False

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        tasks = list(tasks)
        if not tasks:
            raise ConfigError("tasks: need at least one task to balance")
        if len(set(tasks)) != len(tasks):
            raise ConfigError(f"tasks: duplicate task names in {tasks}")
        self.tasks: list[str] = tasks
        self.register_buffer("_weights", torch.ones(len(tasks)))

    # ------------------------------------------------------------------ helpers
    def _check_keys(self, keys: Sequence[str] | Mapping[str, object], what: str) -> None:
        for key in keys:
            if key not in self.tasks:
                raise ConfigError(
                    f"{what}: unknown task '{key}'{did_you_mean(key, self.tasks)}; "
                    f"tasks are {self.tasks}"
                )

    def _require_all(self, values: Mapping[str, object], what: str) -> None:
        self._check_keys(values, what)
        missing = [t for t in self.tasks if t not in values]
        if missing:
            raise ConfigError(f"{what}: no value for task(s) {missing}")

    # ------------------------------------------------------------------ API
    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        """``sum_t w_t L_t`` over the tasks present in ``losses`` (a batch may lack some)."""
        self._check_keys(losses, "losses")
        if not losses:
            raise ConfigError("losses: empty dict, nothing to balance")
        total: Tensor | None = None
        for i, task in enumerate(self.tasks):
            if task in losses:
                term = self._weights[i].to(losses[task]) * losses[task]
                total = term if total is None else total + term
        assert total is not None
        return total

    def epoch_end(self, kpis: Mapping[str, float] | None, losses: Mapping[str, float]) -> None:
        """Update the state once per epoch; the default (static weights) does nothing."""

    def weights(self) -> dict[str, float]:
        """Current task weights, for logging and plots."""
        return {t: float(w) for t, w in zip(self.tasks, self._weights.tolist(), strict=True)}


class StaticBalancer(LossBalancer):
    """Fixed task weights (default 1 for every task)."""

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float] | None = None) -> None:
        super().__init__(tasks)
        weights = dict(weights or {})
        self._check_keys(weights, "weights")
        for i, task in enumerate(self.tasks):
            w = float(weights.get(task, 1.0))
            if not math.isfinite(w) or w < 0:
                raise ConfigError(f"weights['{task}']: must be a finite number >= 0, got {w}")
            self._weights[i] = w


# (a, b) of the uncertainty-weighted term a exp(-s) L + b s, per likelihood (see below)
UNCERTAINTY_FACTORS = {"classification": (1.0, 0.5), "regression": (0.5, 0.5), "unit": (1.0, 1.0)}


class UncertaintyBalancer(LossBalancer):
    """Homoscedastic uncertainty weighting (Kendall et al., CVPR 2018).

    ``L = sum_t a exp(-s_t) L_t + b s_t`` with learnable ``s_t = log sigma_t^2``; ``factor``
    picks ``(a, b)`` from the paper's likelihoods, where ``log sigma = s / 2``:

    * ``"classification"`` (default): ``(1, 1/2)``, Kendall et al.'s eq. 10 for a softmax or
      Bernoulli likelihood, ``L_t / sigma^2 + log sigma``; optimum ``s_t* = log 2 L_t``;
    * ``"regression"``: ``(1/2, 1/2)``, the Gaussian likelihood, ``L_t / (2 sigma^2) + log
      sigma`` (LibMTL's form); optimum ``s_t* = log L_t``;
    * ``"unit"``: ``(1, 1)``, ``exp(-s_t) L_t + s_t``, polyfuse's form before 2026-12 (which
      doubled the paper's regulariser), kept to reproduce earlier runs.

    ``init`` is the starting ``s_t`` (LibMTL: -0.5). The ``s_t`` must be handed to the optimiser
    with the model parameters.
    """

    def __init__(
        self, tasks: Sequence[str], factor: str = "classification", init: float = 0.0
    ) -> None:
        super().__init__(tasks)
        if factor not in UNCERTAINTY_FACTORS:
            raise ConfigError(
                f"factor: unknown '{factor}'{did_you_mean(factor, UNCERTAINTY_FACTORS)}; "
                f"choose from {sorted(UNCERTAINTY_FACTORS)}"
            )
        self.factor = factor
        self.scale, self.regulariser = UNCERTAINTY_FACTORS[factor]
        self.log_vars = nn.Parameter(torch.full((len(self.tasks),), float(init)))

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        """``sum_t a exp(-s_t) L_t + b s_t`` over the tasks present in ``losses``."""
        self._check_keys(losses, "losses")
        if not losses:
            raise ConfigError("losses: empty dict, nothing to balance")
        terms = []
        for i, task in enumerate(self.tasks):
            if task in losses:
                s = self.log_vars[i]
                terms.append(self.scale * torch.exp(-s) * losses[task] + self.regulariser * s)
        return torch.stack(terms).sum()

    def weights(self) -> dict[str, float]:
        """The effective weights ``a exp(-s_t)``."""
        w = (self.scale * torch.exp(-self.log_vars.detach())).tolist()
        return dict(zip(self.tasks, w, strict=True))


class DWABalancer(LossBalancer):
    """Dynamic Weight Averaging (Liu et al., CVPR 2019).

    After each epoch ``e`` the weights for the next become ``w_t = K softmax_t(r_t / T)`` with
    ``r_t = L_t(e) / L_t(e-1)`` (epoch-mean losses); they stay 1 until two epochs are seen.
    Weights always sum to ``K``; the task whose loss fell least gets the largest weight.
    """

    def __init__(self, tasks: Sequence[str], temperature: float = 2.0) -> None:
        super().__init__(tasks)
        if not temperature > 0:
            raise ConfigError(f"temperature: must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.history: list[list[float]] = []

    def get_extra_state(self) -> dict[str, object]:
        return {"history": self.history}  # part of state_dict: a resumed fit keeps its rates

    def set_extra_state(self, state: dict[str, object]) -> None:
        self.history = [list(h) for h in state["history"]]  # type: ignore[union-attr]

    def epoch_end(self, kpis: Mapping[str, float] | None, losses: Mapping[str, float]) -> None:
        """Record this epoch's mean task losses and recompute the weights."""
        self._require_all(losses, "losses")
        self.history = [*self.history[-1:], [float(losses[t]) for t in self.tasks]]
        if len(self.history) < 2:
            return
        prev, last = (torch.tensor(h, dtype=torch.float64) for h in self.history)
        ratio = last / prev.clamp_min(1e-12)
        w = len(self.tasks) * torch.softmax(ratio / self.temperature, dim=0)
        self._weights.copy_(w.to(self._weights))


class DTPBalancer(LossBalancer):
    """Dynamic Task Prioritization (Guo et al., ECCV 2018).

    ``w_t = -(1 - k_t)^gamma_t log k_t`` where ``k_t = alpha kpi_t + (1 - alpha) k_t^prev`` is a
    moving average of a KPI in ``[0, 1]`` (higher is better, e.g. validation AUROC or c-index),
    clamped to ``[eps, 1 - eps]``. Harder tasks (low KPI) get larger weights. Weights are 1 until
    the first KPI arrives; the first KPI initialises the average.
    """

    needs_kpis = True

    def __init__(
        self,
        tasks: Sequence[str],
        gamma: float | Mapping[str, float] = 2.0,
        alpha: float = 0.9,
        eps: float = 1e-4,
    ) -> None:
        super().__init__(tasks)
        if isinstance(gamma, Mapping):
            self._check_keys(gamma, "gamma")
            gammas = [float(gamma.get(t, 2.0)) for t in self.tasks]
        else:
            gammas = [float(gamma)] * len(self.tasks)
        if any(g < 0 for g in gammas):
            raise ConfigError(f"gamma: must be >= 0, got {gammas}")
        if not 0 < alpha <= 1:
            raise ConfigError(f"alpha: must be in (0, 1], got {alpha}")
        if not 0 < eps < 0.5:
            raise ConfigError(f"eps: must be in (0, 0.5), got {eps}")
        self.alpha, self.eps = float(alpha), float(eps)
        self.register_buffer("gamma", torch.tensor(gammas, dtype=torch.float64))
        self.kpi: list[float] | None = None

    def get_extra_state(self) -> dict[str, object]:
        return {"kpi": self.kpi}  # part of state_dict: a resumed fit keeps its average

    def set_extra_state(self, state: dict[str, object]) -> None:
        self.kpi = state["kpi"]  # type: ignore[assignment]

    def epoch_end(self, kpis: Mapping[str, float] | None, losses: Mapping[str, float]) -> None:
        """Smooth the new KPIs and recompute the weights (no-op when ``kpis`` is None)."""
        if kpis is None:
            return
        self._require_all(kpis, "kpis")
        new = [float(kpis[t]) for t in self.tasks]
        bad = [t for t, k in zip(self.tasks, new, strict=True) if not (0.0 <= k <= 1.0)]
        if bad:
            raise ConfigError(f"kpis: must lie in [0, 1] (higher is better); bad for {bad}")
        if self.kpi is None:
            self.kpi = new
        else:
            a = self.alpha
            self.kpi = [a * k + (1 - a) * p for k, p in zip(new, self.kpi, strict=True)]
        k = torch.tensor(self.kpi, dtype=torch.float64, device=self.gamma.device)
        k = k.clamp(self.eps, 1 - self.eps)
        w = -((1 - k) ** self.gamma) * torch.log(k)
        self._weights.copy_(w.to(self._weights))


class GradNormBalancer(LossBalancer):
    """GradNorm (Chen et al., ICML 2018), with LibMTL's parametrisation ``w = K softmax(v)``.

    Each training step adds the balancing objective ``sum_t |G_t - mean(G) r_t^alpha|`` where
    ``G_t = w_t ||grad_W L_t||`` on the shared parameters ``W`` and ``r_t`` is the task's loss
    relative to its first-step value, normalised by the mean over tasks. Only ``v`` receives
    its gradient (the gradient norms and the target are constants); the model is trained on
    ``sum_t w_t L_t`` with ``w`` held constant. Tasks that train more slowly (larger ``r_t``)
    get larger weights. Choices: ``W`` is every parameter of the model outside its task heads
    (the paper's "last shared layer" is not defined for an arbitrary model); one extra backward
    pass per task and step; with fewer than two tasks in a batch it reduces to ``sum_t w_t L_t``.
    """

    needs_shared = True

    def __init__(
        self, tasks: Sequence[str], alpha: float = 1.5, shared: Sequence[nn.Parameter] = ()
    ) -> None:
        super().__init__(tasks)
        if alpha < 0:
            raise ConfigError(f"alpha: must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.shared = [p for p in shared if p.requires_grad]  # a plain list: not our parameters
        self.v = nn.Parameter(torch.zeros(len(self.tasks)))
        self.register_buffer("initial", torch.full((len(self.tasks),), float("nan")))

    def _current(self) -> Tensor:
        return len(self.tasks) * torch.softmax(self.v, 0)

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        """``sum_t w_t L_t`` plus, when training, the balancing objective on ``v``."""
        self._check_keys(losses, "losses")
        if not losses:
            raise ConfigError("losses: empty dict, nothing to balance")
        idx = [i for i, t in enumerate(self.tasks) if t in losses]
        values = torch.stack([losses[self.tasks[i]] for i in idx])
        w = self._current()
        self._weights.copy_(w.detach())
        total = (w[idx].detach().to(values) * values).sum()
        if not (self.training and torch.is_grad_enabled() and len(idx) > 1 and self.shared):
            return total
        with torch.no_grad():
            first = torch.isnan(self.initial[idx])
            self.initial[[i for i, f in zip(idx, first.tolist(), strict=True) if f]] = values[
                first
            ].detach()
        norms = torch.stack([self._grad_norm(v) for v in values])
        g = w[idx] * norms.to(w)
        ratio = values.detach().to(w) / self.initial[idx].clamp_min(1e-12)
        target = (g.mean() * (ratio / ratio.mean()) ** self.alpha).detach()
        return total + (g - target).abs().sum().to(total)

    def _grad_norm(self, loss: Tensor) -> Tensor:
        grads = torch.autograd.grad(loss, self.shared, retain_graph=True, allow_unused=True)
        squares = [g.pow(2).sum() for g in grads if g is not None]
        return torch.stack(squares).sum().sqrt() if squares else loss.new_zeros(())

    def weights(self) -> dict[str, float]:
        """The current weights ``K softmax(v)``."""
        return dict(zip(self.tasks, self._current().detach().tolist(), strict=True))


BALANCERS: dict[str, type[LossBalancer]] = {
    "static": StaticBalancer,
    "uncertainty": UncertaintyBalancer,
    "uw": UncertaintyBalancer,
    "dwa": DWABalancer,
    "dtp": DTPBalancer,
    "gradnorm": GradNormBalancer,
}


def build_balancer(name: str, tasks: Sequence[str], **options: object) -> LossBalancer:
    """Build a balancer by name (``static``, ``uncertainty``/``uw``, ``dwa``, ``dtp``,
    ``gradnorm``)."""
    key = str(name).lower()
    if key not in BALANCERS:
        raise ConfigError(
            f"task_weighting: unknown balancer '{name}'{did_you_mean(key, BALANCERS)}; "
            f"choose from {sorted(BALANCERS)}"
        )
    try:
        return BALANCERS[key](tasks, **options)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ConfigError(f"task_weighting '{key}': bad option ({exc})") from exc


def focal_weights(
    prob: Tensor, target: Tensor, *, gamma: float = 2.0, detach: bool = True
) -> Tensor:
    """Per-sample focal modulation ``(1 - p_t)^gamma`` (Lin et al. 2017), same shape as ``prob``.

    ``prob`` holds binary / multilabel probabilities and ``p_t = p`` where ``target = 1``, else
    ``1 - p`` (soft targets interpolate). With ``detach`` the weights are constants, so they
    rescale the per-sample loss without adding a gradient path of their own.
    """
    if prob.shape != target.shape:
        raise ValueError(
            f"prob and target must have the same shape, got {tuple(prob.shape)} "
            f"and {tuple(target.shape)}"
        )
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if detach:
        prob = prob.detach()
    target = target.to(prob.dtype)
    p_t = target * prob + (1 - target) * (1 - prob)
    return (1 - p_t).clamp_min(0) ** gamma
