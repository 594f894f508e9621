"""HEALNet: Hybrid Early-fusion Attention Learning Network.

Hemker, Simidjievski, Jamnik. "HEALNet: Multimodal Fusion for Heterogeneous Biomedical Data".
NeurIPS 2024, arXiv 2311.09115. Reference code: konst-int-i/healnet@90459b6 (a derivative of
lucidrains' perceiver-pytorch). Specification: `reference/methods.md` §1.

One learned latent array S (L × d) is shared by all modalities. Over `depth` fusion layers it is
updated modality by modality, in the fixed order of `specs`, by that modality's own
cross-attention over its raw tokens and a feed-forward block:

    S ← S + CrossAttn_{ℓ,m}(LN(S), LN_m(X_m))        queries from S, keys/values from X_m
    S ← S + FF_{ℓ,m}(LN(S))
    S ← S + SelfAttn_ℓ(LN(S)); S ← S + FF_ℓ(LN(S))   optional, after each modality's update

    prediction = heads(LN(mean_L S))

X_m are raw inputs, not learned encodings: each modality's channels plus Fourier positional
channels over its spatial axes (`blocks/fourier.py`). Attention is temperature-scaled
(τ = 0.5) and followed by a LeakyReLU (`blocks/attention.py`). The L1 regulariser and the
discrete-time survival NLL live in the training engine (`TrainingConfig.l1`, `tasks/`).

Missing modalities (per sample). An absent modality's update is *skipped*: with present_m the
per-sample presence, S ← where(present_m, S + Δ_m(S), S), for the cross-attention, its FF and
the self-attention in its slot. Every step normalises per token (LayerNorm, never batch
statistics), so a sample whose modality m is absent gets exactly the output of the same model
without m. A present token modality with no real token (an empty bag) is skipped alike: with
nothing to attend to there is no update.

Raw tokens per modality kind (choices where the paper covers only omics and WSI features):

* tabular (B, F): one token of F channels (`tabular_as_tokens=False`, the default: the layout of
  the reference's main config and its tutorial, "because positional encodings add noise"; its
  attention is trivially 1) or F tokens of one channel (`True`: per-feature attention maps).
  Either way one spatial axis (of size 1 or F) gets Fourier channels, as in the reference.
* image (B, C, H, W) / (B, C, D, H, W): H·W(·D) tokens of C channels + Fourier channels over the
  2 or 3 spatial axes.
* bag (B, N, D): N tokens of D channels, padding masked, no positional channels (instances are
  an unordered set, and positions over a padded length would depend on the batch). The
  reference's WSI layout (tokens = feature dims, channels = patches zero-padded to the cohort
  maximum) is `wsi_tokens="feature_dims"` with `max_instances`; its other layout (patches as
  tokens + Fourier channels over the patch axis) is `bag_positions=True`, with positions over
  each bag's own instances.
* sequence (B, T, C): T tokens of [values, observed] (NaN = not measured, as in the sequence
  encoder) + `time_channels` sinusoidal channels of the observation times (`blocks/time.py`),
  batch-independent, unlike positions over the padded length.
* text (B, N) ids: the one learned input map, `nn.Embedding(vocab, text_dim)` (ids have no
  numeric meaning to attend to), + time channels of the token index.

Code-vs-intent choices (§1(j)); each is a flag and the default follows the paper's intent:

1. `per_sample_missing=True`: masked per-sample updates. False: the code's batch-level
   semantics, where a modality is skipped only when absent from the whole batch (absent rows
   are then updated from their zero fill).
2. `self_attn_on_missing=False`: the latent self-attention in an absent modality's slot is
   skipped too ("skip the update step"). True reproduces the code with `verbose=False`, where it
   still runs (then an absent modality is no longer equivalent to a model without it).
3. `tabular_as_tokens`: the tabular layout, above.
4. `wsi_tokens="patches"`: instances are tokens; "feature_dims" is the code's layout (without
   its stale-buffer extraction bug, which belongs to feature extraction, not to the model).
   `bag_positions=False`: patch tokens carry no positions. True reproduces the code's patch
   layout (a bag (B, patches, features) with one spatial axis): each instance token gets the
   2K + 1 Fourier channels of its position p = linspace(−1, 1, n_b) among the n_b real
   instances of its own bag b, in their order. Padding gets none and stays masked, so a
   bag's tokens do not depend on the other bags of the batch; bags of equal size get the
   code's positions exactly. It needs `wsi_tokens="patches"` and `fourier_encode_data=True`.
5. `weight_tie_layers`: the code's meaning (its docstring says the opposite). True: layer 0 has
   its own weights and layers 1..depth−1 share one set, in which each modality keeps its own
   cross-attention while one cross-FF is shared by all modalities (the reference's `cache_fn`).
6. `temperature=0.5`, for cross- and self-attention alike, as in the code.
7. `attn_leaky_relu=True`: LeakyReLU(0.01) on every attention output, as in the code.
8. L1 with the 1/16 NLL scaling and 9. a real deep copy when restoring the best weights belong
   to training: `HEALNET_TRAINING` holds per-cohort training settings with the L1 strength
   already multiplied by 16 (Adam is invariant to the scale of the loss, so NLL/16 + λ|θ| trains
   like NLL + 16λ|θ|), and the engine's `BestWeights` deep-copies.

One more choice of the code kept as a flag: `self_attn_per_modality=True` runs the latent
self-attention after each modality's update (inside the modality loop, as the code does and as
the name `self_per_cross_attn` says); False runs it once per layer, Perceiver-style. Any number
of self-attention blocks works (the code fails for `self_per_cross_attn` ≥ 2).

Inspection: `aux["attention/layer{i}/{modality}"]` (i from 0) is the cross-attention of layer i
over that modality's tokens, (B, cross_heads, num_latents, tokens), per head (not averaged), the
softmax probabilities after temperature and before dropout; rows sum to 1 over real tokens, are
0 on padding, and are all 0 for a sample whose update was skipped.

Speed (issue 17; `benchmarks/healnet_reference.py`). Every layer's cross-attention over a
modality normalises the same tokens, so x̂ (LayerNorm without its affine map) is computed once
and each layer's γ, β are folded into its key/value weights (to_kv(x̂ ⊙ γ + β) =
x̂ (W diag γ)ᵀ + W β), all layers in one product. A bag is never normalised as a tensor: per
token mean and 1/std are computed from the bag as it is and applied inside that product, so
the feature-dims tokens are never transposed, padded or concatenated with their Fourier
channels (nor, under `bag_positions`, the instance tokens with theirs). Outputs and gradients
stay within 1e-5 of the plain computation (`tests/models/test_healnet_speedups.py`,
`tests/models/test_healnet_positions.py`); a bag whose tokens have |mean| > 4·std, where that
rounding would grow, and a graph being captured for export take the plain path.

Defaults: the settings shared by the four tuned configs of §1(f) (one cross head, no
self-attention, SELU gates, K = 2 bands with max_freq 2, untied weights) at a size near the tuned
BRCA/UCEC ones. `preset=` loads a tuned cohort ("blca", "brca", "kirp", "ucec") or "reference",
the reference constructor's defaults; explicit keywords override the preset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError, DataError
from polyfuse.models.blocks.attention import Attention
from polyfuse.models.blocks.feedforward import FeedForward, PreNorm
from polyfuse.models.blocks.fourier import FourierEncoding, fourier_encode
from polyfuse.models.blocks.masking import where_present, with_observed, zero_absent
from polyfuse.models.blocks.time import TimeEncoding, positions
from polyfuse.models.blocks.weight_tying import tied_layers
from polyfuse.models.checks import check_at_least, check_choices
from polyfuse.models.model import (
    MultimodalModel,
    build_heads,
    capturing_graph,
    check_token_ids,
    unknown_kind,
)
from polyfuse.models.presets import preset_training, with_presets
from polyfuse.models.registry import register_model
from polyfuse.search_space import Float, Int

_SHARED_TUNED: dict[str, Any] = dict(
    num_freq_bands=2,
    max_freq=2.0,
    cross_heads=1,
    latent_heads=8,
    self_per_cross_attn=0,
    weight_tie_layers=False,
    snn=True,
)

# Tuned per cohort: konst-int-i/healnet@90459b6:config/best_hyperparams.yml (methods.md §1(f)).
HEALNET_PRESETS: dict[str, dict[str, Any]] = {
    "blca": dict(
        _SHARED_TUNED,
        depth=2,
        num_latents=25,
        latent_dim=119,
        cross_dim_head=16,
        latent_dim_head=127,
        attn_dropout=0.0830,
        ff_dropout=0.4733,
    ),
    "brca": dict(
        _SHARED_TUNED,
        depth=2,
        num_latents=17,
        latent_dim=126,
        cross_dim_head=63,
        latent_dim_head=20,
        attn_dropout=0.4553,
        ff_dropout=0.3647,
    ),
    "kirp": dict(
        _SHARED_TUNED,
        depth=5,
        num_latents=17,
        latent_dim=62,
        cross_dim_head=27,
        latent_dim_head=113,
        attn_dropout=0.3179,
        ff_dropout=0.0474,
    ),
    "ucec": dict(
        _SHARED_TUNED,
        depth=2,
        num_latents=16,
        latent_dim=65,
        cross_dim_head=103,
        latent_dim_head=51,
        attn_dropout=0.2488,
        ff_dropout=0.0571,
    ),
    # The reference constructor's defaults (methods.md §1(b)).
    "reference": dict(
        depth=3,
        num_freq_bands=2,
        max_freq=10.0,
        num_latents=128,
        latent_dim=128,
        cross_heads=8,
        latent_heads=8,
        cross_dim_head=64,
        latent_dim_head=64,
        attn_dropout=0.0,
        ff_dropout=0.0,
        weight_tie_layers=False,
        fourier_encode_data=True,
        self_per_cross_attn=1,
        snn=True,
    ),
}

# Training settings of the tuned runs (config/main_gpu.yml, best_hyperparams.yml), as
# `TrainingConfig` fields (Adam: no weight decay). `l1` is 16 × the tuned value: the code
# back-propagates NLL/16 + l1·Σ|θ|, which Adam (invariant to the loss scale) trains like
# NLL + 16·l1·Σ|θ|. The schedule is the code's OneCycleLR with max_lr 0.008, stepped per
# batch over 50 epochs (OneCycle sets the learning rate itself; the code's Adam lr 0.00777 is
# overridden). Not reproduced by the engine: the 5 × random 70/15/15 splits.
_TRAINING = dict(
    lr=0.008,
    lr_schedule="onecycle",
    weight_decay=0.0,
    batch_size=4,
    epochs=50,
    patience=5,
    alpha=0.4,
)
HEALNET_TRAINING: dict[str, dict[str, Any]] = {
    cohort: dict(_TRAINING, class_weights="inverse", l1=16 * l1)
    for cohort, l1 in {
        "blca": 1.165e-5,
        "brca": 6.824e-6,
        "kirp": 4.627e-5,
        "ucec": 3.185e-4,
    }.items()
}


def _check_token_options(
    specs: dict[str, ModalitySpec],
    wsi_tokens: str,
    max_instances: int | None,
    time_channels: int,
    text_dim: int,
) -> None:
    """A ConfigError for raw-token keywords that cannot build the tokens of `specs`."""
    check_at_least("healnet", 0, time_channels=time_channels)
    check_at_least("healnet", 1, text_dim=text_dim)
    check_choices("healnet", {"wsi_tokens": ("patches", "feature_dims")}, wsi_tokens=wsi_tokens)
    bags = [m for m, s in specs.items() if s.kind == "bag"]
    if wsi_tokens == "feature_dims" and bags and (max_instances or 0) < 1:
        raise ConfigError(
            f"healnet: wsi_tokens='feature_dims' needs max_instances >= 1 (the number of "
            f"instances every bag is padded to) for bag modalities {bags}"
        )


def _check_bag_positions(bag_positions: bool, wsi_tokens: str, fourier_encode_data: bool) -> None:
    """A ConfigError where `bag_positions` cannot apply (whether or not `specs` has a bag)."""
    if bag_positions and wsi_tokens != "patches":
        raise ConfigError(
            f"healnet: bag_positions=True gives positions to instance tokens and needs "
            f"wsi_tokens='patches', got wsi_tokens={wsi_tokens!r} (whose tokens are feature "
            f"dimensions with Fourier channels over the feature axis already); use one or the "
            f"other"
        )
    if bag_positions and not fourier_encode_data:
        raise ConfigError(
            "healnet: bag_positions=True appends Fourier channels and needs "
            "fourier_encode_data=True; set fourier_encode_data=True or bag_positions=False"
        )


# instances (rows of a bag) per block when summing squares: a block stays in the CPU's cache
_SQUARES_BLOCK = 32


def _blocks(data: Tensor) -> int:
    """Instances per block of a sum over a bag: cache-sized on the CPU; the whole bag on an
    accelerator, where each block is a kernel launch and launches, not memory, bound a step
    (HEALNet on an H200: benchmarks/README.md)."""
    return _SQUARES_BLOCK if data.device.type == "cpu" else max(data.shape[1], 1)


@dataclass(frozen=True)
class _Normalised:
    """A modality's tokens (B, N, D) layer-normalised without an affine map: x̂."""

    xhat: Tensor

    @property
    def tokens(self) -> int:
        return self.xhat.shape[1]

    def project(self, weight: Tensor, bias: Tensor) -> Tensor:
        """`x̂ Wᵀ + b`, (B, N, out)."""
        return torch.nn.functional.linear(self.xhat, weight, bias)


