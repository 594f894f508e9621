"""Learnable synergies: a multimodal transformer with Perceiver "internal memories" (LSMT).

Khader, Müller-Franzes, Wang, Han, Tayebi Arasteh, Haarburger, Stegmaier, Bressem, Kuhl,
Nebelung, Kather, Truhn. "Medical Diagnosis with Large Scale Multimodal Transformers: Leveraging
Diverse Data for More Accurate Diagnosis", arXiv 2212.09162 (2022); journal version Radiology
2023, 10.1148/radiol.230806. Reference code: FirasGit/lsmt@5e41dbe (`classification/models/
lsmt.py`, `classification/models/utils/ehr_module.py`). Specification: `reference/methods.md` §3.

Every modality m becomes tokens of one width d (`_tokens`). A long token set is compressed by its
own Perceiver memory (the paper's `EHRModule`): a learned latent array Z ∈ R^{L×d_z} that
cross-attends to the tokens X_m, so its cost is O(L·N_m) and its output size L is fixed:

    for each memory layer:  Z ← Z + CrossAttn(LN Z, LN X_m);  Z ← Z + FF(LN Z)
                            Z ← Z + SelfAttn(LN Z);           Z ← Z + FF(LN Z)
    slots_m = Linear(Z)   ∈ R^{L×d}

A joint pre-norm transformer runs over the concatenation, with a learned type embedding e_m
added to every token (or slot) of modality m:

    X = [c; X_1 + e_1; slots_2 + e_2; …]       c: a learned CLS token
    for each layer:  X ← X + SelfAttn(LN X, key mask);  X ← X + FF(LN X)
    prediction = heads(LN X[0])

Adding a modality adds tokens (or one more memory), never a pairwise module: the paper's
scalability argument. Attention and feed-forward are the shared blocks (`blocks/attention.py`,
`blocks/feedforward.py`), the same ones HEALNet runs.

Tokens per modality kind (the paper has a chest radiograph and an ICU time series; the rest is
the generalisation of §3(j), a RECONSTRUCTION):

* image (B, C, H, W) / (B, C, D, H, W): a ViT patch embedding written here (a convolution with
  kernel = stride = `patch_size`, Conv2d or Conv3d by `spatial_dims`) plus a learned position
  embedding per patch; the image is zero-padded to whole patches (`blocks/tokenizers.py`). The paper
  fine-tunes a pretrained ViT-S (timm): give the modality `encoder: {name: vit-s, weights: …,
  trainable: true, size: [384, 384]}` and its patch tokens (MONAI's ViT-S/16: 384 wide, so
  they enter unprojected at the paper's d = 384) replace the patch embedding, fine-tuned with
  the model. MONAI's ViT has no CLS token of its own, so the image gives P tokens where timm's
  gives 1 + P; the paper's runs used patches of 32 (P = 144), MONAI's ViT-S here patches of 16.
* tabular (B, F): one token Linear(F, d) (`tabular_tokens="single"`, the default), or the
  feature tokenizer of FT-Transformer (Gorishniy et al. 2021), token_f = x_f · W_f + b_f with
  b_f a learned feature embedding (`"features"`). On TCGA-ACC (5 × 3 CV, 92 patients, omics
  of up to 471 features) feature tokens gave c-index 0.643 ± 0.187 (folds collapsing) and one
  token 0.768 ± 0.075, so "single" is the default for small cohorts.
* bag (B, N, D): one token per instance, Linear(D, d), no position (an unordered set).
* sequence (B, T, C): steps as in the sequence encoder: NaN = not measured, so a step is
  Linear([values, observed]) + TimeEncoding(t) of its observation time (the step index if no
  times are given). The paper Fourier-encodes the time axis of an hourly grid (6 bands,
  max_freq 10, appended as channels); a sinusoid of the real times keeps irregular gaps.
* text (B, N) ids: the text encoder of `encoders.py` (`TextEncoder`): its embedding per token plus
  TimeEncoding of the token index (`text_tokens="tokens"`), or its pooled vector as one token
  (`"pooled"`).

Which modalities get a memory (`memory_modalities=None`: this rule; or a list of names):
sequences always (as in the paper); bags always (their length varies with the batch padding, so
it cannot be compared with a threshold at construction, and deciding per batch would make a
sample's output depend on its batch company; WSI bags run to thousands of instances); tabular
and image when their fixed token count exceeds `memory_threshold` (images only with
`image_memory`, off in the paper preset, and never a pretrained backbone's tokens); text never.

Missing modalities (`missing=`):

* "mask" (default; §3(d) RECONSTRUCTION option): the tokens or slots of an absent modality, and
  padded tokens of a present one, are key-padding-masked in every attention, so nothing of the
  fill value reaches a real token, and a sample with m absent gives exactly the output of the
  model built without m (same weights). Masked positions are still computed (as queries) but no
  real position ever reads them, and the CLS attention gives them weight exactly 0. The CLS
  token is always a real key, so no attention row is empty. A memory whose modality has no real
  token for a sample is masked too.
* "zero_fill": the paper's behaviour (a zero image for a missing radiograph): an absent fixed-size
  modality is tokenised from its zero fill (feature embeddings only, or the patch bias plus
  positions) and attended; an absent memory modality contributes the memory of no input (its
  cross-attention reads nothing and gives 0, the latents pass the rest of the memory). A
  variable-length modality without a memory has no tokens to fill and stays masked. Padded tokens
  of present samples are masked in both modes (the paper attends its zero padding, which makes a
  sample depend on the batch's longest sequence; not reproduced).

Other choices where the paper is silent or that differ, each configurable:

* `modality_embeddings=True`: learned type embeddings e_m (§3(j)); the paper relies on position.
* `position_encoding="none"`: the paper adds a sinusoidal encoding over the whole concatenated
  sequence, and its code adds it twice (X ← 2X + PE, via `x += pos_embedding(x)`, whose dropout
  we drop): "sinusoid" and "sinusoid_doubled". Off by default because positions over the
  concatenation shift with the padded length of earlier token modalities (batch dependence) and
  with an absent modality's tokens (no equivalence with the model without it).
* Feed-forward blocks are the shared gated FF (GEGLU, `ff_mult`); the paper's fusion MLP is
  Linear-GELU-Linear of width 384 (`ff_mult=1` gives the same hidden width). The paper's
  memory uses GEGLU × 4, as here.
* The memory reads tokenised inputs of width d (the paper's Perceiver reads the raw 76 + 13
  channels); `memory_dim` is its latent width d_z (128 in the paper), projected to d after.
* Deep supervision (extra heads on the memory and image means, off in the paper) is omitted.

Inspection (`ModelOutput.aux`, softmax probabilities before dropout, per head):

* `attention/layer{i}/{m}`, (B, heads, N_m): the CLS token's attention over modality m's tokens
  in joint layer i, for a modality without a memory; 0 on masked tokens.
* `memory_slots/layer{i}/{m}`, (B, heads, L): the CLS attention over m's memory slots.
* `cls_self/layer{i}`, (B, heads): the CLS attention on itself; with the maps above, each
  head's CLS row sums to 1 (a sample without any modality puts all of it on itself).
* `attention/memory{j}/{m}`, (B, memory_cross_heads, L, N_m): memory layer j's cross-attention
  from its latents to m's tokens; all 0 for a sample without a real token of m.

Defaults are sized for ~100-patient cohorts on CPU (d = 64, 2 joint layers of 4 heads, memories
of 16 latents and 1 layer). `preset="paper"` gives the published sizes (d = 384, 4 joint layers
of 4 × 128 heads, FF width 384; memories of 64 latents of width 128, 9 layers, 1 × 64 cross
heads, 4 × 32 self heads, attention dropout 0.1; patches of 32) with zero-fill, no type
embeddings and the doubled position encoding; its training defaults are AdamW lr 4e-5, weight
decay 0.01 (torch's default, which the code does not change).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError, FallbackWarning
from polyfuse.models.blocks.time import TimeEncoding
from polyfuse.models.blocks.tokenizers import ModalityTokenizer
from polyfuse.models.blocks.transformer import TransformerBlock
from polyfuse.models.checks import check_at_least, check_choices
from polyfuse.models.encoders import Encoder, build_encoder
from polyfuse.models.keywords import keyword_group
from polyfuse.models.model import MultimodalModel, build_heads
from polyfuse.models.presets import preset_training, with_presets
from polyfuse.models.registry import register_model
from polyfuse.search_space import Categorical, Float, Int

# Published sizes (methods.md §3(b), §3(f)): paper commands, where they differ from the config.
SYNERGIES_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        dim=384,
        depth=4,
        heads=4,
        dim_head=128,
        ff_mult=1,
        attn_dropout=0.0,
        ff_dropout=0.0,
        num_latents=64,
        memory_dim=128,
        memory_depth=9,
        memory_cross_heads=1,
        memory_cross_dim_head=64,
        memory_heads=4,
        memory_dim_head=32,
        memory_ff_mult=4,
        memory_attn_dropout=0.1,
        patch_size=32,
        image_memory=False,
        missing="zero_fill",
        modality_embeddings=False,
        position_encoding="sinusoid_doubled",
    ),
}
# The paper's recipe (methods.md §3(f)): AdamW lr 4e-5, torch's default weight decay 0.01, cosine
# annealing over the epochs (to 1e-7 there, to 0 here, stepped per batch rather than per epoch).
SYNERGIES_TRAINING: dict[str, dict[str, Any]] = {
    "paper": dict(lr=4e-5, weight_decay=0.01, lr_schedule="cosine")
}


FIXED_SIZE = ("tabular", "image")  # kinds with a token count known at construction
_CHOICES: dict[str, tuple[str, ...]] = {
    "tabular_tokens": ("features", "single"),
    "text_tokens": ("tokens", "pooled"),
    "missing": ("mask", "zero_fill"),
    "position_encoding": ("none", "sinusoid", "sinusoid_doubled"),
}


# --------------------------------------------------------------------------------- memory


class PerceiverMemory(nn.Module):
    """The "internal memory": L latents cross-attend to N tokens; output (B, L, d) for any N.

    Args:
        dim: width d of the tokens read and of the slots returned.
        num_latents: L.
        latent_dim: d_z, the latents' width (projected to d at the end when different).
        depth: layers of [cross-attention + FF, self-attention + FF].
        cross_heads, cross_dim_head: heads of the cross-attention.
        heads, dim_head: heads of the latent self-attention.
        ff_mult, attn_dropout, ff_dropout: as in the blocks.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_latents: int,
        latent_dim: int,
        depth: int,
        cross_heads: int,
        cross_dim_head: int,
        heads: int,
        dim_head: int,
        ff_mult: int,
        attn_dropout: float,
        ff_dropout: float,
    ) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, latent_dim))
        self.layers = nn.ModuleList()
        for _ in range(depth):
            options = dict(ff_mult=ff_mult, attn_dropout=attn_dropout, ff_dropout=ff_dropout)
            self.layers.append(
                nn.ModuleDict(
                    {
                        "cross": TransformerBlock(
                            latent_dim, dim, heads=cross_heads, dim_head=cross_dim_head, **options
                        ),
                        "latent": TransformerBlock(
                            latent_dim, heads=heads, dim_head=dim_head, **options
                        ),
                    }
                )
            )
        self.out = nn.Linear(latent_dim, dim) if latent_dim != dim else nn.Identity()

    def forward(
        self, tokens: Tensor, mask: Tensor | None, *, return_weights: bool = False
    ) -> tuple[Tensor, list[Tensor]]:
        """`tokens (B, N, d)`, `mask (B, N)` → `(slots (B, L, d), cross weights per layer)`."""
        z = repeat(self.latents, "l e -> b l e", b=tokens.shape[0])
        maps = []
        for layer in self.layers:
            z, weights = layer["cross"](z, tokens, mask=mask, return_weights=return_weights)
            z, _ = layer["latent"](z)
            if weights is not None:
                maps.append(weights)
        return self.out(z), maps


