"""HEALNet's `bag_positions`: the reference's patch layout, positions over each bag's own
instances (issue 17, item 1).

With `wsi_tokens="patches"`, each instance token gets the 2K + 1 Fourier channels of its
position linspace(−1, 1, n_b) among the n_b real instances of its bag. The tests pin the
channels against the reference's formula computed here independently, the model against a
naive forward on materialised tokens, that a bag's output does not depend on the other bags
of its batch while it does depend on the order of its own instances, and the refusals.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from test_healnet_speedups import _Logits  # the model on plain tensors, as for export
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError
from polyfuse.models import healnet
from polyfuse.models.healnet import HEALNet, _instance_positions, _Normalised
from polyfuse.models.registry import create_model

FEATURES, WIDTH = 5, 6
SPECS = {
    "clinical": ModalitySpec("clinical", "tabular", (FEATURES,)),
    "wsi": ModalitySpec("wsi", "bag", (WIDTH,)),
}
TASKS = {"os": TaskSpec("os", "survival", n_bins=4)}
# K = 3 bands with max_freq 6: scales 1, 2, 3 (the tuned K = 2, max_freq 2 gives two equal ones)
SMALL = dict(depth=2, num_latents=6, latent_dim=16, cross_dim_head=8, cross_heads=2)
FOURIER = dict(num_freq_bands=3, max_freq=6.0)


def build(**hparams: Any) -> HEALNet:
    torch.manual_seed(0)
    model = create_model("healnet", SPECS, TASKS, **{**SMALL, **FOURIER, **hparams})
    with torch.no_grad():  # LayerNorm affine maps away from their (1, 0) initialisation
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def batch(lengths: list[int], seed: int = 1, pad_to: int | None = None) -> dict[str, Any]:
    """Bags of the given real lengths, padded (with NaN) to the longest or to `pad_to`."""
    g = torch.Generator().manual_seed(seed)
    size, longest = len(lengths), pad_to or max(lengths)
    clinical = torch.randn(size, FEATURES, generator=g)
    wsi = torch.randn(size, longest, WIDTH, generator=g) + 0.5
    mask = torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]
    wsi[~mask] = math.nan
    present = torch.ones(size, dtype=torch.bool)
    return {
        "clinical": ModalityBatch(clinical, present),
        "wsi": ModalityBatch(wsi, present.clone(), mask),
    }


def logits(model: nn.Module, inputs: dict[str, ModalityBatch]) -> Tensor:
    return model(inputs).logits["os"]


# ------------------------------------------------------------------------ the reference's formula


def reference_channels(n: int, max_freq: float, bands: int) -> Tensor:
    """(n, 2K + 1): [sin(π p f_k)]_k, [cos(π p f_k)]_k, p for p = −1 + 2i/(n − 1) and
    f_k = 1 + k (max_freq/2 − 1)/(K − 1), in float64, as the reference's `fourier_encode`."""
    p = torch.tensor([-1.0 + 2.0 * i / (n - 1) if n > 1 else -1.0 for i in range(n)])
    p = p.double()
    f = torch.tensor([1.0 + k * (max_freq / 2 - 1.0) / (bands - 1) for k in range(bands)])
    angles = math.pi * p[:, None] * f.double()[None, :]
    return torch.cat([angles.sin(), angles.cos(), p[:, None]], dim=1).float()


def test_appended_channels_are_the_reference_formula_over_each_bags_own_instances() -> None:
    """Tiny bags of 4, 3 (padded) and 1 instances: each bag's real instances get the channels
    of positions linspace(−1, 1, n_b) over its own n_b, padding gets zeros."""
    model = build(bag_positions=True)
    inputs = batch([4, 3, 1])
    wsi = inputs["wsi"]
    channels = model._instance_fourier(wsi.data, wsi.token_mask)
    assert channels.shape == (3, 4, 2 * 3 + 1)
    for b, n in enumerate([4, 3, 1]):
        expected = reference_channels(n, 6.0, 3)
        torch.testing.assert_close(channels[b, :n], expected, atol=1e-6, rtol=0)
        assert (channels[b, n:] == 0).all()
    assert model.token_dims["wsi"] == WIDTH + 7
    assert build().token_dims["wsi"] == WIDTH  # the default: no positions