@dataclass(frozen=True)
class _FeatureDimsNormalised:
    """x̂ of the feature-dims layout, read from the bag (B, P, D) as it is: never transposed,
    padded or concatenated with its Fourier channels.

    Token d of sample b has the channels v = [data[b, :, d], 0 × (limit − P), pos[d]], n in
    all; LayerNorm gives x̂ = (v − μ)·r with μ, r = 1/√(var + ε) over those n channels, so
    x̂ Wᵀ = r·(W_data data[b, :, d] + W_pos pos[d] − μ·W 1): one matrix product over the
    bag's own layout. Equal to normalising the materialised tokens up to rounding (the
    variance is E[v²] − μ², whose rounding grows with a token's |mean| / std).
    """

    data: Tensor  # (B, P, D), absent samples and padded instances already zero
    pos: Tensor | None  # (D, F) Fourier channels of the D tokens
    limit: int  # channels the instances fill, zero-padded (max_instances)
    mean: Tensor  # (B, D, 1)
    rstd: Tensor  # (B, D, 1)

    @classmethod
    def of(cls, data: Tensor, pos: Tensor | None, limit: int) -> _FeatureDimsNormalised:
        total = (data.new_ones(1, data.shape[1]) @ data).squeeze(1)  # (B, D)
        squares = data.new_zeros(data.shape[0], data.shape[2])
        for block in data.split(_blocks(data), dim=1):
            squares = squares + (block * block).sum(dim=1)
        channels = limit
        if pos is not None:
            total, squares = total + pos.sum(dim=-1), squares + (pos * pos).sum(dim=-1)
            channels += pos.shape[-1]
        mean = total / channels
        var = (squares / channels - mean * mean).clamp_min(0.0)
        return cls(data, pos, limit, mean[..., None], torch.rsqrt(var + _LN_EPS)[..., None])

    @property
    def tokens(self) -> int:
        return self.data.shape[2]

    def project(self, weight: Tensor, bias: Tensor) -> Tensor:
        """`x̂ Wᵀ + b`, (B, D, out), from `weight (out, limit + F)`."""
        own = weight[:, : self.data.shape[1]]
        if self.data.device.type == "cpu":  # the batched product's backward copies the bag
            out = torch.stack([own @ sample for sample in self.data]).transpose(1, 2)
        else:  # transposed: cheap on an accelerator, where a launch per sample is not
            out = (own @ self.data).transpose(1, 2)
        if self.pos is not None:
            out = out + self.pos @ weight[:, self.limit :].T
        return (out - self.mean * weight.sum(dim=1)) * self.rstd + bias


