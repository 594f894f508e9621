"""HEALNet's fast paths give what the plain computation gives (issue 17 item 1).

The model no longer zeroes inputs that have nothing to clear, never builds the feature-dims
tokens (transposed, padded, with Fourier channels) outside a captured graph, normalises each
modality's tokens once for all layers and folds every layer's LayerNorm affine map into its
key/value projection. `naive_logits` below recomputes the model the plain way from the same
weights — inputs zeroed with `where`, tokens materialised and concatenated, each layer's
LayerNorm applied to them, explicit attention — and the tests hold logits and every gradient
within 1e-5 of it, in both WSI layouts, with and without missing samples and padding.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.models.healnet import HEALNet, _Normalised
from polyfuse.models.model import prepare_inputs
from polyfuse.models.registry import create_model

B, FEATURES, INSTANCES, WIDTH, LIMIT = 5, 7, 40, 6, 45
SPECS = {
    "clinical": ModalitySpec("clinical", "tabular", (FEATURES,)),
    "wsi": ModalitySpec("wsi", "bag", (WIDTH,)),
}
TASKS = {"os": TaskSpec("os", "survival", n_bins=4), "response": TaskSpec("response", "binary")}
SMALL = dict(depth=2, num_latents=6, latent_dim=16, cross_dim_head=8, cross_heads=2)
LAYOUTS = {
    "patches": dict(wsi_tokens="patches"),
    "feature_dims": dict(wsi_tokens="feature_dims", max_instances=LIMIT),
}


def build(layout: str, **hparams: Any) -> HEALNet:
    torch.manual_seed(0)
    model = create_model("healnet", SPECS, TASKS, **{**SMALL, **LAYOUTS[layout], **hparams})
    with torch.no_grad():  # LayerNorm affine maps away from their (1, 0) initialisation
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def batch(
    missing: bool, seed: int = 1, size: int = B, instances: int = INSTANCES
) -> dict[str, ModalityBatch]:
    """Values with a non-zero mean; `missing`: absent samples, padding and an empty bag, all
    filled with NaN (which must reach neither outputs nor gradients)."""
    g = torch.Generator().manual_seed(seed)
    clinical = torch.randn(size, FEATURES, generator=g)
    wsi = 3 * torch.randn(size, instances, WIDTH, generator=g) + 2
    clinical_present = torch.ones(size, dtype=torch.bool)
    wsi_present = torch.ones(size, dtype=torch.bool)
    mask = torch.ones(size, instances, dtype=torch.bool)
    if missing:
        clinical_present[1] = False
        wsi_present[2] = False
        mask[0, 25:] = False  # padded instances
        mask[3] = False  # a present sample with an empty bag
        clinical[~clinical_present] = math.nan
        wsi[~mask] = math.nan
        wsi[~wsi_present] = math.nan
    return {
        "clinical": ModalityBatch(clinical, clinical_present),
        "wsi": ModalityBatch(wsi, wsi_present, mask),
    }


# ------------------------------------------------------------------------ the plain way


def fourier(n: int, model: HEALNet) -> Tensor:
    """(n, 2K + 1) Fourier channels of n positions in [−1, 1]; (n, 0) without them."""
    if model.fourier is None:
        return torch.zeros(n, 0)
    p = torch.linspace(-1.0, 1.0, n)
    scales = torch.linspace(1.0, model.fourier.max_freq / 2, model.fourier.num_bands)
    angles = p[:, None] * scales * math.pi
    return torch.cat([angles.sin(), angles.cos(), p[:, None]], dim=-1)


def naive_tokens(model: HEALNet, inputs: dict[str, ModalityBatch]) -> dict[str, tuple]:
    """`(tokens, mask or None, use)` per modality, materialised, inputs zeroed with `where`."""
    clinical, wsi = inputs["clinical"], inputs["wsi"]
    size, instances = wsi.token_mask.shape
    table = torch.where(clinical.present[:, None], clinical.data, 0.0)[:, None, :]
    table = torch.cat([table, fourier(1, model).expand(size, 1, -1)], dim=-1)
    mask = wsi.token_mask & wsi.present[:, None]
    bag = torch.where(mask[..., None], wsi.data, 0.0)
    use = wsi.present & mask.any(dim=1)
    if model.wsi_tokens == "patches":
        return {"clinical": (table, None, clinical.present), "wsi": (bag, mask, use)}
    bag = F.pad(bag, (0, 0, 0, model.max_instances - instances)).transpose(1, 2)
    bag = torch.cat([bag, fourier(WIDTH, model).expand(size, -1, -1)], dim=-1)
    return {"clinical": (table, None, clinical.present), "wsi": (bag, None, use)}


def naive_cross(cross: nn.Module, s: Tensor, x: Tensor, mask: Tensor | None) -> Tensor:
    """PreNorm cross-attention, each step spelled out."""
    attn, h = cross.fn, cross.fn.heads
    latents = F.layer_norm(s, s.shape[-1:], cross.norm.weight, cross.norm.bias)
    norm = cross.norm_context
    context = F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias)
    if mask is not None:
        context = torch.where(mask[..., None], context, 0.0)
    q = attn.to_q(latents).unflatten(-1, (h, -1)).transpose(1, 2)
    k, v = (t.unflatten(-1, (h, -1)).transpose(1, 2) for t in attn.to_kv(context).chunk(2, -1))
    logits = q @ k.transpose(-1, -2) * attn.scale
    if mask is not None:
        logits = logits.masked_fill(~mask[:, None, None, :], torch.finfo(logits.dtype).min)
    weights = logits.softmax(dim=-1)
    if mask is not None:
        weights = torch.where(mask[:, None, None, :], weights, 0.0)
    out = F.leaky_relu(attn.to_out((weights @ v).transpose(1, 2).flatten(-2)), 0.01)
    if mask is not None:
        out = torch.where(mask.any(dim=-1)[:, None, None], out, 0.0)
    return out


def naive_logits(model: HEALNet, inputs: dict[str, ModalityBatch]) -> dict[str, Tensor]:
    tokens = naive_tokens(model, inputs)
    s = model.latents.expand(inputs["wsi"].present.shape[0], -1, -1)
    for index in model.layer_order:
        layer = model.layers[index]
        for m, (x, mask, use) in tokens.items():
            keep = use[:, None, None]
            s = torch.where(keep, s + naive_cross(layer["cross"][m], s, x, mask), s)
            s = torch.where(keep, s + layer["cross_ff"][m](s), s)
    embedding = model.norm(s.mean(dim=1))
    return {t: head(embedding) for t, head in model.heads.items()}


def logits_and_grads(model: nn.Module, logits: dict[str, Tensor]) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(7)
    loss = sum((v * torch.randn(v.shape, generator=g)).sum() for v in logits.values())
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = {f"grad/{n}": p.grad for n, p in model.named_parameters() if p.grad is not None}
    return {**{f"logits/{t}": v.detach() for t, v in logits.items()}, **grads}


# ------------------------------------------------------------------------ the tests


@pytest.mark.parametrize("return_attention", [True, False], ids=["explicit", "sdpa"])
@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_fast_paths_equal_the_plain_computation(layout, missing, return_attention) -> None:
    model = build(layout, return_attention=return_attention)
    assert_matches_plain(model, batch(missing))


def assert_matches_plain(model: HEALNet, inputs: dict[str, ModalityBatch]) -> None:
    fast = logits_and_grads(model, model(inputs).logits)
    plain = logits_and_grads(model, naive_logits(model, inputs))
    assert fast.keys() == plain.keys()
    assert len(plain) == 2 + sum(1 for _ in model.parameters())  # every weight has a gradient
    for name, value in plain.items():
        assert torch.isfinite(fast[name]).all(), name
        torch.testing.assert_close(fast[name], value, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_large_offsets_take_the_plain_path(layout: str) -> None:
    """Normalising inside the product rounds with a token's |mean| / std: a bag of features
    far from 0 relative to their spread is normalised the plain way, and stays within 1e-5."""
    # without Fourier channels or padding, a feature-dims token is only the bag's values
    plain_tokens = dict(fourier_encode_data=False, max_instances=INSTANCES)
    model = build(layout, **({} if layout == "patches" else plain_tokens))
    inputs = batch(missing=False)
    wsi = inputs["wsi"]
    assert not isinstance(model._normalised("wsi", wsi.data), _Normalised)  # the fast path
    shifted = 0.1 * (wsi.data - 2) / 3 + 10  # |mean| / std = 100
    assert isinstance(model._normalised("wsi", shifted), _Normalised)
    inputs["wsi"] = ModalityBatch(shifted, wsi.present, wsi.token_mask)
    assert_matches_plain(model, inputs)


@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
def test_the_callers_tensors_are_left_alone(missing: bool) -> None:
    inputs = batch(missing)
    before = {m: b.data.clone() for m, b in inputs.items()}
    model = build("feature_dims")
    model(inputs).logits["os"].sum().backward()
    for m, b in inputs.items():
        torch.testing.assert_close(b.data, before[m], equal_nan=True, rtol=0, atol=0)


def test_nothing_to_clear_means_no_copy() -> None:
    inputs = batch(missing=False)
    prepared = prepare_inputs(inputs, SPECS)
    assert all(prepared[m].data is inputs[m].data for m in SPECS)
    prepared = prepare_inputs(batch(missing=True), SPECS)  # absent rows, padding: zeroed
    assert not prepared["wsi"].data.isnan().any() and not prepared["clinical"].data.isnan().any()


class _Logits(nn.Module):
    """The model on plain tensors, as a graph is captured (`polyfuse.inference.export`)."""

    def __init__(self, model: HEALNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, *tensors: Tensor) -> Tensor:
        clinical, clinical_present, wsi, wsi_present, mask = tensors
        inputs = {
            "clinical": ModalityBatch(clinical, clinical_present),
            "wsi": ModalityBatch(wsi, wsi_present, mask),
        }
        return self.model(inputs).logits["os"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_traced_graph_equals_the_fast_paths(layout: str) -> None:
    """Tracing takes the plain path: no value-dependent branch, no loop over the batch or a
    bag's instances, so that the graph serves batches of other sizes and instance counts."""
    model = build(layout)
    complete, missing = batch(missing=False), batch(True, seed=2, size=7, instances=33)

    def flat(inputs: dict[str, ModalityBatch]) -> tuple[Tensor, ...]:
        c, w = inputs["clinical"], inputs["wsi"]
        return c.data, c.present, w.data, w.present, w.token_mask

    with torch.no_grad():
        traced = torch.jit.trace(_Logits(model), flat(complete), check_trace=False, strict=False)
        for inputs in (complete, missing):  # traced on a complete batch, run on both
            expected = model(inputs).logits["os"]
            torch.testing.assert_close(traced(*flat(inputs)), expected, atol=1e-5, rtol=1e-5)
