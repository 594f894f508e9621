"""What defines hierarchical pairwise fusion: pair weights over the pairs a sample has, the
unimodal fallback, the pair operators and higher orders, and the pair it finds on synthetic
data with a known informative pair (against early fusion)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyfuse.config import TrainingConfig
from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec
from polyfuse.datasets.synthetic import make_interactions
from polyfuse.errors import ConfigError, FallbackWarning
from polyfuse.models.registry import create_model
from polyfuse.training.fit import train_model

PAIR_OPS = ["concat_mlp", "lowrank_bilinear", "cross_attn"]


def build(specs, tasks, **hparams):
    torch.manual_seed(0)
    return create_model("hierarchical", specs, tasks, **hparams).eval()


def presence(inputs, model) -> torch.Tensor:
    return torch.stack([inputs[m].present for m in model.specs], dim=1)


def node_present(inputs, model) -> torch.Tensor:
    """(B, P): whether every modality of each node is present."""
    cols = [torch.stack([inputs[m].present for m in s]).all(0) for s in model.pairs]
    return torch.stack(cols, dim=1)


@pytest.mark.parametrize("pair_op", PAIR_OPS)
@pytest.mark.parametrize("max_order", [2, 3])
def test_pair_weights_sum_to_one_over_present_pairs(specs, tasks, inputs, pair_op, max_order):
    model = build(specs, tasks, pair_op=pair_op, max_order=max_order)
    out = model(inputs)
    alpha, beta = out.aux["pair_weights"], out.aux["modality_weights"]
    m = len(specs)
    expected = m * (m - 1) // 2 + (m * (m - 1) * (m - 2) // 6 if max_order == 3 else 0)
    assert alpha.shape == (10, expected) == (10, len(model.pair_names))
    assert beta.shape == (10, m)
    has = node_present(inputs, model)
    assert (alpha[~has] == 0).all()  # exactly zero, not merely small
    rows = has.any(1)
    torch.testing.assert_close(alpha[rows].sum(1), torch.ones(int(rows.sum())))
    assert (alpha[~rows] == 0).all()
    mods = presence(inputs, model)
    assert (beta[~mods] == 0).all()
    some = mods.any(1)
    torch.testing.assert_close(beta[some].sum(1), torch.ones(int(some.sum())))


@pytest.mark.parametrize("pair_op", PAIR_OPS)
@pytest.mark.parametrize("fill", ["big", "nan"])
def test_fill_value_invariance_every_pair_op(specs, tasks, inputs, garbled, pair_op, fill):
    model = build(specs, tasks, pair_op=pair_op, max_order=3)
    a, b = model(inputs), model(garbled(inputs, fill, seed=3))
    for t in tasks:
        torch.testing.assert_close(a.logits[t], b.logits[t], atol=1e-5, rtol=0)
    for k in ("pair_weights", "modality_weights"):
        torch.testing.assert_close(a.aux[k], b.aux[k], atol=1e-6, rtol=0)


def test_one_modality_rests_on_the_unimodal_term(specs, tasks, inputs, cloned):
    model = build(specs, tasks)
    inputs = cloned(inputs)
    names = list(specs)
    for k, m in enumerate(names):  # sample k keeps modality k only
        inputs[m].present[: len(names)] = torch.arange(len(names)) == k
    out = model(inputs)
    one = presence(inputs, model).sum(1) == 1
    assert one[: len(names)].all()
    assert (out.aux["pair_weights"][one] == 0).all()
    # embedding = [Σ β u ; p]: the pair half is exactly 0 without a pair
    assert (out.embedding[one, model.dim :] == 0).all()
    assert (out.embedding[one, : model.dim] != 0).any()


def test_pair_names_follow_spec_order(specs, tasks):
    model = build(specs, tasks, max_order=3)
    names = list(specs)
    assert model.pairs[0] == (names[0], names[1])
    assert model.pair_names[0] == f"{names[0]}+{names[1]}"
    assert all(len(a) <= len(b) for a, b in zip(model.pairs, model.pairs[1:], strict=False))
    with pytest.warns(FallbackWarning, match="max_order=99 is capped"):
        every = build(specs, tasks, max_order=99)
    assert len(every.pairs) == 2 ** len(names) - len(names) - 1


def test_single_modality_has_no_pairs(tasks):
    specs = {"x": ModalitySpec("x", "tabular", (4,))}
    model = build(specs, tasks)
    assert model.pairs == ()
    out = model({"x": ModalityBatch(torch.randn(3, 4), torch.ones(3, dtype=torch.bool))})
    assert out.aux["pair_weights"].shape == (3, 0)
    assert (out.aux["modality_weights"] == 1).all()


@pytest.mark.parametrize("hparams", [{"pair_op": "outer"}, {"max_order": 1}, {"rank": 0}], ids=str)
def test_bad_hparams_raise(specs, tasks, hparams):
    with pytest.raises(ConfigError, match="hierarchical"):
        create_model("hierarchical", specs, tasks, **hparams)


def test_pair_weights_depend_on_the_sample(specs, tasks, inputs):
    model = build(specs, tasks)
    alpha = model(inputs).aux["pair_weights"]
    full = presence(inputs, model).all(1)
    assert int(full.sum()) >= 1
    # samples with every modality present still get different weights (sample-aware)
    both = node_present(inputs, model)
    rows = [i for i in range(10) if both[i].sum() >= 2]
    assert len(rows) >= 2
    assert not torch.allclose(alpha[rows[0]], alpha[rows[1]])


# ------------------------------------------------------------------ ground truth on synthetic data

FIT = TrainingConfig(epochs=40, batch_size=32, lr=2e-3, patience=20, progress=False)


def _split(data, frac: float = 0.7):
    idx = np.random.default_rng(0).permutation(len(data))
    cut = int(frac * len(data))
    return data.subset(idx[:cut]), data.subset(idx[cut:])


def _mean_alpha(fitted, data) -> dict[str, float]:
    batch = fitted.preprocessor.transform(data).batch(np.arange(len(data)))
    fitted.model.eval()
    with torch.no_grad():
        alpha = fitted.model(batch.inputs).aux["pair_weights"].mean(0)
    return dict(zip(fitted.model.pair_names, alpha.tolist(), strict=True))


def test_finds_the_informative_pair_and_beats_early():
    # Width 12 per modality, 800 samples: early fusion's MLP does not find the product within
    # 40 epochs (AUROC ≈ 0.5), the bilinear pair operator does (≈ 0.75 and α largest on a+b).
    data = make_interactions(n=800, modalities={"a": 12, "b": 12, "c": 12}, seed=0)
    train, test = _split(data)
    hier = train_model(
        "hierarchical", train, training=FIT, hparams={"pair_op": "lowrank_bilinear"}, seed=0
    )
    early = train_model("early", train, training=FIT, seed=0)
    auc_hier = hier.evaluate(test, train.targets)["y"]["auroc"]
    auc_early = early.evaluate(test, train.targets)["y"]["auroc"]
    assert auc_hier > 0.7
    assert auc_hier > auc_early + 0.1, (auc_hier, auc_early)
    alpha = _mean_alpha(hier, test)
    assert max(alpha, key=alpha.get) == data.truth.pair_names[0] == "a+b", alpha


def test_default_pair_op_weights_the_informative_pair():
    data = make_interactions(n=800, modalities={"a": 8, "b": 8, "c": 8}, seed=0)
    train, test = _split(data)
    fitted = train_model("hierarchical", train, training=FIT, seed=0)
    assert fitted.evaluate(test, train.targets)["y"]["auroc"] > 0.75
    alpha = _mean_alpha(fitted, test)
    assert alpha["a+b"] > 0.5, alpha


def test_trains_with_missing_pairs_and_survival():
    data = make_interactions(n=120, pairs=[("a", "c")], task="survival", missing=0.3, seed=1)
    fitted = train_model(
        "hierarchical", data, training=TrainingConfig(epochs=2, progress=False), seed=0
    )
    alpha = _mean_alpha(fitted, data)
    assert set(alpha) == {"a+b", "a+c", "b+c"}
    # about a fifth of the samples keep fewer than two modalities: α ≡ 0 there
    assert 0.5 < sum(alpha.values()) < 1.0
