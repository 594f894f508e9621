"""Sample-level weights of a task's loss: focal modulation and positive weights, checked by hand,
and multilabel tasks split into one balancing term per label (methods.md §4(c))."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polyfuse.data.specs import TaskSpec
from polyfuse.errors import ConfigError
from polyfuse.tasks.objective import TaskObjective

BINARY = TaskSpec("y", "binary")
LABELS = TaskSpec("ph", "multilabel", classes=("a", "b", "c"))


def _bce(logit: float, y: float, pos_weight: float = 1.0) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(pos_weight * y * math.log(p) + (1 - y) * math.log(1 - p))


def test_binary_focal_loss_matches_hand_computation() -> None:
    obj = TaskObjective(BINARY, focal_gamma=2.0)
    logits, target = torch.tensor([[0.5], [-1.0], [2.0]]), torch.tensor([1.0, 1.0, 0.0])
    expected = []
    for z, y in zip(logits[:, 0].tolist(), target.tolist(), strict=True):
        p = 1 / (1 + math.exp(-z))
        p_t = p if y == 1 else 1 - p
        expected.append((1 - p_t) ** 2 * _bce(z, y))
    got = obj.loss_terms(logits, target)
    assert list(got) == ["y"]
    assert float(got["y"]) == pytest.approx(sum(expected) / 3, rel=1e-5)


def test_focal_detach_controls_the_gradient_path() -> None:
    logits, target = torch.tensor([[0.3], [-0.7]]), torch.tensor([1.0, 0.0])
    grads = {}
    for detach in (True, False):
        z = logits.clone().requires_grad_(True)
        TaskObjective(BINARY, focal_gamma=2.0, focal_detach=detach).loss(z, target).backward()
        grads[detach] = z.grad.clone()
    # detached: d/dz [w · bce] = w · (p - y) / B with w constant
    p = torch.sigmoid(logits[:, 0])
    w = torch.where(target == 1, 1 - p, p) ** 2
    torch.testing.assert_close(grads[True][:, 0], w * (p - target) / 2)
    assert not torch.allclose(grads[True], grads[False])


def test_multiclass_focal_uses_probability_of_true_class() -> None:
    spec = TaskSpec("k", "multiclass", classes=("x", "y", "z"))
    logits, target = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.5, 0.2]]), torch.tensor([0.0, 2.0])
    prob = torch.softmax(logits, -1)
    p_t = prob[[0, 1], [0, 2]]
    expected = ((1 - p_t) ** 1.5 * -torch.log(p_t)).mean()
    got = TaskObjective(spec, focal_gamma=1.5).loss(logits, target)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_inverse_class_weights_give_positive_weights_by_prevalence() -> None:
    obj = TaskObjective(BINARY, class_weights="inverse").fit(
        np.array([1, 0, 0, 0, np.nan], dtype=float)
    )
    assert obj.weights.tolist() == [3.0]  # 3 negatives / 1 positive; the unknown is ignored
    logits, target = torch.tensor([[0.2], [0.4]]), torch.tensor([1.0, 0.0])
    expected = (_bce(0.2, 1, 3.0) + _bce(0.4, 0)) / 2
    assert float(obj.loss(logits, target)) == pytest.approx(expected, rel=1e-5)

    train = np.array([[1, 0, 1], [0, 0, np.nan], [0, 1, 1], [0, 0, 0]], dtype=float)
    labels = TaskObjective(LABELS, class_weights="inverse").fit(train)
    # a: 1 pos / 3 neg; b: 1 / 3; c: 2 pos / 1 neg (one unknown)
    np.testing.assert_allclose(labels.weights.numpy(), [3.0, 3.0, 0.5])


def test_multilabel_task_gives_one_term_per_known_label() -> None:
    obj = TaskObjective(LABELS, focal_gamma=1.0)
    assert obj.terms == ["ph/a", "ph/b", "ph/c"]
    logits = torch.tensor([[0.5, -0.5, 1.0], [1.5, 0.2, -2.0]])
    target = torch.tensor([[1.0, np.nan, np.nan], [0.0, np.nan, 1.0]])
    terms = obj.loss_terms(logits, target)
    assert list(terms) == ["ph/a", "ph/c"]  # label b is unknown in every sample: left out

    def focal_bce(z: float, y: float) -> float:
        p = 1 / (1 + math.exp(-z))
        return (1 - (p if y == 1 else 1 - p)) * _bce(z, y)

    assert float(terms["ph/a"]) == pytest.approx(
        (focal_bce(0.5, 1) + focal_bce(1.5, 0)) / 2, rel=1e-5
    )
    assert float(terms["ph/c"]) == pytest.approx(focal_bce(-2.0, 1), rel=1e-5)
    # the static task loss is the mean over the task's labels
    total = float(obj.loss(logits, target))
    assert total == pytest.approx((float(terms["ph/a"]) + float(terms["ph/c"])) / 3, rel=1e-6)


def test_unknown_targets_leave_a_term_out_and_kpis_are_per_label() -> None:
    obj = TaskObjective(BINARY)
    assert obj.loss_terms(torch.zeros(2, 1), torch.tensor([np.nan, np.nan])) == {}
    labels = TaskObjective(LABELS)
    logits = torch.tensor([[2.0, 0.0, 1.0], [-2.0, 0.0, -1.0], [1.0, 0.0, 3.0]])
    target = np.array([[1, 0, 0], [0, 1, 1], [1, np.nan, np.nan]], dtype=float)
    kpis = labels.kpis(logits, target)
    assert kpis == {"ph/a": 1.0, "ph/b": 0.5, "ph/c": 0.0}  # b: ties give AUROC 0.5


def test_negative_focal_gamma_is_refused() -> None:
    with pytest.raises(ConfigError, match="focal_gamma"):
        TaskObjective(BINARY, focal_gamma=-1)


@pytest.mark.parametrize(
    "spec", [BINARY, LABELS, TaskSpec("os", "survival", n_bins=4), TaskSpec("os", "survival")]
)
def test_bf16_logits_give_float32_losses_and_scores(spec: TaskSpec) -> None:
    """Under bf16 autocast the heads give bf16 logits: the loss and the scores are float32
    all the same (on CUDA, a bf16 loss's backward through the known-target index failed)."""
    rng = np.random.default_rng(0)
    n = 8
    if spec.type == "survival":
        target = np.stack([rng.uniform(1, 50, n), np.tile([0.0, 1.0], n // 2)], 1)
    else:
        target = rng.integers(0, 2, (n, spec.out_dim)).astype(float)
        target = target[:, 0] if spec.out_dim == 1 else target
    obj = TaskObjective(spec).fit(target)
    exact = torch.linspace(3.0, 3.007, n)[:, None].expand(n, spec.out_dim).contiguous()
    logits = exact.bfloat16().requires_grad_()
    loss = obj.loss(logits, torch.as_tensor(target, dtype=torch.float32))
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad.float()).all()
    for name, v in obj.scores(logits.detach()).items():
        assert v.dtype == torch.float32, name
