"""Losses against values computed by hand (plain Python / numpy arithmetic written out below).

Each expected value is derived in the test from the textbook formula, not from the code under
test; the discrete-time NLL follows reference/methods.md §1(e) term by term.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pandas as pd
import pytest
import torch

from polyfuse.tasks import losses
from polyfuse.tasks.losses import (
    assign_bins,
    binary_loss,
    cox_loss,
    discrete_risk,
    discrete_survival_curve,
    discrete_survival_nll,
    inverse_frequency_weights,
    multiclass_loss,
    multilabel_loss,
    regression_loss,
    survival_bins,
)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_docstring_examples_run() -> None:
    assert doctest.testmod(losses).failed == 0


# --------------------------------------------------------------------------- classification


def test_binary_loss_by_hand() -> None:
    x = [0.3, -1.2, 2.0]
    y = [1.0, 0.0, 0.0]
    expected = [
        -(yi * math.log(sig(xi)) + (1 - yi) * math.log(1 - sig(xi)))
        for xi, yi in zip(x, y, strict=True)
    ]
    got = binary_loss(torch.tensor(x).unsqueeze(1), torch.tensor(y))
    assert got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)

    pw = 3.0
    expected_pw = [
        -(pw * yi * math.log(sig(xi)) + (1 - yi) * math.log(1 - sig(xi)))
        for xi, yi in zip(x, y, strict=True)
    ]
    got = binary_loss(torch.tensor(x), torch.tensor(y), pos_weight=pw)
    np.testing.assert_allclose(got.numpy(), expected_pw, rtol=1e-6)


def test_multiclass_loss_by_hand() -> None:
    logits = [[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]]
    target = [0, 2]
    w = [0.2, 0.3, 0.5]

    def ce(row: list[float], k: int) -> float:
        return -(row[k] - math.log(sum(math.exp(v) for v in row)))

    expected = [ce(r, k) for r, k in zip(logits, target, strict=True)]
    got = multiclass_loss(torch.tensor(logits), torch.tensor(target))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    got_w = multiclass_loss(
        torch.tensor(logits), torch.tensor(target), class_weights=torch.tensor(w)
    )
    np.testing.assert_allclose(
        got_w.numpy(), [w[k] * e for k, e in zip(target, expected, strict=True)], rtol=1e-6
    )


def test_multilabel_loss_ignores_unknown_labels() -> None:
    nan = float("nan")
    logits = torch.tensor([[0.2, -0.4, 1.0], [1.5, 0.0, -2.0], [0.3, 0.3, 0.3]], requires_grad=True)
    target = torch.tensor([[1.0, nan, 0.0], [0.0, 1.0, 1.0], [nan, nan, nan]])

    def bce(x: float, y: float) -> float:
        return -(y * math.log(sig(x)) + (1 - y) * math.log(1 - sig(x)))

    expected = [
        (bce(0.2, 1) + bce(1.0, 0)) / 2,
        (bce(1.5, 0) + bce(0.0, 1) + bce(-2.0, 1)) / 3,
        0.0,  # no known label
    ]
    got = multilabel_loss(logits, target)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-6)
    got.sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[0, 1] == 0 and (logits.grad[2] == 0).all()


def test_regression_loss_by_hand() -> None:
    got = regression_loss(torch.tensor([[1.0], [2.5]]), torch.tensor([0.5, 4.0]))
    np.testing.assert_allclose(got.numpy(), [0.25, 2.25])


# --------------------------------------------------------------------------- discrete survival

# Three bins with known hazards per sample (logits = logit(h)).
HAZ = [[0.2, 0.5, 0.6], [0.1, 0.3, 0.9], [0.4, 0.4, 0.4]]
LOGITS = torch.tensor([[logit(h) for h in row] for row in HAZ], dtype=torch.float64)


def _surv(row: list[float]) -> list[float]:
    """S_pad = [1, S_0, S_1, S_2] by hand."""
    s = [1.0]
    for h in row:
        s.append(s[-1] * (1 - h))
    return s


def test_discrete_curve_and_risk_by_hand() -> None:
    curve = discrete_survival_curve(LOGITS)
    expected = [_surv(r)[1:] for r in HAZ]
    np.testing.assert_allclose(curve.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(discrete_risk(LOGITS).numpy(), [-sum(s) for s in expected])
    # first row: S = [0.8, 0.4, 0.16]
    np.testing.assert_allclose(curve[0].numpy(), [0.8, 0.4, 0.16], rtol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_discrete_nll_by_hand(weighted: bool) -> None:
    # sample 0: event in bin 1; sample 1: censored in bin 0; sample 2: censored in last bin.
    bins = [1, 0, 2]
    event = [1.0, 0.0, 0.0]
    w = [0.5, 0.3, 0.2] if weighted else [1.0, 1.0, 1.0]
    alpha = 0.4
    s0, s1, s2 = (_surv(r) for r in HAZ)
    l_unc0 = -(math.log(s0[1]) + math.log(HAZ[0][1]))  # survived bin 0, event in bin 1
    l_cen1 = -math.log(s1[1])  # survived to the end of bin 0
    l_cen2 = -math.log(s2[3])  # survived all three bins
    expected = [
        (1 - alpha) * l_unc0 * w[1] + alpha * l_unc0,
        (1 - alpha) * l_cen1 * w[0],
        (1 - alpha) * l_cen2 * w[2],
    ]
    got = discrete_survival_nll(
        LOGITS,
        torch.tensor(bins),
        torch.tensor(event),
        alpha=alpha,
        class_weights=torch.tensor(w, dtype=torch.float64) if weighted else None,
    )
    assert got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    # numbers for the record: l_unc0 = -(log 0.8 + log 0.5)
    assert math.isclose(l_unc0, -(math.log(0.8) + math.log(0.5)))


def test_discrete_nll_alpha_and_clamp() -> None:
    # alpha = 0: plain NLL. A hazard of ~0 in the event bin is clamped at eps as in the reference.
    logits = torch.tensor([[-40.0, 0.0]])
    got = discrete_survival_nll(logits, torch.tensor([0]), torch.tensor([1.0]), alpha=0.0)
    np.testing.assert_allclose(got.numpy(), [-math.log(1e-7)], rtol=1e-6)
    logits.requires_grad_(True)
    discrete_survival_nll(logits, torch.tensor([1]), torch.tensor([0.0])).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_discrete_nll_rejects_bad_bins() -> None:
    with pytest.raises(ValueError, match="bin must lie"):
        discrete_survival_nll(LOGITS, torch.tensor([0, 1, 3]), torch.ones(3))


def test_survival_bins_match_pandas() -> None:
    rng = np.random.default_rng(0)
    time = rng.exponential(30, 80).round(1)
    event = rng.random(80) < 0.6
    cuts = survival_bins(time, event, n_bins=4)
    # HEALNet: qcut on uncensored times, then widen the outer edges.
    _, ref = pd.qcut(time[event], q=4, retbins=True, labels=False)
    ref[0], ref[-1] = time.min() - 1e-6, time.max() + 1e-6
    np.testing.assert_allclose(cuts, ref)
    expected = pd.cut(time, bins=cuts, right=False, labels=False, include_lowest=True)
    got = assign_bins(torch.tensor(time), torch.tensor(cuts))
    assert got.dtype == torch.long
    np.testing.assert_array_equal(got.numpy(), expected)
    assert set(got.tolist()) == {0, 1, 2, 3}
    # a time exactly on a cut point goes to the bin on its right (right=False)
    on_cut = assign_bins(torch.tensor([cuts[1], cuts[2]]), torch.tensor(cuts))
    assert on_cut.tolist() == [1, 2]
    # times outside the training range are clamped to the first / last bin
    outside = assign_bins(torch.tensor([-5.0, 1e6]), torch.tensor(cuts))
    assert outside.tolist() == [0, 3]


def test_survival_bins_errors() -> None:
    with pytest.raises(ValueError, match="uncensored"):
        survival_bins(np.array([1.0, 2.0]), np.array([0, 0]))
    with pytest.raises(ValueError, match="not distinct"):
        survival_bins(np.array([1.0, 1.0, 1.0, 5.0]), np.array([1, 1, 1, 0]), n_bins=3)


def test_inverse_frequency_weights_by_hand() -> None:
    # counts [2, 1, 0, 1] -> 1/count [0.5, 1, 0, 1] -> / 2.5
    w = inverse_frequency_weights(np.array([0, 0, 1, 3]), 4)
    np.testing.assert_allclose(w, [0.2, 0.4, 0.0, 0.4])
    assert math.isclose(w.sum(), 1.0)


# --------------------------------------------------------------------------- Cox


def test_cox_loss_by_hand_no_ties() -> None:
    x = [0.1, -0.5, 0.3, 0.8]
    time = [5.0, 1.0, 3.0, 4.0]
    event = [1, 1, 0, 1]
    # Sorted by time: s1 (event), s2 (censored), s3 (event), s0 (event).
    e = [math.exp(v) for v in x]
    pll = [
        x[1] - math.log(e[0] + e[1] + e[2] + e[3]),  # t = 1: everyone at risk
        x[3] - math.log(e[3] + e[0]),  # t = 4: s3, s0 at risk
        x[0] - math.log(e[0]),  # t = 5: only s0
    ]
    expected = -sum(pll) / 3  # mean over the three events
    log_risk = torch.tensor(x, requires_grad=True)
    got = cox_loss(
        log_risk.unsqueeze(1), torch.tensor(time), torch.tensor(event, dtype=torch.float)
    )
    assert got.ndim == 0
    assert math.isclose(got.item(), expected, rel_tol=1e-6)
    got.backward()
    assert torch.isfinite(log_risk.grad).all() and log_risk.grad.abs().sum() > 0


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [1, 0, 3, 2]])
def test_cox_loss_censored_tied_with_event_is_at_risk(order: list[int]) -> None:
    x = [0.5, 2.0, -1.0, 0.3]
    time = [1.0, 1.0, 2.0, 3.0]
    event = [0, 1, 1, 0]  # sample 0 censored at t = 1, the time of sample 1's event
    e = [math.exp(v) for v in x]
    expected = -((x[1] - math.log(sum(e))) + (x[2] - math.log(e[2] + e[3]))) / 2
    idx = torch.tensor(order)
    got = cox_loss(torch.tensor(x)[idx], torch.tensor(time)[idx], torch.tensor(event)[idx])
    assert math.isclose(got.item(), expected, rel_tol=1e-6)


def test_cox_loss_tied_events_breslow_and_efron() -> None:
    x = [0.2, -0.3, 0.7, 0.1]
    time = [2.0, 2.0, 3.0, 4.0]
    event = [1, 1, 1, 0]
    e = [math.exp(v) for v in x]
    r2 = sum(e)  # risk set at t = 2
    r3 = e[2] + e[3]
    # torchsurv averages over distinct event times (2 here), not over events.
    breslow = -((x[0] + x[1] - 2 * math.log(r2)) + (x[2] - math.log(r3))) / 2
    d = e[0] + e[1]
    efron = -((x[0] + x[1] - math.log(r2) - math.log(r2 - d / 2)) + (x[2] - math.log(r3))) / 2
    args = (torch.tensor(x), torch.tensor(time), torch.tensor(event))
    assert math.isclose(cox_loss(*args, ties="breslow").item(), breslow, rel_tol=1e-6)
    assert math.isclose(cox_loss(*args).item(), efron, rel_tol=1e-6)


def test_cox_loss_without_event_is_zero_with_grad() -> None:
    log_risk = torch.tensor([0.3, -0.2, 1.0], requires_grad=True)
    got = cox_loss(log_risk, torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3))
    assert got.item() == 0.0 and got.requires_grad
    got.backward()
    assert (log_risk.grad == 0).all()
    one = torch.tensor([0.4], requires_grad=True)
    assert cox_loss(one, torch.tensor([1.0]), torch.ones(1)).item() == 0.0