@dataclass(frozen=True)
class _PatchesNormalised:
    """x̂ of a bag whose instances are tokens (B, N, D), never materialised: with μ and
    r = 1/√(var + ε) over each token's D channels, x̂ Wᵀ = r·(x Wᵀ − μ·W 1). The same
    rounding as `_FeatureDimsNormalised`.

    Under `bag_positions` a token is [x, e], e its F Fourier channels: μ and r are taken over
    all D + F channels and x̂ Wᵀ = r·(x W_xᵀ + e W_eᵀ − μ·W 1), so the (B, N, D + F) tokens are
    never built either."""

    data: Tensor  # (B, N, D), absent samples and padded instances already zero
    mean: Tensor  # (B, N, 1)
    rstd: Tensor  # (B, N, 1)
    pos: Tensor | None = None  # (B, N, F) Fourier channels of each instance, 0 on padding

    @classmethod
    def of(cls, data: Tensor, pos: Tensor | None = None) -> _PatchesNormalised:
        squares = torch.cat(
            [(block * block).sum(dim=-1) for block in data.split(_blocks(data), dim=1)],
            dim=1,
        )
        if pos is None:
            mean, channels = data.mean(dim=-1), data.shape[-1]
        else:
            channels = data.shape[-1] + pos.shape[-1]
            mean = (data.sum(dim=-1) + pos.sum(dim=-1)) / channels
            squares = squares + (pos * pos).sum(dim=-1)
        var = (squares / channels - mean * mean).clamp_min(0.0)
        return cls(data, mean[..., None], torch.rsqrt(var + _LN_EPS)[..., None], pos)

    @property
    def tokens(self) -> int:
        return self.data.shape[1]

    def project(self, weight: Tensor, bias: Tensor) -> Tensor:
        """`x̂ Wᵀ + b`, (B, N, out), from `weight (out, D)` or, with positions, `(out, D + F)`."""
        width = self.data.shape[-1]
        if self.pos is None:
            out = torch.nn.functional.linear(self.data, weight)
        else:  # the data columns copied: a backward through the strided view is slower
            out = torch.nn.functional.linear(self.data, weight[:, :width].contiguous())
            out = out + torch.nn.functional.linear(self.pos, weight[:, width:])
        return (out - self.mean * weight.sum(dim=1)) * self.rstd + bias