def test_positions_are_linspace_over_the_real_instances_in_their_order() -> None:
    """Real instances need not be a prefix: position i goes to the i-th real instance."""
    mask = torch.tensor(
        [
            [True, False, True, True, False, True],  # 4 real, holes between them
            [False, False, False, False, False, False],  # an empty bag
            [False, False, True, False, False, False],  # one instance: −1, as linspace
            [True, True, True, True, True, True],
        ]
    )
    pos = _instance_positions(mask, torch.float32)
    for b in range(mask.shape[0]):
        n = int(mask[b].sum())
        torch.testing.assert_close(pos[b, mask[b]], torch.linspace(-1, 1, n), atol=1e-7, rtol=0)
        assert (pos[b, ~mask[b]] == 0).all()
    for n in (2, 7, 33, 4000):  # the benchmark's 4,000 patches included
        full = torch.ones(1, n, dtype=torch.bool)
        torch.testing.assert_close(
            _instance_positions(full, torch.float32)[0], torch.linspace(-1, 1, n), atol=1e-7, rtol=0
        )


# ------------------------------------------------------------------------ the model's use of them


def naive_logits(model: HEALNet, inputs: dict[str, ModalityBatch]) -> Tensor:
    """The forward on materialised tokens: [instance, reference channels of its position in
    its bag], each layer's LayerNorm, explicit masked attention (no self-attention: SMALL)."""
    clinical, wsi = inputs["clinical"], inputs["wsi"]
    mask = wsi.token_mask & wsi.present[:, None]
    size = mask.shape[0]
    bands, max_freq = model.fourier.num_bands, model.fourier.max_freq
    table = reference_channels(1, max_freq, bands).expand(size, 1, -1)
    table = torch.cat([clinical.data[:, None, :], table], dim=-1)
    bag = torch.where(mask[..., None], wsi.data, 0.0)
    pos = torch.zeros(*mask.shape, 2 * bands + 1)
    for b in range(size):
        pos[b, mask[b]] = reference_channels(int(mask[b].sum()), max_freq, bands)
    tokens = {"clinical": (table, None), "wsi": (torch.cat([bag, pos], dim=-1), mask)}
    s = model.latents.expand(size, -1, -1)
    for index in model.layer_order:
        layer = model.layers[index]
        for m, (x, keep) in tokens.items():
            cross = layer["cross"][m]
            s = s + naive_cross(cross, s, x, keep)
            s = s + layer["cross_ff"][m](s)
    return model.heads["os"](model.norm(s.mean(dim=1)))


def naive_cross(cross: nn.Module, s: Tensor, x: Tensor, mask: Tensor | None) -> Tensor:
    attn, h = cross.fn, cross.fn.heads
    latents = F.layer_norm(s, s.shape[-1:], cross.norm.weight, cross.norm.bias)
    norm = cross.norm_context
    context = F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias)
    q = attn.to_q(latents).unflatten(-1, (h, -1)).transpose(1, 2)
    k, v = (t.unflatten(-1, (h, -1)).transpose(1, 2) for t in attn.to_kv(context).chunk(2, -1))
    scores = q @ k.transpose(-1, -2) * attn.scale
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], -math.inf)
    weights = scores.softmax(dim=-1)
    return F.leaky_relu(attn.to_out((weights @ v).transpose(1, 2).flatten(-2)), 0.01)


def grads(model: nn.Module, out: Tensor) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(7)
    model.zero_grad(set_to_none=True)
    (out * torch.randn(out.shape, generator=g)).sum().backward()
    found = {f"grad/{n}": p.grad for n, p in model.named_parameters() if p.grad is not None}
    return {"logits": out.detach(), **found}


