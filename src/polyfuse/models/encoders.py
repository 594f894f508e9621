"""One encoder per modality kind: a `ModalityBatch` in, one `(B, dim)` vector per sample out.

Every encoder obeys the same contract, so fusion methods can treat modalities alike:

* rows of absent samples come out exactly 0 (models decide how to represent absence: an
  indicator, a learned vector, or skipping the modality);
* padded tokens are ignored whatever values they hold (NaN included), and a present sample with
  zero real tokens gives a finite vector;
* nothing depends on the other samples of the batch (no BatchNorm).

`encode(batch)` returns the vector and a dict of inspectable maps (bag attention);
`forward(batch)` returns the vector only. `encode_all` runs a dict of encoders in order and
names the maps `"<map>/<modality>"` for `ModelOutput.aux`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from einops import reduce
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec
from polyfuse.errors import ConfigError, DataError, did_you_mean
from polyfuse.models.blocks.backbone import backbone_net
from polyfuse.models.blocks.masking import with_observed, zero_absent
from polyfuse.models.blocks.mlp import mlp
from polyfuse.models.blocks.pooling import GatedAttentionPool, masked_mean
from polyfuse.models.blocks.time import TimeEncoding, positions
from polyfuse.models.model import check_token_ids, unknown_kind


@dataclass(frozen=True)
class EncoderOptions:
    """Options of `build_encoder`, shared by all kinds (each kind reads the ones it needs).

    Args:
        tabular: "mlp" (LayerNorm + ReLU) or "snn" (SELU + AlphaDropout, for omics).
        hidden: hidden widths of the tabular MLP.
        dropout: dropout inside encoders.
        channels: output channels of the CNN's conv blocks (each halves the resolution).
        layers: transformer layers of the sequence encoder.
        heads: attention heads of the sequence encoder (must divide `dim`).
        attention_hidden: width of the bag encoder's gated-attention network.
        max_period: slowest period of the sequence time encoding, in the unit of the times.
    """

    tabular: str = "mlp"
    hidden: tuple[int, ...] = (64,)
    dropout: float = 0.0
    channels: tuple[int, ...] = (16, 32, 64)
    layers: int = 1
    heads: int = 4
    attention_hidden: int = 128
    max_period: float = 10_000.0


class Encoder(nn.Module):
    """Base class: subclasses implement `_encode`; absent rows are zeroed here, once."""

    def __init__(self, spec: ModalitySpec, dim: int) -> None:
        super().__init__()
        self.spec = spec
        self.out_dim = dim

    def _encode(self, batch: ModalityBatch) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def encode(self, batch: ModalityBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """`(B, dim)` vectors (0 for absent samples) and the encoder's inspectable maps."""
        z, aux = self._encode(batch)
        return zero_absent(batch.present, z), aux

    def forward(self, batch: ModalityBatch) -> Tensor:
        return self.encode(batch)[0]


def _real_tokens(batch: ModalityBatch) -> tuple[Tensor, Tensor]:
    """Token data with padding set to 0 (so garbage never reaches a product) and the mask."""
    assert batch.token_mask is not None
    return zero_absent(batch.token_mask, batch.data), batch.token_mask


class TabularEncoder(Encoder):
    """Feature vector → MLP. "snn" gives the self-normalising network of the omics literature."""

    def __init__(self, spec: ModalitySpec, dim: int, options: EncoderOptions) -> None:
        super().__init__(spec, dim)
        activation = {"mlp": "relu", "snn": "selu"}[options.tabular]
        self.net = mlp(
            spec.width, options.hidden, dim, activation=activation, dropout=options.dropout
        )

    def _encode(self, batch: ModalityBatch) -> tuple[Tensor, dict[str, Tensor]]:
        return self.net(batch.data), {}


