"""The shared attention, feed-forward and Fourier blocks, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from polyfuse.errors import ConfigError
from polyfuse.models.blocks.attention import Attention, attend
from polyfuse.models.blocks.feedforward import FeedForward, GatedActivation, PreNorm
from polyfuse.models.blocks.fourier import FourierEncoding, fourier_encode

# ------------------------------------------------------------------------------ attention


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries (3, 4, 8), context (3, 5, 6) and a mask: sample 0 full, 1 partial, 2 empty."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, 8, generator=gen)
    context = torch.randn(3, 5, 6, generator=gen)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    return x, context, mask


def _by_hand(attn: Attention, x, context, mask, temperature: float) -> tuple[torch.Tensor, ...]:
    """Attention written out with plain loops over samples and heads (no padding tricks)."""
    h = attn.heads
    inner = attn.to_q.out_features
    e = inner // h
    outs, weights = [], []
    for b in range(x.shape[0]):
        real = context[b][mask[b]]  # only the real tokens
        w_b = torch.zeros(h, x.shape[1], context.shape[1])
        heads_out = []
        q = x[b] @ attn.to_q.weight.T
        kv = real @ attn.to_kv.weight.T
        k, v = kv[:, :inner], kv[:, inner:]
        for i in range(h):
            qi, ki, vi = (t[:, i * e : (i + 1) * e] for t in (q, k, v))
            if len(real) == 0:
                heads_out.append(torch.zeros(x.shape[1], e))
                continue
            a = torch.softmax(qi @ ki.T / math.sqrt(e) / temperature, dim=-1)
            w_b[i][:, mask[b]] = a
            heads_out.append(a @ vi)
        out = torch.cat(heads_out, dim=-1) @ attn.to_out.weight.T + attn.to_out.bias
        out = F.leaky_relu(out, 0.01)
        outs.append(out if len(real) else torch.zeros_like(out))
        weights.append(w_b)
    return torch.stack(outs), torch.stack(weights)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_attention_matches_hand_computation(temperature: float) -> None:
    torch.manual_seed(0)
    attn = Attention(8, 6, heads=2, dim_head=3, temperature=temperature, leaky_relu=True).eval()
    x, context, mask = _inputs()
    want_out, want_w = _by_hand(attn, x, context, mask, temperature)
    out, w = attn(x, context, mask=mask, return_weights=True)
    torch.testing.assert_close(w, want_w, atol=1e-6, rtol=0)
    torch.testing.assert_close(out, want_out, atol=1e-6, rtol=0)


def test_weights_are_probabilities_after_temperature() -> None:
    torch.manual_seed(0)
    attn = Attention(8, 6, heads=2, dim_head=3, temperature=0.5).eval()
    x, context, mask = _inputs()
    _, w = attn(x, context, mask=mask, return_weights=True)
    assert w.shape == (3, 2, 4, 5)
    sums = w.sum(-1)
    torch.testing.assert_close(sums[:2], torch.ones_like(sums[:2]))  # rows sum to 1 over real keys
    assert (w[1][..., ~mask[1]] == 0).all()  # padding gets exactly 0
    assert (w[2] == 0).all()  # no real key: all zero
    # τ = 0.5 is the τ = 1 softmax of doubled logits: sharper, so a larger maximum weight
    plain = Attention(8, 6, heads=2, dim_head=3, temperature=1.0).eval()
    plain.load_state_dict(attn.state_dict())
    _, w1 = plain(x, context, mask=mask, return_weights=True)
    assert (w[:2].amax(-1) >= w1[:2].amax(-1) - 1e-7).all()
    assert not torch.allclose(w[:2], w1[:2])


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("leaky_relu", [True, False])
def test_sdpa_path_equals_explicit_path(masked: bool, leaky_relu: bool) -> None:
    torch.manual_seed(0)
    attn = Attention(8, 6, heads=2, dim_head=3, temperature=0.5, leaky_relu=leaky_relu).eval()
    x, context, mask = _inputs()
    mask = mask if masked else None
    fast, none = attn(x, context, mask=mask)
    slow, weights = attn(x, context, mask=mask, return_weights=True)
    assert none is None and weights is not None
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=0)
    # and the functional core on its own, heads laid out (B, h, N, e)
    q, k, v = (torch.randn(3, 2, n, 4) for n in (4, 5, 5))
    for key_mask in (mask, None):
        a, _ = attend(q, k, v, key_mask=key_mask, scale=0.7)
        b, _ = attend(q, k, v, key_mask=key_mask, scale=0.7, return_weights=True)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_self_attention_defaults_context_to_queries() -> None:
    torch.manual_seed(0)
    attn = Attention(8, heads=2, dim_head=4).eval()
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(attn(x)[0], attn(x, x)[0])


@pytest.mark.parametrize("weights", [True, False])
def test_all_masked_query_is_zero_and_padding_is_ignored(weights: bool) -> None:
    torch.manual_seed(0)
    attn = Attention(8, 6, heads=2, dim_head=3, leaky_relu=True).train()
    x, context, mask = _inputs()
    garbage = context.clone()
    garbage[~mask] = float("nan")
    x.requires_grad_(True)
    out, _ = attn(x, garbage, mask=mask, return_weights=weights)
    assert torch.isfinite(out).all()
    assert (out[2] == 0).all()  # nothing to attend to: exactly 0, not the output bias
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in attn.parameters() if p.grad is not None)
    clean, _ = attn.eval()(x, context, mask=mask, return_weights=weights)
    dirty, _ = attn(x, garbage, mask=mask, return_weights=weights)
    torch.testing.assert_close(clean, dirty)


def test_attention_dropout_acts_only_in_training() -> None:
    torch.manual_seed(0)
    attn = Attention(8, 6, heads=2, dim_head=3, dropout=0.5)
    x, context, mask = _inputs()
    a = attn.eval()(x, context, mask=mask)[0]
    torch.testing.assert_close(a, attn(x, context, mask=mask)[0])
    attn.train()
    out, w = attn(x, context, mask=mask, return_weights=True)
    sums = w.sum(-1)[:2]  # returned weights are the probabilities before dropout
    torch.testing.assert_close(sums, torch.ones_like(sums))
    assert not torch.allclose(out, a)


def test_attention_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="temperature"):
        Attention(8, temperature=0.0)
    with pytest.raises(ConfigError, match="heads"):
        Attention(8, heads=0)
    with pytest.raises(ConfigError, match="dropout"):
        Attention(8, dropout=1.0)


# ------------------------------------------------------------------------------ feed-forward


@pytest.mark.parametrize("gate", ["gelu", "selu"])
def test_feedforward_by_hand_and_parameter_count(gate: str) -> None:
    torch.manual_seed(0)
    d, mult = 6, 4
    ff = FeedForward(d, mult=mult, gate=gate).eval()
    # d·2md + 2md (W_1, b_1) + md·d + d (W_2, b_2): the per-FF count of methods.md §1(h)
    assert sum(p.numel() for p in ff.parameters()) == d * 8 * d + 8 * d + 4 * d * d + d
    x = torch.randn(2, 3, d)
    first, last = ff.net[0], ff.net[2]
    hidden = x @ first.weight.T + first.bias
    a, g = hidden[..., : mult * d], hidden[..., mult * d :]
    act = F.gelu(g) if gate == "gelu" else F.selu(g)
    torch.testing.assert_close(ff(x), (a * act) @ last.weight.T + last.bias)


def test_gated_activation_rejects_unknown_gate() -> None:
    with pytest.raises(ConfigError, match="gate"):
        GatedActivation("tanh")  # type: ignore[arg-type]


def test_prenorm_normalises_query_and_context() -> None:
    torch.manual_seed(0)
    attn = Attention(8, 6, heads=1, dim_head=4).eval()
    block = PreNorm(8, attn, context_dim=6).eval()
    x, context = torch.randn(2, 3, 8), torch.randn(2, 5, 6)
    want = attn(F.layer_norm(x, (8,)), F.layer_norm(context, (6,)))[0]
    torch.testing.assert_close(block(x, context)[0], want)  # LayerNorms start as identity affine
    ff_block = PreNorm(8, FeedForward(8))
    torch.testing.assert_close(ff_block(x), ff_block.fn(F.layer_norm(x, (8,))))


# ------------------------------------------------------------------------------ Fourier


def test_fourier_encode_by_hand() -> None:
    # K = 2 bands, max_freq = 4: scales linspace(1, 2, 2) = [1, 2]
    p = torch.tensor([-1.0, 0.25])
    got = fourier_encode(p, max_freq=4.0, num_bands=2)
    for i, v in enumerate(p.tolist()):
        want = [
            math.sin(math.pi * v),
            math.sin(2 * math.pi * v),
            math.cos(math.pi * v),
            math.cos(2 * math.pi * v),
            v,
        ]
        torch.testing.assert_close(got[i], torch.tensor(want), atol=1e-6, rtol=0)


def test_fourier_grid_by_hand() -> None:
    enc = FourierEncoding(max_freq=4.0, num_bands=2)
    grid = enc((2, 3))
    assert grid.shape == (2, 3, 2 * 5) and enc.channels(2) == 10
    rows, cols = [-1.0, 1.0], [-1.0, 0.0, 1.0]  # linspace(-1, 1, s) per axis

    def one(v: float) -> list[float]:
        s = [math.sin(math.pi * f * v) for f in (1, 2)]
        c = [math.cos(math.pi * f * v) for f in (1, 2)]
        return s + c + [v]

    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            want = torch.tensor(one(r) + one(c))  # axis by axis: [axis 0 (5), axis 1 (5)]
            torch.testing.assert_close(grid[i, j], want, atol=1e-6, rtol=0)


def test_fourier_tuned_setting_has_identical_bands() -> None:
    # max_freq = 2, K = 2 (every tuned HEALNet config): scales [1, 1], two identical bands
    out = FourierEncoding(max_freq=2.0, num_bands=2)((5,))
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 2], out[:, 3])


def test_fourier_cache_returns_the_same_tensor() -> None:
    enc = FourierEncoding(max_freq=10.0, num_bands=3)
    a = enc((4, 4))
    assert enc((4, 4)) is a
    assert enc([4, 4], device="cpu") is a
    b = enc((4, 4), dtype=torch.float64)
    assert b is not a and b.dtype == torch.float64
    assert enc((4, 5)) is not a
    assert len(enc.state_dict()) == 0  # a cache, not saved state


def test_fourier_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="num_freq_bands"):
        FourierEncoding(num_bands=0)
    with pytest.raises(ConfigError, match="max_freq"):
        FourierEncoding(max_freq=0.0)
