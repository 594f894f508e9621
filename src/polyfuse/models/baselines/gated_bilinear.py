"""Gated bilinear (Kronecker) fusion, as in Pathomic Fusion and PORPOISE.

Chen, Lu, Wang, Williamson, Rodig, Lindeman, Mahmood. "Pathomic Fusion: An Integrated Framework
for Fusing Histopathology and Genomic Features for Cancer Diagnosis and Prognosis." IEEE TMI
2020. Chen et al. "Pan-cancer integrative histology-genomic analysis via multimodal deep
learning." Cancer Cell 2022 (PORPOISE: ABMIL on WSI bags + SNN on omics, then this fusion).

Per modality m, a gate computed from all modalities decides what of m enters the product:

    h_m = ReLU(W_h z_m)                       (the modality's value)
    g_m = σ(W_g [z_1; …; z_M])                (gate, from every modality's encoding)
    o_m = ReLU(W_o (g_m ⊙ h_m))               (gated embedding, width w, with dropout)
    T   = vec(⊗_m [o_m; 1])                   (Kronecker product with appended 1, as in TFN)
    e   = ReLU(W_1 dropout(T)),   embedding = ReLU(W_2 [e; o_1; …; o_M])   (skip connection)

Generalised to M modalities: the reference gates modality 1 with a bilinear form of (z_1, z_2);
with M modalities that would be M-linear, so the gate takes the concatenation of all encodings,
which is PORPOISE's `use_bilinear=False` gate `Linear(dim1 + dim2, dim1)`. The product width is
bounded as in TFN (`bounded_width`: (w + 1) ** M ≤ max_product; the reference uses w = 32 for two
modalities). The skip connection takes the o_m without their constant 1s (a constant adds only a
bias, which W_2 already has).

Absent modalities: the encoding of an absent modality is 0 in every gate's input, and its gated
embedding o_m is set to exactly 0, so its Kronecker factor is [0 … 0, 1] and T keeps exactly the
terms of the present modalities; the skip connection sees 0 for it. Its gate in `aux` is 0.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.models.baselines.tfn import TensorFusionNetwork
from polyfuse.models.blocks.kronecker import bounded_width, kronecker
from polyfuse.models.blocks.masking import zero_absent
from polyfuse.models.encoder_fusion import EncoderFusionModel, EncoderKeywords
from polyfuse.models.encoders import encode_all
from polyfuse.models.model import THREE_SEEDS, build_heads
from polyfuse.models.registry import register_model


@register_model("gated_bilinear")
class GatedBilinearFusion(EncoderFusionModel):
    """Encoders → gated embeddings o_m → `vec(⊗_m [o_m; 1])` → FC → skip FC → heads.

    `aux["gate/<modality>"]` is the gate g_m (B, w), 0 for samples lacking the modality.
    `dim` is also the embedding width (the reference's mmhid); `dropout` acts in the encoders,
    after each gated embedding and after fusion (the reference uses 0.25); use `tabular="snn"`
    for PORPOISE's omics.

    Args:
        width: largest per-modality gated width w (reduced for many modalities).
        max_product: bound on the size of the product, Π_m (w + 1).
    """

    regime = THREE_SEEDS

    encoder_defaults: ClassVar[EncoderKeywords] = EncoderKeywords(dropout=0.25)
    # searched as TFN: the same trade-off of widths against the size of the product
    search_space = TensorFusionNetwork.search_space

    def __init__(
        self,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        *,
        width: int = 16,
        max_product: int = 4096,
        **encoding: Any,
    ) -> None:
        super().__init__(specs, tasks, **encoding)
        dim, dropout = self.encoding.dim, self.encoding.dropout
        w = self.width = bounded_width(len(specs), width, max_product)
        n = len(specs)
        self.encoders = self.encoders_for(specs)
        self.value = nn.ModuleDict({m: nn.Sequential(nn.Linear(dim, w), nn.ReLU()) for m in specs})
        self.gate = nn.ModuleDict({m: nn.Linear(n * dim, w) for m in specs})
        self.out = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(w, w), nn.ReLU(), nn.Dropout(dropout)) for m in specs}
        )
        self.fusion = nn.Sequential(
            nn.Dropout(dropout), nn.Linear((w + 1) ** n, dim), nn.ReLU(), nn.Dropout(dropout)
        )
        self.skip = nn.Sequential(nn.Linear(dim + n * w, dim), nn.ReLU(), nn.Dropout(dropout))
        self.heads = build_heads(tasks, dim)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        vectors, aux = encode_all(self.encoders, inputs)
        context = torch.cat(list(vectors.values()), dim=-1)  # absent encodings are exactly 0
        gated = []
        for m, z in vectors.items():
            present = inputs[m].present
            gate = torch.sigmoid(self.gate[m](context))
            o = self.out[m](gate * self.value[m](z))
            gated.append(zero_absent(present, o))
            aux[f"gate/{m}"] = zero_absent(present, gate)
        e = self.fusion(kronecker(gated))
        return self.skip(torch.cat([e, *gated], dim=-1)), aux