class ImageEncoder(Encoder):
    """A small CNN for 2D images or 3D volumes: one class, `spatial_dims` picks Conv2d/Conv3d.

    Each block is `conv 3×3(×3), stride 2 → GroupNorm → ReLU` (MONAI-style, one class for every
    dimension); then a global average pool and a linear projection to `dim`. GroupNorm
    normalises each sample on its own, unlike BatchNorm. Kept small on purpose: a baseline
    encoder trainable on ~100-patient cohorts; a pretrained backbone replaces it when the
    modality names one (`BackboneEncoder`), or embeds the images once, frozen, before training.
    """

    def __init__(self, spec: ModalitySpec, dim: int, options: EncoderOptions) -> None:
        super().__init__(spec, dim)
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[spec.spatial_dims]
        blocks: list[nn.Module] = []
        width = spec.width
        for c in options.channels:
            blocks += [
                conv(width, c, kernel_size=3, stride=2, padding=1),
                nn.GroupNorm(math.gcd(8, c), c),
                nn.ReLU(),
            ]
            width = c
        self.features = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(options.dropout)
        self.proj = nn.Linear(width, dim)

    def _encode(self, batch: ModalityBatch) -> tuple[Tensor, dict[str, Tensor]]:
        x = reduce(self.features(batch.data), "b c ... -> b c", "mean")
        return self.proj(self.dropout(x)), {}


class BackboneEncoder(Encoder):
    """A pretrained image backbone (`spec.backbone`), fine-tuned with the model, then dropout
    and a linear projection of its pooled features to `dim`."""

    def __init__(self, spec: ModalitySpec, dim: int, options: EncoderOptions) -> None:
        super().__init__(spec, dim)
        self.backbone = backbone_net(spec)
        self.dropout = nn.Dropout(options.dropout)
        self.proj = nn.Linear(self.backbone.dim, dim)

    def _encode(self, batch: ModalityBatch) -> tuple[Tensor, dict[str, Tensor]]:
        return self.proj(self.dropout(self.backbone(batch.data))), {}


class BagEncoder(Encoder):
    """Instances → `Linear → ReLU` → gated attention-MIL pooling (ABMIL/CLAM).

    The attention over instances is returned as the map "attention" (B, N): it sums to 1 over
    a sample's real instances and is 0 on padding; an empty bag gives zeros.
    """

    def __init__(self, spec: ModalitySpec, dim: int, options: EncoderOptions) -> None:
        super().__init__(spec, dim)
        self.proj = nn.Sequential(
            nn.Linear(spec.width, dim), nn.ReLU(), nn.Dropout(options.dropout)
        )
        self.pool = GatedAttentionPool(dim, options.attention_hidden, options.dropout)

    def _encode(self, batch: ModalityBatch) -> tuple[Tensor, dict[str, Tensor]]:
        data, mask = _real_tokens(batch)
        pooled, attention = self.pool(self.proj(data), mask)
        return pooled, {"attention": attention}


