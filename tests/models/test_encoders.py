"""Encoders and blocks, and the property that defines each baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.errors import ConfigError, DataError
from polyfuse.models.blocks.mlp import mlp
from polyfuse.models.blocks.pooling import GatedAttentionPool, masked_mean
from polyfuse.models.blocks.time import TimeEncoding
from polyfuse.models.encoders import build_encoder
from polyfuse.models.model import prepare_inputs
from polyfuse.models.registry import create_model

# ------------------------------------------------------------------------------------ blocks


def test_mlp_layernorm_and_snn() -> None:
    net = mlp(5, (8, 8), 3, activation="gelu", dropout=0.1)
    kinds = [type(m) for m in net]
    assert kinds.count(nn.LayerNorm) == 2 and nn.GELU in kinds and nn.Dropout in kinds
    assert net(torch.randn(4, 5)).shape == (4, 3)

    torch.manual_seed(0)
    snn = mlp(400, (300,), 2, activation="selu", dropout=0.2)
    kinds = [type(m) for m in snn]
    assert nn.SELU in kinds and nn.AlphaDropout in kinds and nn.LayerNorm not in kinds
    first = snn[0]
    assert abs(first.weight.std().item() - 1 / math.sqrt(400)) < 0.003  # LeCun normal
    assert torch.all(first.bias == 0)


def test_mlp_rejects_unknown_activation() -> None:
    with pytest.raises(ConfigError, match="did you mean 'relu'"):
        mlp(3, (4,), 1, activation="rleu")


def test_gated_attention_pool_masks_and_empty_rows() -> None:
    torch.manual_seed(0)
    pool = GatedAttentionPool(6, hidden=8)
    tokens = torch.randn(3, 5, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    tokens[~mask] = float("nan")
    pooled, attention = pool(tokens, mask)
    assert torch.isfinite(pooled).all() and torch.isfinite(attention).all()
    torch.testing.assert_close(attention.sum(1), torch.tensor([1.0, 1.0, 0.0]))
    assert torch.all(attention[~mask] == 0)
    assert torch.all(pooled[2] == 0)
    torch.testing.assert_close(pooled[1], tokens[1, 0])
    expected = torch.einsum("n,nd->d", attention[0, :3], tokens[0, :3])
    torch.testing.assert_close(pooled[0], expected)
    # gradients stay finite with an empty row and NaN padding
    tokens.requires_grad_(True)
    pool(tokens, mask)[0].sum().backward()
    assert torch.isfinite(tokens.grad).all()


def test_masked_mean() -> None:
    tokens = torch.tensor([[[1.0], [3.0], [float("nan")]], [[5.0], [7.0], [9.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    torch.testing.assert_close(masked_mean(tokens, mask), torch.tensor([[2.0], [0.0]]))


def test_time_encoding() -> None:
    enc = TimeEncoding(9, max_period=100.0)
    times = torch.tensor([[0.0, 1.5, 47.0]])
    out = enc(times)
    assert out.shape == (1, 3, 9)
    torch.testing.assert_close(out[0, 0, 0:8:2], torch.zeros(4))  # sin(0)
    torch.testing.assert_close(out[0, 0, 1:8:2], torch.ones(4))  # cos(0)
    assert torch.all(out[..., 8] == 0)  # odd dim: zero column
    # the fastest frequency is 1: channel 0 is sin(t)
    torch.testing.assert_close(out[0, :, 0], torch.sin(times[0]))
    # irregular gaps are kept: different times give different codes
    assert not torch.allclose(out[0, 1], out[0, 2])


# ------------------------------------------------------------------------------------ encoders


def test_each_kind_gives_dim_vectors(specs, inputs) -> None:
    prepared = prepare_inputs(inputs, specs)
    for m, spec in specs.items():
        enc = build_encoder(spec, 16, heads=4).eval()
        z = enc(prepared[m])
        assert z.shape == (10, 16), m
        assert torch.isfinite(z).all(), m
        assert torch.all(z[~prepared[m].present] == 0), m


def test_bag_encoder_attention_and_empty_bag(specs, inputs) -> None:
    spec = specs["wsi"]
    b = prepare_inputs(inputs, specs)["wsi"]
    enc = build_encoder(spec, 16).eval()
    z, maps = enc.encode(b)
    attention = maps["attention"]
    assert attention.shape == b.token_mask.shape
    has = b.token_mask.any(1)
    torch.testing.assert_close(attention.sum(1), has.float())
    assert torch.all(attention[~b.token_mask] == 0)
    empty_but_present = b.present & ~has
    assert empty_but_present.any()  # the toy cohort holds a present, empty bag
    assert torch.all(z[empty_but_present] == 0)


def test_sequence_encoder_handles_nan_and_empty(specs, inputs) -> None:
    b = prepare_inputs(inputs, specs)["labs"]
    assert torch.isnan(b.data[b.token_mask]).any()  # NaN inside present sequences
    enc = build_encoder(specs["labs"], 16)
    z = enc(b)
    assert torch.isfinite(z).all()
    z.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)
    # a present sequence with no step gives a finite vector
    empty = ModalityBatch(
        torch.zeros(2, 1, 3),
        torch.tensor([True, False]),
        torch.zeros(2, 1, dtype=torch.bool),
        torch.zeros(2, 1),
    )
    assert torch.isfinite(enc.eval()(empty)).all()


def test_sequence_encoder_missing_differs_from_zero(specs) -> None:
    """The observed indicator lets the model tell a measured 0 from a missing value."""
    enc = build_encoder(specs["labs"], 16).eval()
    mask = torch.ones(1, 2, dtype=torch.bool)
    times = torch.tensor([[0.0, 1.0]])
    zeros = ModalityBatch(torch.zeros(1, 2, 3), torch.tensor([True]), mask, times)
    missing = ModalityBatch(torch.full((1, 2, 3), float("nan")), torch.tensor([True]), mask, times)
    assert not torch.allclose(enc(zeros), enc(missing))


def test_text_encoder_empty_text_and_bad_ids(specs, inputs) -> None:
    b = prepare_inputs(inputs, specs)["report"]
    enc = build_encoder(specs["report"], 16)
    z = enc(b)
    empty = b.present & ~b.token_mask.any(1)
    assert empty.any() and torch.all(z[empty] == 0)
    b.data[b.token_mask] = 64  # out of the vocabulary
    with pytest.raises(DataError, match=r"'report'.*token ids"):
        enc(b)


@pytest.mark.parametrize(
    ("name", "conv", "other"), [("xray", nn.Conv2d, nn.Conv3d), ("ct", nn.Conv3d, nn.Conv2d)]
)
def test_cnn_picks_conv_by_spatial_dims(specs, name, conv, other) -> None:
    enc = build_encoder(specs[name], 8, channels=(4, 8))
    modules = list(enc.modules())
    assert sum(isinstance(m, conv) for m in modules) == 2
    assert not any(isinstance(m, other | nn.modules.batchnorm._BatchNorm) for m in modules)
    assert any(isinstance(m, nn.GroupNorm) for m in modules)


def test_tabular_snn_option(specs) -> None:
    enc = build_encoder(specs["clinical"], 8, tabular="snn", dropout=0.1)
    assert any(isinstance(m, nn.SELU) for m in enc.modules())
    assert any(isinstance(m, nn.AlphaDropout) for m in enc.modules())


def test_encoder_option_errors(specs) -> None:
    with pytest.raises(ConfigError, match="did you mean 'channels'"):
        build_encoder(specs["xray"], 8, chanels=(4,))
    with pytest.raises(ConfigError, match="tabular"):
        build_encoder(specs["clinical"], 8, tabular="xgboost")
    with pytest.raises(ConfigError, match="divisible"):
        build_encoder(specs["labs"], 10, heads=4)


# ------------------------------------------------------------------------------------ baselines


def test_late_fusion_is_mean_of_present_modality_logits(specs, tasks, make_dataset) -> None:
    three = {m: specs[m] for m in ("clinical", "wsi", "report")}
    data = make_dataset(n=9, seed=3, specs=three)
    presence = data.presence.to_numpy()
    i = int(np.flatnonzero(presence.sum(1) == 2)[0])
    inputs = data.batch(np.arange(len(data))).inputs
    torch.manual_seed(0)
    model = create_model("late", three, tasks).eval()
    out = model(inputs)
    have = [m for m, p in zip(three, presence[i], strict=True) if p]
    for t in tasks:
        # by hand: each present modality's own unimodal model, then the plain mean
        per = [create_branch_logits(model, m, inputs, t)[i] for m in have]
        torch.testing.assert_close(out.logits[t][i], (per[0] + per[1]) / 2)
        assert out.aux[f"modality_logits/{t}"].shape == (9, 3, tasks[t].out_dim)
    torch.testing.assert_close(out.aux["weights"][i], torch.tensor(presence[i] / 2.0).float())
    none = presence.sum(1) == 0
    assert none.any() and all(torch.all(out.logits[t][none] == 0) for t in tasks)


def create_branch_logits(model, m, inputs, task) -> torch.Tensor:
    """Logits of the late model's branch for `m`, run as a stand-alone unimodal model."""
    return model.branches[m](inputs).logits[task]


