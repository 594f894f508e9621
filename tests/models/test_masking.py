"""The masking helpers every model uses: masked entries are exactly 0 (or the old value), whatever
they held, and nothing of them reaches a gradient."""

from __future__ import annotations

import math

import torch

from polyfuse.models.blocks.masking import where_present, with_observed, zero_absent

NAN, INF = float("nan"), float("inf")


def test_zero_absent_per_sample_is_exact_and_keeps_gradients_finite() -> None:
    present = torch.tensor([True, False, True])
    x = torch.tensor([[[1.0, 2.0]], [[NAN, INF]], [[-3.0, 4.0]]], requires_grad=True)
    out = zero_absent(present, x)
    expected = torch.tensor([[[1.0, 2.0]], [[0.0, 0.0]], [[-3.0, 4.0]]])
    assert torch.equal(out, expected)
    (3 * out).sum().backward()
    # the absent row neither leaks NaN into the gradient nor receives any
    assert torch.equal(x.grad, torch.tensor([[[3.0, 3.0]], [[0.0, 0.0]], [[3.0, 3.0]]]))


def test_zero_absent_per_token_and_on_integer_ids() -> None:
    mask = torch.tensor([[True, False], [False, True]])
    tokens = torch.tensor([[[1.0], [NAN]], [[INF], [2.0]]])
    assert torch.equal(zero_absent(mask, tokens), torch.tensor([[[1.0], [0.0]], [[0.0], [2.0]]]))
    ids = torch.tensor([[5, -7], [9, 3]])
    out = zero_absent(mask, ids)
    assert out.dtype == torch.long and out.tolist() == [[5, 0], [0, 3]]


def test_where_present_keeps_the_old_state_of_absent_samples() -> None:
    present = torch.tensor([False, True])
    old = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    new = torch.tensor([[NAN, 5.0], [6.0, 7.0]], requires_grad=True)
    out = where_present(present, new, old)
    assert torch.equal(out, torch.tensor([[1.0, 1.0], [6.0, 7.0]]))
    out.sum().backward()
    assert torch.equal(new.grad, torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    # a learned stand-in broadcasts over the samples that lack the value
    stand_in = torch.tensor([-1.0, -2.0])
    assert where_present(present, new.detach(), stand_in).tolist() == [[-1.0, -2.0], [6.0, 7.0]]


def test_with_observed_by_hand() -> None:
    steps = torch.tensor([[[1.0, NAN], [0.0, 2.0], [7.0, NAN]]])
    mask = torch.tensor([[True, True, False]])  # the third step is padding, whatever it holds
    out = with_observed(steps, mask)
    expected = [[[1.0, 0.0, 1.0, 0.0], [0.0, 2.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]]
    assert out.tolist() == expected
    assert not any(math.isnan(v) for v in out.flatten().tolist())
