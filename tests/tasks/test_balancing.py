"""Loss balancers and focal weights against values worked out by hand (methods.md §4(c))."""

from __future__ import annotations

import math

import pytest
import torch

from polyfuse.errors import ConfigError
from polyfuse.tasks.balancing import (
    DTPBalancer,
    DWABalancer,
    LossBalancer,
    StaticBalancer,
    UncertaintyBalancer,
    build_balancer,
    focal_weights,
)

TASKS = ["a", "b", "c"]


def _losses(*values: float, requires_grad: bool = False) -> dict[str, torch.Tensor]:
    return {
        t: torch.tensor(v, requires_grad=requires_grad) for t, v in zip(TASKS, values, strict=True)
    }


# --------------------------------------------------------------------------- static


def test_static_weighted_sum() -> None:
    bal = StaticBalancer(TASKS, weights={"a": 2.0, "c": 0.5})
    out = bal(_losses(1.0, 3.0, 4.0))
    assert out.item() == pytest.approx(2 * 1 + 1 * 3 + 0.5 * 4)
    assert bal.weights() == {"a": 2.0, "b": 1.0, "c": 0.5}
    bal.epoch_end(None, {"a": 1.0, "b": 1.0, "c": 1.0})  # no-op
    assert bal.weights()["a"] == 2.0


def test_static_default_and_subset_of_tasks() -> None:
    bal = build_balancer("static", TASKS)
    assert isinstance(bal, LossBalancer)
    assert bal(_losses(1.0, 2.0, 3.0)).item() == pytest.approx(6.0)
    # a batch without labels for some task: only the present ones are summed
    assert bal({"b": torch.tensor(2.0)}).item() == pytest.approx(2.0)


def test_static_gradient_flows_to_losses() -> None:
    losses = _losses(1.0, 2.0, 3.0, requires_grad=True)
    StaticBalancer(TASKS, weights={"b": 3.0})(losses).backward()
    assert [losses[t].grad.item() for t in TASKS] == [1.0, 3.0, 1.0]


# --------------------------------------------------------------------------- uncertainty


def test_uncertainty_gradient_by_hand_and_learned() -> None:
    bal = UncertaintyBalancer(TASKS, init=0.0)
    with torch.no_grad():
        bal.log_vars.copy_(torch.tensor([0.0, 0.5, -1.0]))
    s = bal.log_vars.detach().clone()
    values = [2.0, 0.3, 1.0]
    out = bal(_losses(*values))
    # Kendall et al. eq. 10, log sigma = s / 2: L / sigma^2 + log sigma = e^-s L + s / 2
    expected = sum(math.exp(-si) * li + si / 2 for si, li in zip(s.tolist(), values, strict=True))
    assert out.item() == pytest.approx(expected, rel=1e-6)
    out.backward()
    by_hand = [math.exp(-si) * (-li) + 0.5 for si, li in zip(s.tolist(), values, strict=True)]
    assert bal.log_vars.grad.tolist() == pytest.approx(by_hand, rel=1e-6)

    opt = torch.optim.SGD(bal.parameters(), lr=0.1)
    opt.step()
    assert not torch.allclose(bal.log_vars.detach(), s)
    # s_t moves against its gradient: up where 2 L_t > exp(s_t), down where 2 L_t < exp(s_t)
    step = (bal.log_vars.detach() - s).tolist()
    assert step == pytest.approx([-0.1 * g for g in by_hand], rel=1e-5)
    assert bal.weights()["a"] == pytest.approx(math.exp(-bal.log_vars[0].item()))


def test_uncertainty_optimum_is_the_paper_s() -> None:
    """At the optimum of s, sigma^2 = 2 L for classification and L for regression."""
    for factor, optimum in [("classification", math.log(2 * 0.7)), ("regression", math.log(0.7))]:
        bal = UncertaintyBalancer(["x"], factor=factor, init=optimum)
        bal({"x": torch.tensor(0.7)}).backward()
        assert bal.log_vars.grad.item() == pytest.approx(0.0, abs=1e-6), factor