@dataclass(frozen=True)
class MemoryKeywords:
    """The memory keywords of `Synergies`: which modalities get a `PerceiverMemory`, and its sizes.

    Args:
        num_latents: L, slots per memory.
        memory_dim: d_z, the latents' width (None: d).
        memory_depth: layers per memory.
        memory_cross_heads, memory_cross_dim_head: heads of a memory's cross-attention.
        memory_heads, memory_dim_head: heads of a memory's latent self-attention.
        memory_ff_mult: hidden width of a memory's feed-forward blocks.
        memory_attn_dropout, memory_ff_dropout: dropout inside the memories.
        memory_threshold: a fixed-size modality with more tokens than this gets a memory.
        image_memory: whether an image of many patches may get a memory by that rule (the
            paper's radiograph has none: its ViT tokens go straight to the joint transformer;
            the tokens of a pretrained backbone never get one).
        memory_modalities: names of the modalities that get a memory (None: the rule in the
            module docstring).
    """

    num_latents: int = 16
    memory_dim: int | None = None
    memory_depth: int = 1
    memory_cross_heads: int = 1
    memory_cross_dim_head: int = 64
    memory_heads: int = 4
    memory_dim_head: int = 16
    memory_ff_mult: int = 2
    memory_attn_dropout: float = 0.0
    memory_ff_dropout: float = 0.0
    memory_threshold: int = 64
    image_memory: bool = True
    memory_modalities: Sequence[str] | None = None

    def __post_init__(self) -> None:
        check_at_least(
            "synergies",
            1,
            num_latents=self.num_latents,
            memory_depth=self.memory_depth,
            memory_threshold=self.memory_threshold,
        )

    def modalities(
        self, specs: dict[str, ModalitySpec], counts: dict[str, int | None]
    ) -> tuple[str, ...]:
        """The modalities that get a memory, in the order of `specs`; `counts` are the fixed
        token counts (None for a variable length)."""
        if self.memory_modalities is None:
            return tuple(
                m
                for m, s in specs.items()
                if s.kind in ("sequence", "bag")
                or (
                    s.kind in FIXED_SIZE
                    and (counts[m] or 0) > self.memory_threshold
                    and (s.kind == "tabular" or (self.image_memory and s.backbone is None))
                )
            )
        unknown = [m for m in self.memory_modalities if m not in specs]
        if unknown:
            raise ConfigError(
                f"synergies: memory_modalities names unknown modalities {unknown}; "
                f"the modalities are {list(specs)}"
            )
        return tuple(m for m in specs if m in set(self.memory_modalities))

    def memory(self, dim: int) -> PerceiverMemory:
        """One memory, reading tokens of width `dim` and giving slots of that width."""
        return PerceiverMemory(
            dim,
            num_latents=self.num_latents,
            latent_dim=self.memory_dim or dim,
            depth=self.memory_depth,
            cross_heads=self.memory_cross_heads,
            cross_dim_head=self.memory_cross_dim_head,
            heads=self.memory_heads,
            dim_head=self.memory_dim_head,
            ff_mult=self.memory_ff_mult,
            attn_dropout=self.memory_attn_dropout,
            ff_dropout=self.memory_ff_dropout,
        )