class SequenceEncoder(Encoder):
    """Irregular multichannel series → transformer → masked mean over real time steps.

    Missing values: NaN inside a present sequence means "not measured at this visit". It is
    replaced by 0 and a per-channel observed indicator is appended, so a step carries
    `[values, observed]` (2C wide) and the model can tell a measured 0 from a missing value
    (the "mask as input" of GRU-D and similar ICU models). Steps are embedded by a linear layer
    plus `TimeEncoding` of the observation times (the step index when `times` is None), then
    a pre-norm `TransformerEncoder` with the padding masked out, then a masked mean.
    A present sample with no step attends to one zeroed dummy step (keeping the softmax finite)
    and pools to 0.
    """

    def __init__(self, spec: ModalitySpec, dim: int, options: EncoderOptions) -> None:
        super().__init__(spec, dim)
        self.embed = nn.Linear(2 * spec.width, dim)
        self.time = TimeEncoding(dim, options.max_period)
        layer = nn.TransformerEncoderLayer(
            dim,
            options.heads,
            dim_feedforward=2 * dim,
            dropout=options.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(
            layer, options.layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False
        )

    def _encode(self, batch: ModalityBatch) -> tuple[Tensor, dict[str, Tensor]]:
        values, mask = _real_tokens(batch)
        if batch.times is None:
            times = positions(mask).float()
        elif batch.times.shape != mask.shape:
            raise DataError(
                f"modality '{self.spec.name}': times have shape {tuple(batch.times.shape)}, "
                f"expected {tuple(mask.shape)} like the token mask"
            )
        else:
            times = zero_absent(mask, batch.times)
        x = self.embed(with_observed(values, mask)) + self.time(times)
        empty = ~mask.any(dim=1)
        attend = mask.clone()
        attend[:, 0] |= empty
        x = self.transformer(x, src_key_padding_mask=~attend)
        return masked_mean(x, mask), {}


class TextEncoder(Encoder):
    """Hashed token ids → `nn.Embedding(vocab_size, dim, padding_idx=0)` → masked mean.

    A trainable bag-of-words default that needs no download; ids come from the hashing
    tokenizer of `polyfuse.data.dataset.tokenize`.
    """

    def __init__(self, spec: ModalitySpec, dim: int, options: EncoderOptions) -> None:
        super().__init__(spec, dim)
        self.embed = nn.Embedding(spec.vocab_size, dim, padding_idx=0)

    def _encode(self, batch: ModalityBatch) -> tuple[Tensor, dict[str, Tensor]]:
        ids, mask = _real_tokens(batch)
        check_token_ids(self.spec.name, ids, self.spec.vocab_size)
        return masked_mean(self.embed(ids), mask), {}


ENCODERS: dict[str, type[Encoder]] = {
    "tabular": TabularEncoder,
    "image": ImageEncoder,
    "bag": BagEncoder,
    "sequence": SequenceEncoder,
    "text": TextEncoder,
}


def encoder_options(**options: Any) -> EncoderOptions:
    """Validate `build_encoder` options; unknown names raise ConfigError with a did-you-mean."""
    known = {f.name for f in fields(EncoderOptions)}
    for key in options:
        if key not in known:
            raise ConfigError(
                f"unknown encoder option '{key}'{did_you_mean(key, known)}; use {sorted(known)}"
            )
    for key in ("hidden", "channels"):
        if key in options:
            options[key] = tuple(int(v) for v in options[key])
    opts = EncoderOptions(**options)
    if opts.tabular not in ("mlp", "snn"):
        raise ConfigError(f"encoder option tabular must be 'mlp' or 'snn', got '{opts.tabular}'")
    if not opts.channels:
        raise ConfigError("encoder option channels needs at least one conv block")
    return opts


def build_encoder(spec: ModalitySpec, dim: int, **options: Any) -> Encoder:
    """The encoder for `spec.kind`, mapping a `ModalityBatch` to `(B, dim)`.

    Options are the fields of `EncoderOptions` (e.g. `tabular="snn"`, `channels=(16, 32)`).
    """
    opts = encoder_options(**options)
    if spec.kind not in ENCODERS:
        raise unknown_kind("build_encoder", spec)
    if spec.kind == "sequence" and dim % opts.heads:
        raise ConfigError(
            f"modality '{spec.name}': dim {dim} is not divisible by heads {opts.heads}"
        )
    if spec.backbone is not None:
        return BackboneEncoder(spec, dim, opts)
    return ENCODERS[spec.kind](spec, dim, opts)


def build_encoders(specs: Mapping[str, ModalitySpec], dim: int, **options: Any) -> nn.ModuleDict:
    """One encoder per modality, in the order of `specs`."""
    return nn.ModuleDict({m: build_encoder(s, dim, **options) for m, s in specs.items()})


def encode_all(
    encoders: nn.ModuleDict, inputs: Mapping[str, ModalityBatch]
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Run each encoder on its modality; maps are renamed `"<map>/<modality>"` for `aux`."""
    vectors: dict[str, Tensor] = {}
    aux: dict[str, Tensor] = {}
    for m, encoder in encoders.items():
        vectors[m], maps = encoder.encode(inputs[m])
        aux.update({f"{k}/{m}": v for k, v in maps.items()})
    return vectors, aux


__all__ = [
    "ENCODERS",
    "BackboneEncoder",
    "BagEncoder",
    "Encoder",
    "EncoderOptions",
    "ImageEncoder",
    "SequenceEncoder",
    "TabularEncoder",
    "TextEncoder",
    "build_encoder",
    "build_encoders",
    "encode_all",
    "encoder_options",
]