def test_uncertainty_unit_factor_keeps_the_earlier_form() -> None:
    bal = build_balancer("uw", ["x"], factor="unit", init=0.3)
    assert bal({"x": torch.tensor(2.0)}).item() == pytest.approx(math.exp(-0.3) * 2.0 + 0.3)


def test_uncertainty_regression_factor() -> None:
    bal = build_balancer("uw", ["x"], factor="regression", init=-0.5)
    out = bal({"x": torch.tensor(2.0)})
    assert out.item() == pytest.approx(2.0 / (2 * math.exp(-0.5)) + (-0.5) / 2, rel=1e-6)
    assert bal.weights()["x"] == pytest.approx(0.5 * math.exp(0.5))
    with pytest.raises(ConfigError, match="did you mean 'regression'"):
        UncertaintyBalancer(["x"], factor="regresion")


# --------------------------------------------------------------------------- DWA


def test_dwa_equal_then_softmax_of_ratios() -> None:
    bal = build_balancer("dwa", TASKS)
    assert bal.weights() == {"a": 1.0, "b": 1.0, "c": 1.0}
    bal.epoch_end(None, {"a": 1.0, "b": 1.0, "c": 1.0})
    assert bal.weights() == {"a": 1.0, "b": 1.0, "c": 1.0}  # still one epoch only
    bal.epoch_end(None, {"a": 0.5, "b": 0.9, "c": 0.7})  # "b" decreased least
    w = bal.weights()
    assert sum(w.values()) == pytest.approx(len(TASKS))
    assert max(w, key=w.get) == "b" and min(w, key=w.get) == "a"
    ratios = [0.5, 0.9, 0.7]
    exps = [math.exp(r / 2.0) for r in ratios]
    by_hand = [3 * e / sum(exps) for e in exps]
    assert [w[t] for t in TASKS] == pytest.approx(by_hand, rel=1e-6)
    assert bal(_losses(1.0, 1.0, 1.0)).item() == pytest.approx(3.0, rel=1e-6)


def test_dwa_uses_last_two_epochs_only() -> None:
    bal = DWABalancer(["a", "b"], temperature=1.0)
    bal.epoch_end(None, {"a": 100.0, "b": 1.0})
    bal.epoch_end(None, {"a": 2.0, "b": 1.0})
    bal.epoch_end(None, {"a": 2.0, "b": 0.5})  # ratios now 1.0 and 0.5
    w = bal.weights()
    assert w["a"] == pytest.approx(2 * math.exp(1.0) / (math.exp(1.0) + math.exp(0.5)))
    assert sum(w.values()) == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="no value"):
        bal.epoch_end(None, {"a": 1.0})


# --------------------------------------------------------------------------- DTP


def test_dtp_formula_and_monotone_in_kpi() -> None:
    bal = DTPBalancer(["x"], gamma=2.0)
    assert bal.weights() == {"x": 1.0}
    kpis = [0.55, 0.65, 0.75, 0.85, 0.95]
    weights = []
    for k in kpis:
        fresh = DTPBalancer(["x"])
        fresh.epoch_end({"x": k}, {"x": 0.0})
        weights.append(fresh.weights()["x"])
        assert weights[-1] == pytest.approx(-((1 - k) ** 2) * math.log(k), rel=1e-6)
    assert weights == sorted(weights, reverse=True) and len(set(weights)) == len(weights)


def test_dtp_smoothing_and_clamp() -> None:
    bal = build_balancer("dtp", ["x", "y"], alpha=0.9, gamma={"y": 1.0})
    bal.epoch_end({"x": 0.6, "y": 0.0}, {})
    bal.epoch_end({"x": 0.8, "y": 1.0}, {})
    k_x = 0.9 * 0.8 + 0.1 * 0.6
    k_y = 0.9 * 1.0 + 0.1 * 0.0
    w = bal.weights()
    assert w["x"] == pytest.approx(-((1 - k_x) ** 2) * math.log(k_x), rel=1e-6)
    assert w["y"] == pytest.approx(-(1 - k_y) * math.log(k_y), rel=1e-6)
    # clamping keeps a KPI of exactly 0 or 1 finite
    edge = DTPBalancer(["lo", "hi"])
    edge.epoch_end({"lo": 0.0, "hi": 1.0}, {})
    assert all(math.isfinite(v) and v >= 0 for v in edge.weights().values())
    assert edge.weights()["lo"] > edge.weights()["hi"]
    edge.epoch_end(None, {})  # no KPI this epoch: weights unchanged
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        edge.epoch_end({"lo": 1.5, "hi": 0.5}, {})