@pytest.mark.parametrize("plain", [False, True], ids=["fast path", "plain path"])
def test_model_equals_a_naive_forward_on_materialised_tokens(plain: bool, monkeypatch) -> None:
    """Logits and every gradient within 1e-5 of the naive forward, on the fast path (tokens
    never built) and on the plain one (materialised, as for a bag of large offsets: forced
    here, since bounded position channels keep a token's |mean| / std small)."""
    if plain:
        monkeypatch.setattr(healnet, "_MAX_OFFSET", -1.0)
    model = build(bag_positions=True)
    inputs = batch([5, 3, 7, 1])
    wsi = inputs["wsi"]
    clean = torch.where(wsi.token_mask[..., None], wsi.data, 0.0)
    assert isinstance(model._normalised("wsi", clean, wsi.token_mask), _Normalised) == plain
    fast = grads(model, logits(model, inputs))
    naive = grads(model, naive_logits(model, inputs))
    assert fast.keys() == naive.keys()
    assert len(naive) == 1 + sum(1 for _ in model.parameters())
    for name, value in naive.items():
        torch.testing.assert_close(fast[name], value, atol=1e-5, rtol=1e-5, msg=name)


def test_a_traced_graph_equals_the_fast_path() -> None:
    """Tracing takes the plain path; positions are computed without branching on values, so
    a graph traced on one batch serves bags of other lengths."""
    model = build(bag_positions=True)

    def flat(inputs: dict[str, ModalityBatch]) -> tuple[Tensor, ...]:
        c, w = inputs["clinical"], inputs["wsi"]
        return c.data, c.present, w.data, w.present, w.token_mask

    with torch.no_grad():
        traced = torch.jit.trace(
            _Logits(model), flat(batch([4, 4, 4])), check_trace=False, strict=False
        )
        for inputs in (batch([4, 4, 4]), batch([6, 2, 5, 1], seed=3)):
            expected = logits(model, inputs)
            torch.testing.assert_close(traced(*flat(inputs)), expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------ batch independence, order


def test_a_bags_output_does_not_depend_on_the_other_bags_of_its_batch() -> None:
    """Sample 0 (5 instances) gets the same output whether sample 1's bag has 2 or 9
    instances (so the padded length changes too), and alone in its batch."""
    model = build(bag_positions=True)
    short, long = batch([5, 2], seed=1), batch([5, 9], seed=1, pad_to=9)
    for key in ("clinical", "wsi"):  # sample 0 identical in both batches
        a, b = short[key], long[key]
        n = a.data.shape[1] if key == "wsi" else None
        torch.testing.assert_close(a.data[0, :n], b.data[0, :n], equal_nan=True)
    with torch.no_grad():
        alone = logits(model, {m: one(b, 0) for m, b in short.items()})
        torch.testing.assert_close(logits(model, short)[0], alone[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(logits(model, long)[0], alone[0], atol=1e-6, rtol=0)


def one(b: ModalityBatch, i: int) -> ModalityBatch:
    mask = None if b.token_mask is None else b.token_mask[i : i + 1]
    return ModalityBatch(b.data[i : i + 1], b.present[i : i + 1], mask)


def reordered(inputs: dict[str, ModalityBatch], n: int) -> dict[str, ModalityBatch]:
    """Sample 0's first n (real) instances in reverse order, everything else unchanged."""
    wsi = inputs["wsi"]
    data = wsi.data.clone()
    data[0, :n] = wsi.data[0, :n].flip(0)
    return {**inputs, "wsi": ModalityBatch(data, wsi.present, wsi.token_mask)}


def test_positions_make_the_order_of_a_bags_instances_matter() -> None:
    """Reversing bag 0's instances changes its output with `bag_positions` (and leaves the
    other sample alone); without it, the instances are a set and nothing changes."""
    inputs = batch([5, 3])
    flipped = reordered(inputs, 5)
    with torch.no_grad():
        model = build(bag_positions=True)
        before, after = logits(model, inputs), logits(model, flipped)
        assert (before[0] - after[0]).abs().max() > 1e-4
        torch.testing.assert_close(before[1], after[1], atol=1e-6, rtol=0)
        unordered = build()
        before, after = logits(unordered, inputs), logits(unordered, flipped)
        torch.testing.assert_close(before, after, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------ refusals


def test_meaningless_combinations_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"bag_positions.*wsi_tokens='patches'"):
        build(bag_positions=True, wsi_tokens="feature_dims", max_instances=8)
    with pytest.raises(ConfigError, match=r"bag_positions.*fourier_encode_data=True"):
        build(bag_positions=True, fourier_encode_data=False)
    build(bag_positions=False, fourier_encode_data=False)  # the default stays valid