@pytest.mark.parametrize("modality", ["clinical", "xray", "ct", "wsi", "labs", "report"])
def test_unimodal_ignores_other_modalities(specs, tasks, inputs, cloned, garbled, modality):
    torch.manual_seed(0)
    model = create_model("unimodal", specs, tasks, modality=modality).eval()
    base = model(inputs)
    other = garbled(cloned(inputs), "random", seed=5)
    gen = torch.Generator().manual_seed(0)
    for m, b in other.items():
        if m == modality:
            other[m] = inputs[m]
            continue
        b.present = torch.rand(b.present.shape, generator=gen) < 0.5
        if b.data.dtype == torch.long:
            b.data = torch.randint(1, 64, b.data.shape, generator=gen)
        else:
            b.data = torch.randn(b.data.shape, generator=gen)
    out = model(other)
    for t in tasks:
        torch.testing.assert_close(out.logits[t], base.logits[t], atol=0, rtol=0)
    # and a sample lacking the modality gets the learned "absent" prediction
    absent = ~inputs[modality].present
    emb = out.embedding[absent]
    torch.testing.assert_close(emb, emb[:1].expand_as(emb))


def test_unimodal_unknown_modality(specs, tasks) -> None:
    with pytest.raises(ConfigError, match="did you mean 'clinical'"):
        create_model("unimodal", specs, tasks, modality="clinicl")


def test_early_fusion_indicator_width(specs, tasks) -> None:
    model = create_model("early", specs, tasks, dim=8, hidden=(16,))
    assert model.mlp[0].in_features == len(specs) * (8 + 1)