def _tokenizers(
    specs: dict[str, ModalitySpec],
    dim: int,
    tabular_tokens: str,
    text_tokens: str,
    patch_size: int,
    time_max_period: float,
) -> tuple[nn.ModuleDict, dict[str, int | None]]:
    """One tokenizer per modality, and its fixed token count (None: as long as the padding)."""
    tokenizers = nn.ModuleDict()
    counts: dict[str, int | None] = {}
    for m, spec in specs.items():
        if spec.kind == "text" and text_tokens == "pooled":
            tokenizers[m], counts[m] = build_encoder(spec, dim), 1
            continue
        groups = 1 if tabular_tokens == "single" else spec.width
        tokenizer = ModalityTokenizer(
            spec, dim, tabular_groups=groups, patch_size=patch_size, max_period=time_max_period
        )
        tokenizers[m] = tokenizer
        if spec.kind == "tabular":
            counts[m] = groups
        elif spec.kind == "image":
            counts[m] = tokenizer.num_patches
        else:  # bag, sequence, text
            counts[m] = None
    return tokenizers, counts


# ------------------------------------------------------------------------------------ model


@register_model("synergies")
class Synergies(MultimodalModel):
    """Tokens of every modality (long ones through a Perceiver memory) → CLS transformer.

    Args:
        preset: "paper" for the published sizes and behaviour; explicit keywords override it.
        dim: d, the width of every token.
        depth: joint transformer layers.
        heads, dim_head: heads of the joint self-attention.
        ff_mult: hidden width of the feed-forward blocks, in multiples of d.
        attn_dropout, ff_dropout: dropout of the joint transformer.
        tabular_tokens: "features" (a token per feature) or "single" (one token).
        text_tokens: "tokens" (one per word) or "pooled" (the text encoder's vector).
        patch_size: side of an image patch (clipped to the image side).
        time_max_period: slowest period of the time encoding of sequences and text positions.
        missing: "mask" (key-padding masks; absent = model without it) or "zero_fill" (paper).
        modality_embeddings: add a learned type embedding per modality.
        position_encoding: "none", "sinusoid" or "sinusoid_doubled" (the paper's 2X + PE) over
            the concatenated sequence.
        return_attention: put the attention maps in `aux` (computed explicitly; without them
            attention runs through `scaled_dot_product_attention`).

    It also takes the memory keywords (`MemoryKeywords`): `num_latents` and `memory_*`.
    """

    fine_tunes_backbones = True

    # how `polyfuse tune` searches it (the shared training dimensions are added there)
    search_space: ClassVar[dict[str, Any]] = {
        "dim": Categorical((32, 64, 128)),
        "depth": Int(1, 3),
        "heads": Categorical((2, 4, 8)),
        "dim_head": Categorical((16, 32)),
        "ff_mult": Int(1, 4),
        "attn_dropout": Float(0.0, 0.3),
        "ff_dropout": Float(0.0, 0.3),
    }

    @classmethod
    def training_defaults(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """The paper preset brings the paper's AdamW settings; otherwise lr 3e-4, an ensemble
        of 3 seeds and modality dropout 0.2, the small-data regime chosen for it by
        leave-one-cohort-out over the four bundled cohorts (`docs/defaults.md`)."""
        default = {"lr": 3e-4, "ensemble": 3, "modality_dropout": 0.2}
        return preset_training(SYNERGIES_TRAINING, hparams, default)

    @with_presets(SYNERGIES_PRESETS, "synergies")
    @keyword_group(MemoryKeywords())
    def __init__(
        self,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        *,
        preset: str | None = None,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        dim_head: int = 16,
        ff_mult: int = 2,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        tabular_tokens: Literal["features", "single"] = "single",
        text_tokens: Literal["tokens", "pooled"] = "tokens",
        patch_size: int = 16,
        time_max_period: float = 10_000.0,
        missing: Literal["mask", "zero_fill"] = "mask",
        modality_embeddings: bool = True,
        position_encoding: Literal["none", "sinusoid", "sinusoid_doubled"] = "none",
        return_attention: bool = True,
        **memory_keywords: Any,
    ) -> None:
        super().__init__(specs, tasks)
        memory = MemoryKeywords(**memory_keywords)
        check_at_least("synergies", 1, dim=dim, depth=depth, patch_size=patch_size)
        check_choices(
            "synergies",
            _CHOICES,
            tabular_tokens=tabular_tokens,
            text_tokens=text_tokens,
            missing=missing,
            position_encoding=position_encoding,
        )
        self.missing = missing
        self.position_encoding = position_encoding
        self.return_attention = return_attention
        self.tokenizers, counts = _tokenizers(
            specs, dim, tabular_tokens, text_tokens, patch_size, time_max_period
        )
        self.memory_modalities = memory.modalities(specs, counts)
        self.memories = nn.ModuleDict({m: memory.memory(dim) for m in self.memory_modalities})
        self._warn_unfilled()
        # A ParameterDict keyed by modality: the model without m holds every other weight.
        self.modality_embed = (
            nn.ParameterDict({m: nn.Parameter(torch.randn(dim) * 0.02) for m in specs})
            if modality_embeddings
            else None
        )
        self.cls = nn.Parameter(torch.randn(dim) * 0.02)
        self.positions = TimeEncoding(dim) if position_encoding != "none" else None
        self.layers = nn.ModuleList(
            TransformerBlock(
                dim,
                heads=heads,
                dim_head=dim_head,
                ff_mult=ff_mult,
                attn_dropout=attn_dropout,
                ff_dropout=ff_dropout,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.heads = build_heads(tasks, dim)

    def _warn_unfilled(self) -> None:
        """zero_fill has a fill to attend only for fixed-size modalities and memories."""
        if self.missing != "zero_fill":
            return
        masked = [
            m for m, s in self.specs.items() if m not in self.memories and s.kind not in FIXED_SIZE
        ]
        if masked:
            warnings.warn(
                f"synergies: missing='zero_fill' leaves {masked} masked where absent: only "
                f"{' and '.join(FIXED_SIZE)} modalities, and modalities with a memory, have a "
                "zero fill to attend",
                FallbackWarning,
                stacklevel=2,
            )

    # ------------------------------------------------------------------------------ tokens

    def _tokens(self, m: str, batch: ModalityBatch) -> tuple[Tensor, Tensor]:
        """Modality m as `(tokens (B, N, d), mask (B, N))`, mask True for real tokens."""
        if self.specs[m].kind == "text" and isinstance(self.tokenizers[m], Encoder):
            # pooled text: one token, real when the sample has any word
            x = rearrange(self.tokenizers[m](batch), "b d -> b 1 d")
            assert batch.token_mask is not None
            return x, rearrange(batch.token_mask.any(dim=1), "b -> b 1")
        return self.tokenizers[m](batch)

    # ------------------------------------------------------------------------------ fusion

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        size = next(iter(inputs.values())).present.shape[0]
        aux: dict[str, Tensor] = {}
        parts = [repeat(self.cls, "d -> b 1 d", b=size)]
        masks = [torch.ones(size, 1, dtype=torch.bool, device=self.cls.device)]
        spans: dict[str, tuple[int, int]] = {}
        offset = 1
        for m in self.specs:
            x, mask = self._tokens(m, inputs[m])
            if m in self.memories:
                x, maps = self.memories[m](x, mask, return_weights=self.return_attention)
                for j, weights in enumerate(maps):
                    aux[f"attention/memory{j}/{m}"] = weights
                real = mask.any(dim=1)  # a memory of no real token says nothing (mask mode)
                if self.missing == "zero_fill":
                    real = torch.ones_like(real)
                mask = repeat(real, "b -> b n", n=x.shape[1])
            elif self.missing == "zero_fill" and self.specs[m].kind in FIXED_SIZE:
                mask = torch.ones_like(mask)  # attend the zero-filled tokens, as the paper does
            if self.modality_embed is not None:
                x = x + self.modality_embed[m]
            parts.append(x)
            masks.append(mask)
            spans[m] = (offset, offset + x.shape[1])
            offset += x.shape[1]
        x, key_mask = torch.cat(parts, dim=1), torch.cat(masks, dim=1)
        if self.positions is not None:
            index = torch.arange(x.shape[1], device=x.device).expand(size, -1)
            pe = self.positions(index).to(x.dtype)
            # the paper's `x += pos_embedding(x)` with pos_embedding(x) = x + PE: X ← 2X + PE
            x = 2 * x + pe if self.position_encoding == "sinusoid_doubled" else x + pe

        for i, layer in enumerate(self.layers):
            x, weights = layer(x, mask=key_mask, return_weights=self.return_attention)
            if weights is None:
                continue
            cls_row = weights[:, :, 0]  # (B, heads, N): what the CLS token reads
            aux[f"cls_self/layer{i}"] = cls_row[..., 0]
            for m, (start, stop) in spans.items():
                prefix = "memory_slots" if m in self.memories else "attention"
                aux[f"{prefix}/layer{i}/{m}"] = cls_row[..., start:stop]
        return self.norm(x[:, 0]), aux


__all__ = [
    "SYNERGIES_PRESETS",
    "SYNERGIES_TRAINING",
    "MemoryKeywords",
    "PerceiverMemory",
    "Synergies",
]