def _precise(mean: Tensor, rstd: Tensor) -> bool:
    """Whether normalising inside the product stays within about 1e-6 of LayerNorm: the
    rounding of x Wᵀ − μ·W 1 grows with a token's |mean| / std, which must stay ≤ 4 (features
    of a pretrained encoder lie far below; a bag of large offsets takes the plain path)."""
    return not mean.numel() or bool((mean.abs() * rstd).max() <= _MAX_OFFSET)


_MAX_OFFSET = 4.0
_Context = _Normalised | _FeatureDimsNormalised | _PatchesNormalised
_LN_EPS = 1e-5  # nn.LayerNorm's default, that of every context norm


def _mask_and_use(batch: ModalityBatch) -> tuple[Tensor, Tensor]:
    """A token modality's mask, and the samples that use it: present, with a real token."""
    assert batch.token_mask is not None  # prepare_inputs guarantees a mask for token kinds
    return batch.token_mask, batch.present & batch.token_mask.any(dim=1)


def _instance_positions(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Positions (B, N) of each bag's real instances: linspace(−1, 1, n_b) over the n_b real
    instances of bag b, in their order (−1 for a bag of one); 0 on padding.

    Spelled out with the arithmetic of `torch.linspace`'s CPU kernel (the first half counted
    up from −1, the second down from 1, each a fused multiply-add), so that on the CPU a bag
    gets the very positions linspace gives it, without a loop over the bags' sizes.
    """
    rank = mask.cumsum(dim=1) - 1  # (B, N): index among the bag's real instances
    count = mask.sum(dim=1, keepdim=True)  # (B, 1): n_b
    r, n = rank.to(dtype), count.to(dtype)
    step = 2.0 / (n - 1).clamp_min(1.0)
    up = torch.addcmul(torch.full_like(r, -1.0), r, step)
    down = torch.addcmul(torch.ones_like(r), n - 1 - r, -step)
    pos = torch.where(rank < count // 2, up, down)
    pos = torch.where(count > 1, pos, -1.0)
    return torch.where(mask, pos, 0.0)


@dataclass(frozen=True)
class LatentFusion:
    """The latent array and the fusion layers that update it, from the HEALNet keywords of
    the same names."""

    depth: int
    num_latents: int
    latent_dim: int
    cross_heads: int
    cross_dim_head: int
    latent_heads: int
    latent_dim_head: int
    attn_dropout: float
    ff_dropout: float
    ff_mult: int
    self_per_cross_attn: int
    weight_tie_layers: bool
    snn: bool
    temperature: float
    attn_leaky_relu: bool

    def __post_init__(self) -> None:
        check_at_least(
            "healnet", 1, depth=self.depth, num_latents=self.num_latents, latent_dim=self.latent_dim
        )
        check_at_least("healnet", 0, self_per_cross_attn=self.self_per_cross_attn)

    def build(self, token_dims: Mapping[str, int]) -> tuple[nn.Parameter, nn.ModuleList, list[int]]:
        """`(latents, layers, layer_order)`: `layers[layer_order[i]]` runs at depth i."""
        latents = nn.Parameter(torch.randn(self.num_latents, self.latent_dim))
        layers, order = tied_layers(
            self.depth, self.weight_tie_layers, lambda shared: self.layer(token_dims, shared)
        )
        return latents, layers, order

    def layer(self, token_dims: Mapping[str, int], shared: bool) -> nn.ModuleDict:
        """A cross-attention and a cross-FF per modality, then the latent self-attention blocks.

        `shared`: the layer that runs at every depth from 1 on under weight tying, whose one
        cross-FF serves every modality (what the code's `cache_fn(key=None)` gives).
        """
        cross = {m: self._cross_attention(d) for m, d in token_dims.items()}
        blocks = nn.ModuleDict({"cross": nn.ModuleDict(cross)})
        if shared:
            blocks["shared_ff"] = self._feed_forward()
        else:
            blocks["cross_ff"] = nn.ModuleDict({m: self._feed_forward() for m in token_dims})
        blocks["latent"] = nn.ModuleList(
            self._self_attention() for _ in range(self.self_per_cross_attn)
        )
        return blocks

    def _attention(self, heads: int, dim_head: int, context_dim: int | None = None) -> Attention:
        return Attention(
            self.latent_dim,
            context_dim,
            heads=heads,
            dim_head=dim_head,
            dropout=self.attn_dropout,
            temperature=self.temperature,
            leaky_relu=self.attn_leaky_relu,
        )

    def _cross_attention(self, token_dim: int) -> nn.Module:
        attn = self._attention(self.cross_heads, self.cross_dim_head, token_dim)
        return PreNorm(self.latent_dim, attn, context_dim=token_dim)

    def _feed_forward(self) -> nn.Module:
        gate = "selu" if self.snn else "gelu"
        ff = FeedForward(self.latent_dim, mult=self.ff_mult, dropout=self.ff_dropout, gate=gate)
        return PreNorm(self.latent_dim, ff)

    def _self_attention(self) -> nn.Module:
        attn = self._attention(self.latent_heads, self.latent_dim_head)
        return nn.ModuleList([PreNorm(self.latent_dim, attn), self._feed_forward()])


@register_model("healnet")
class HEALNet(MultimodalModel):
    """A shared latent array updated by per-modality cross-attention over raw inputs.

    Args:
        preset: a tuned configuration ("blca", "brca", "kirp", "ucec") or "reference"; explicit
            keywords override its values.
        depth: number of fusion layers.
        num_latents: L, the number of latents (`l_c` in the code).
        latent_dim: d, the width of each latent (`l_d`).
        cross_heads: heads of the cross-attention (`x_heads`).
        latent_heads: heads of the latent self-attention (`l_heads`).
        cross_dim_head: width of one cross-attention head.
        latent_dim_head: width of one self-attention head.
        attn_dropout: dropout on the attention weights.
        ff_dropout: dropout at the end of each feed-forward block.
        ff_mult: hidden width of the feed-forward blocks, in multiples of d.
        self_per_cross_attn: latent self-attention blocks (each with its FF) per slot; 0: none.
        weight_tie_layers: share the weights of layers 1..depth−1 (the code's meaning).
        snn: SELU-gated "self-normalising" feed-forward; False gives GEGLU.
        fourier_encode_data: append Fourier channels over each modality's spatial axes.
        num_freq_bands: K, Fourier bands per axis.
        max_freq: the Fourier scales run from 1 to max_freq / 2.
        temperature: softmax temperature τ of every attention.
        attn_leaky_relu: LeakyReLU(0.01) on every attention output.
        tabular_as_tokens: a tabular modality is F tokens of 1 channel instead of 1 of F.
        wsi_tokens: bag layout, "patches" (instances as tokens) or "feature_dims" (the code's).
        bag_positions: with `wsi_tokens="patches"` and `fourier_encode_data`, append to each
            instance token the 2K + 1 Fourier channels of its position linspace(−1, 1, n_b)
            over the n_b real instances of its own bag (the code's patch layout; independent
            of the other bags of the batch). False (default): instances are an unordered set.
        max_instances: instances per bag for `wsi_tokens="feature_dims"` (bags are zero-padded
            to it; a larger bag is an error).
        time_channels: sinusoidal time channels of sequence steps and text tokens; 0: none.
        time_max_period: slowest period of those channels, in the unit of the times.
        text_dim: width of the learned token embedding of text modalities.
        per_sample_missing: masked per-sample updates (else the code's batch-level skipping).
        self_attn_on_missing: run the self-attention in the slot of an absent modality (code).
        self_attn_per_modality: self-attention after each modality (code) or once per layer.
        return_attention: put the cross-attention maps in `aux` (computed explicitly; without
            them attention runs through `scaled_dot_product_attention`).
    """

    # how `polyfuse tune` searches it (the shared training dimensions are added there)
    search_space: ClassVar[dict[str, Any]] = {
        # ranges around the authors' four tuned cohorts (methods.md §1(f)); the shared
        # settings of those cohorts (1 cross head, no self-attention, SNN) stay fixed
        "depth": Int(1, 4),
        "num_latents": Int(8, 32, log=True),
        "latent_dim": Int(16, 128, log=True),
        "cross_dim_head": Int(16, 128, log=True),
        "attn_dropout": Float(0.0, 0.5),
        "ff_dropout": Float(0.0, 0.5),
        "l1": Float(1e-6, 5e-3, log=True),  # the tuned L1 × 16 (`HEALNET_TRAINING`) lies inside
    }

    @classmethod
    def training_defaults(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """A tuned preset brings its cohort's training settings (`HEALNET_TRAINING`).

        Without a preset, lr 3e-4: on TCGA-ACC (5 × 3 CV) the engine's default 1e-3 let some
        folds collapse at epoch 0-1 (c-index 0.743 ± 0.125), 3e-4 gave 0.784 ± 0.073; and five
        members cross-fitted on five folds, the small-data regime chosen by leave-one-cohort-out
        over the four bundled cohorts, where every held-out cohort would get it (first over one
        seed: three seeds; then over three seeds: five folds; `docs/defaults.md`).
        """
        regime = {"lr": 3e-4, "ensemble": 5, "ensemble_validation": "folds"}
        return preset_training(HEALNET_TRAINING, hparams, regime)

    @with_presets(HEALNET_PRESETS, "HEALNet")
    def __init__(
        self,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        *,
        preset: str | None = None,
        depth: int = 2,
        num_latents: int = 16,
        latent_dim: int = 64,
        cross_heads: int = 1,
        latent_heads: int = 8,
        cross_dim_head: int = 64,
        latent_dim_head: int = 64,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        ff_mult: int = 4,
        self_per_cross_attn: int = 0,
        weight_tie_layers: bool = False,
        snn: bool = True,
        fourier_encode_data: bool = True,
        num_freq_bands: int = 2,
        max_freq: float = 2.0,
        temperature: float = 0.5,
        attn_leaky_relu: bool = True,
        tabular_as_tokens: bool = False,
        wsi_tokens: Literal["patches", "feature_dims"] = "patches",
        bag_positions: bool = False,
        max_instances: int | None = None,
        time_channels: int = 8,
        time_max_period: float = 10_000.0,
        text_dim: int = 16,
        per_sample_missing: bool = True,
        self_attn_on_missing: bool = False,
        self_attn_per_modality: bool = True,
        return_attention: bool = True,
    ) -> None:
        super().__init__(specs, tasks)
        _check_token_options(specs, wsi_tokens, max_instances, time_channels, text_dim)
        _check_bag_positions(bag_positions, wsi_tokens, fourier_encode_data)
        fusion = LatentFusion(
            depth=depth,
            num_latents=num_latents,
            latent_dim=latent_dim,
            cross_heads=cross_heads,
            cross_dim_head=cross_dim_head,
            latent_heads=latent_heads,
            latent_dim_head=latent_dim_head,
            attn_dropout=attn_dropout,
            ff_dropout=ff_dropout,
            ff_mult=ff_mult,
            self_per_cross_attn=self_per_cross_attn,
            weight_tie_layers=weight_tie_layers,
            snn=snn,
            temperature=temperature,
            attn_leaky_relu=attn_leaky_relu,
        )
        self.tabular_as_tokens = tabular_as_tokens
        self.wsi_tokens = wsi_tokens
        self.bag_positions = bag_positions
        self.max_instances = max_instances
        self.per_sample_missing = per_sample_missing
        self.self_attn_on_missing = self_attn_on_missing
        self.self_attn_per_modality = self_attn_per_modality
        self.return_attention = return_attention
        self.fourier = FourierEncoding(max_freq, num_freq_bands) if fourier_encode_data else None
        self.time = TimeEncoding(time_channels, time_max_period) if time_channels else None
        texts = {m: s for m, s in specs.items() if s.kind == "text"}
        self.embed = nn.ModuleDict(
            {m: nn.Embedding(s.vocab_size, text_dim, padding_idx=0) for m, s in texts.items()}
        )
        self.token_dims = {m: self._token_dim(s, text_dim, time_channels) for m, s in specs.items()}
        self.latents, self.layers, self.layer_order = fusion.build(self.token_dims)
        self.norm = nn.LayerNorm(latent_dim)
        self.heads = build_heads(tasks, latent_dim)

    # ----------------------------------------------------------------------------- raw tokens

    def _token_dim(self, spec: ModalitySpec, text_dim: int, time_channels: int) -> int:
        """D_m: the width of modality m's tokens, positional channels included."""
        fourier = self.fourier.channels if self.fourier is not None else (lambda axes: 0)
        if spec.kind == "tabular":
            return (1 if self.tabular_as_tokens else spec.width) + fourier(1)
        if spec.kind == "image":
            return spec.width + fourier(spec.spatial_dims)
        if spec.kind == "bag":
            if self.wsi_tokens == "feature_dims":
                return int(self.max_instances or 0) + fourier(1)
            return spec.width + (fourier(1) if self.bag_positions else 0)
        if spec.kind == "sequence":
            return 2 * spec.width + time_channels
        if spec.kind == "text":
            return text_dim + time_channels
        raise unknown_kind("healnet", spec)

    def _with_fourier(self, x: Tensor) -> Tensor:
        """`(B, *spatial, C)` → `(B, *spatial, C + A·(2K+1))`."""
        if self.fourier is None:
            return x
        pos = self.fourier(x.shape[1:-1], device=x.device, dtype=x.dtype)
        return torch.cat([x, pos.expand(x.shape[0], *pos.shape)], dim=-1)

    def _with_time(self, x: Tensor, times: Tensor) -> Tensor:
        if self.time is None:
            return x
        return torch.cat([x, self.time(times).to(x.dtype)], dim=-1)

    def _tokens(self, m: str, batch: ModalityBatch) -> tuple[Tensor, Tensor | None, Tensor]:
        """Modality m as `(tokens (B, N, D_m), token mask (B, N) or None, use (B,))`.

        `use` says which samples get m's update: present, with at least one real token. A bag
        comes as it is, (B, N, D): `_normalised` builds its tokens (feature dims, or instances
        with their positions) inside the normalisation.
        """
        spec, data = self.specs[m], batch.data
        if spec.kind == "tabular":
            pattern = "b f -> b f 1" if self.tabular_as_tokens else "b f -> b 1 f"
            return self._with_fourier(rearrange(data, pattern)), None, batch.present
        if spec.kind == "image":
            x = self._with_fourier(rearrange(data, "b c ... -> b ... c"))
            return rearrange(x, "b ... d -> b (...) d"), None, batch.present
        if spec.kind == "bag":
            mask, use = _mask_and_use(batch)
            if self.wsi_tokens == "patches":
                return data, mask, use
            return self._check_instances(m, data), None, use
        if spec.kind == "sequence":
            mask, use = _mask_and_use(batch)
            times = positions(mask) if batch.times is None else batch.times
            return self._with_time(with_observed(data, mask), times.to(data.dtype)), mask, use
        if spec.kind == "text":  # ids of real tokens must lie in the vocabulary (padding is 0)
            mask, use = _mask_and_use(batch)
            check_token_ids(m, data, spec.vocab_size)
            x = self.embed[m](data)
            return self._with_time(x, positions(mask).to(x.dtype)), mask, use
        raise unknown_kind("healnet", spec)

    def _check_instances(self, m: str, data: Tensor) -> Tensor:
        """The bag of the code's WSI layout, checked against max_instances."""
        limit = int(self.max_instances or 0)
        if data.shape[1] > limit:
            raise DataError(
                f"modality '{m}': a bag has {data.shape[1]} instances but max_instances is "
                f"{limit}; raise max_instances or use wsi_tokens='patches'"
            )
        return data

    def _normalised(self, m: str, x: Tensor, mask: Tensor | None = None) -> _Context:
        """Modality m's tokens, layer-normalised without an affine map (`_tokens` gives x and
        the token mask, which only `bag_positions` reads: None counts every instance as real).

        A bag is normalised from its own tensor: only statistics per token are computed, and
        the normalisation is applied inside the key/value product. In the code's WSI layout
        (bag (B, P, D) → D tokens of [P instances zero-padded to max_instances, Fourier
        channels]) that also spares transposing, padding and concatenating, and under
        `bag_positions` concatenating each instance with its Fourier channels. While a graph
        is captured, the tokens are built and normalised as plain tensors.
        """
        bag = self.specs[m].kind == "bag"
        feature_dims = bag and self.wsi_tokens == "feature_dims"
        limit = int(self.max_instances or 0)
        pos = self._instance_fourier(x, mask) if bag and self.bag_positions else None
        if bag and not capturing_graph():
            if feature_dims:
                fast: _Context = self._bag_normalised(x, limit)
            else:
                fast = _PatchesNormalised.of(x, pos)
            if _precise(fast.mean, fast.rstd):
                return fast
        if feature_dims:
            x = torch.nn.functional.pad(x, (0, 0, 0, limit - x.shape[1]))
            x = self._with_fourier(rearrange(x, "b p d -> b d p"))
        elif pos is not None:
            x = torch.cat([x, pos], dim=-1)
        return _Normalised(torch.nn.functional.layer_norm(x, x.shape[-1:], eps=_LN_EPS))

    def _instance_fourier(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """`bag_positions`: the (B, N, 2K + 1) Fourier channels of each instance's position
        in its own bag (`_instance_positions`), 0 on padding."""
        assert self.fourier is not None  # bag_positions needs fourier_encode_data
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        pos = _instance_positions(mask, x.dtype)
        enc = fourier_encode(pos, self.fourier.max_freq, self.fourier.num_bands)
        return torch.where(mask[..., None], enc, 0.0)

    def _bag_normalised(self, x: Tensor, limit: int) -> _FeatureDimsNormalised:
        pos = None
        if self.fourier is not None:
            pos = self.fourier((x.shape[2],), device=x.device, dtype=x.dtype)
        return _FeatureDimsNormalised.of(x, pos, limit)

    # ----------------------------------------------------------------------------- fusion

    def _latent_blocks(self, layer: nn.ModuleDict, s: Tensor, use: Tensor | None) -> Tensor:
        """Latent self-attention blocks (each with its FF), skipped where `use` is False."""
        for attn, ff in layer["latent"]:
            if use is None:
                s = s + attn(s)[0]
                s = s + ff(s)
            elif capturing_graph() or use.any():
                s = where_present(use, s + attn(s)[0], s)
                s = where_present(use, s + ff(s), s)
        return s

    def _projections(self, m: str, context: _Context) -> dict[int, Tensor]:
        """Keys and values of every layer's cross-attention over modality m, by layer index.

        LN_m(x) = x̂ ⊙ γ + β, so to_kv(LN_m(x)) = x̂ (W diag γ)ᵀ + W β: one product of x̂ with
        the folded weights of all layers, and no LN_m(x) is materialised (nor, backwards, its
        gradient). Padded tokens are zero, so their x̂ is 0 and their keys, which attention
        masks out, are W β instead of 0.
        """
        indices = sorted(set(self.layer_order))
        weights, biases = [], []
        for index in indices:
            cross = self.layers[index]["cross"][m]
            kv, norm = cross.fn.to_kv.weight, cross.norm_context
            weights.append(kv * norm.weight)
            biases.append(kv @ norm.bias)
        kvs = context.project(torch.cat(weights), torch.cat(biases))
        return dict(zip(indices, kvs.split([w.shape[0] for w in weights], dim=-1), strict=True))

    def _contexts(self, inputs: dict[str, ModalityBatch]) -> dict[str, tuple]:
        """Per modality: `(tokens, mask, use, keys and values by layer or None if unused)`."""
        contexts = {}
        for m in self.specs:
            x, mask, use = self._tokens(m, inputs[m])
            if not self.per_sample_missing:
                use = use.any().expand_as(use)
            context = self._normalised(m, x, mask)
            used = capturing_graph() or bool(use.any())
            contexts[m] = (
                context.tokens,
                mask,
                use,
                self._projections(m, context) if used else None,
            )
        return contexts

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        contexts = self._contexts(inputs)
        size = next(iter(inputs.values())).present.shape[0]
        s = repeat(self.latents, "l d -> b l d", b=size)
        aux: dict[str, Tensor] = {}
        for i, index in enumerate(self.layer_order):
            layer = self.layers[index]
            for m, (tokens, mask, use, kvs) in contexts.items():
                cross, weights = layer["cross"][m], None
                if kvs is not None:
                    delta, weights = cross.fn.attend_projected(
                        cross.norm(s), kvs[index], mask=mask, return_weights=self.return_attention
                    )
                    s = where_present(use, s + delta, s)
                    ff = layer["shared_ff"] if "shared_ff" in layer else layer["cross_ff"][m]
                    s = where_present(use, s + ff(s), s)
                if self.return_attention:
                    if weights is None:  # skipped for the whole batch: no sample attended
                        weights = s.new_zeros(size, cross.fn.heads, s.shape[1], tokens)
                    aux[f"attention/layer{i}/{m}"] = zero_absent(use, weights)
                if self.self_attn_per_modality:
                    s = self._latent_blocks(layer, s, None if self.self_attn_on_missing else use)
            if not self.self_attn_per_modality:
                s = self._latent_blocks(layer, s, None)
        return self.norm(s.mean(dim=1)), aux


__all__ = ["HEALNET_PRESETS", "HEALNET_TRAINING", "HEALNet"]