# --------------------------------------------------------------------------- focal


def test_focal_weights_by_hand() -> None:
    prob = torch.tensor([[0.9, 0.2], [0.4, 0.5]])
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # p_t = [[0.9, 0.8], [0.4, 0.5]] -> (1 - p_t)^2
    expected = torch.tensor([[0.01, 0.04], [0.36, 0.25]])
    assert torch.allclose(focal_weights(prob, target), expected, atol=1e-6)
    assert torch.allclose(
        focal_weights(prob, target, gamma=1.0), torch.tensor([[0.1, 0.2], [0.6, 0.5]]), atol=1e-6
    )
    assert torch.equal(focal_weights(prob, target, gamma=0.0), torch.ones(2, 2))


def test_focal_detach_cuts_gradient() -> None:
    prob = torch.tensor([0.3, 0.8], requires_grad=True)
    target = torch.tensor([1.0, 0.0])
    w = focal_weights(prob, target)
    assert not w.requires_grad
    w2 = focal_weights(prob, target, detach=False)
    w2.sum().backward()
    # d/dp (1 - p)^2 = -2(1 - p) for y = 1; d/dp p^2 = 2p for y = 0
    assert prob.grad.tolist() == pytest.approx([-2 * 0.7, 2 * 0.8], rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        focal_weights(prob, target[:1])


# --------------------------------------------------------------------------- build / errors


def test_build_balancer_errors() -> None:
    with pytest.raises(ConfigError, match="did you mean 'dwa'"):
        build_balancer("dwaa", TASKS)
    with pytest.raises(ConfigError, match="choose from"):
        build_balancer("gradnorms_x", TASKS)
    with pytest.raises(ConfigError, match="bad option"):
        build_balancer("dwa", TASKS, gamma=2.0)
    with pytest.raises(ConfigError, match="did you mean 'a'"):
        build_balancer("static", TASKS, weights={"aa": 1.0})
    with pytest.raises(ConfigError, match="unknown task"):
        build_balancer("static", TASKS)({"zzz": torch.tensor(1.0)})
    with pytest.raises(ConfigError, match="duplicate"):
        build_balancer("static", ["a", "a"])
    with pytest.raises(ConfigError, match="temperature"):
        build_balancer("dwa", TASKS, temperature=0.0)
    assert isinstance(build_balancer("DTP", TASKS), DTPBalancer)
    assert isinstance(build_balancer("uncertainty", TASKS), UncertaintyBalancer)


def test_state_dict_round_trip() -> None:
    bal = DWABalancer(TASKS)
    bal.epoch_end(None, {"a": 1.0, "b": 1.0, "c": 1.0})
    bal.epoch_end(None, {"a": 0.2, "b": 0.9, "c": 0.5})
    other = DWABalancer(TASKS)
    other.load_state_dict(bal.state_dict())
    assert other.weights() == pytest.approx(bal.weights())


# --------------------------------------------------------------------------- gradnorm


def _two_task_toy(seed: int = 0):
    """A shared layer feeding two heads whose losses differ 100-fold in gradient scale."""
    torch.manual_seed(seed)
    shared = torch.nn.Linear(8, 8)
    heads = torch.nn.ModuleList([torch.nn.Linear(8, 1), torch.nn.Linear(8, 1)])
    x = torch.randn(64, 8)
    y = [x[:, :1] * 2.0, x[:, 1:2] * 20.0]  # task b's targets (and loss) are far larger

    def losses() -> dict[str, torch.Tensor]:
        h = torch.relu(shared(x))
        return {t: ((heads[i](h) - y[i]) ** 2).mean() for i, t in enumerate("ab")}

    return shared, heads, losses


def _grad_norms(shared: torch.nn.Module, weighted: dict[str, torch.Tensor]) -> list[float]:
    out = []
    for v in weighted.values():
        grads = torch.autograd.grad(v, list(shared.parameters()), retain_graph=True)
        out.append(float(torch.sqrt(sum(g.pow(2).sum() for g in grads))))
    return out


def test_gradnorm_brings_task_gradient_norms_closer() -> None:
    shared, heads, losses = _two_task_toy()
    bal = build_balancer("gradnorm", ["a", "b"], alpha=0.0, shared=list(shared.parameters()))
    params = [*shared.parameters(), *heads.parameters()]
    opt = torch.optim.SGD(
        [{"params": params, "lr": 1e-4}, {"params": bal.parameters(), "lr": 0.05}]
    )
    first = losses()
    start = _grad_norms(shared, first)
    for _ in range(300):
        opt.zero_grad()
        bal(losses()).backward()
        opt.step()
    w = bal.weights()
    assert sum(w.values()) == pytest.approx(2.0, rel=1e-5)  # K softmax(v) always sums to K
    assert w["a"] > 1.0 > w["b"]  # the task with the small gradient is up-weighted
    end = _grad_norms(shared, {t: w[t] * v for t, v in losses().items()})
    ratio = lambda g: max(g) / min(g)  # noqa: E731
    assert ratio(end) < 0.5 * ratio(start), (start, end)


def test_gradnorm_target_follows_the_relative_loss_to_the_power_alpha() -> None:
    """By hand, two tasks on one shared vector W = (1, 1): at the second step L_a = 6 W_0²
    (first step 3 W_0²) and L_b = 0.5 W_1² (first W_1²), so r = (2, 0.5) / 1.25 = (1.6, 0.4),
    gradient norms n = (12, 1), G = w n = (12, 1) at v = 0, mean 6.5. With alpha = 1.5 the
    targets are 6.5 r^1.5 = (13.16, 1.64): both G lie below, and ∂/∂v_j of Σ|G − target| =
    Σ_t sign_t n_t (δ_tj − 1/2) = (−5.5, 5.5). Without the r^alpha term (alpha = 0) task a's
    sign flips and the gradient would be (6.5, −6.5)."""
    for alpha, want in [(1.5, [-5.5, 5.5]), (0.0, [6.5, -6.5])]:
        w = torch.ones(2, requires_grad=True)
        bal = build_balancer("gradnorm", ["a", "b"], alpha=alpha, shared=[w])
        bal.train()
        bal({"a": 3 * w[0] ** 2, "b": w[1] ** 2})  # the first step fixes the initial losses
        bal.v.grad = None
        bal({"a": 6 * w[0] ** 2, "b": 0.5 * w[1] ** 2}).backward()
        assert bal.v.grad.tolist() == pytest.approx(want, rel=1e-5), alpha


def test_gradnorm_only_moves_its_own_weights_and_starts_equal() -> None:
    shared, heads, losses = _two_task_toy()
    bal = build_balancer("gradnorm", ["a", "b"], shared=list(shared.parameters()))
    assert bal.weights() == {"a": 1.0, "b": 1.0}
    values = losses()
    total = bal(values)
    # the model-facing part is sum_t w_t L_t with constant weights (= 1 at the start)
    model_part = sum(values.values())
    g_total = torch.autograd.grad(total, heads[0].weight, retain_graph=True)[0]
    g_model = torch.autograd.grad(model_part, heads[0].weight)[0]
    torch.testing.assert_close(g_total, g_model)
    assert torch.isfinite(bal.initial).all()  # first-step losses recorded for r_t
    bal.eval()  # no balancing objective outside training
    with torch.no_grad():
        assert float(bal(losses())) == pytest.approx(float(sum(losses().values())), rel=1e-6)


def test_gradnorm_with_one_task_present_is_plain_weighted_loss() -> None:
    shared, _, losses = _two_task_toy()
    bal = build_balancer("gradnorm", ["a", "b"], shared=list(shared.parameters()))
    only_a = {"a": losses()["a"]}
    assert float(bal(only_a)) == pytest.approx(float(only_a["a"]))
