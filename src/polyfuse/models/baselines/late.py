"""Late (decision-level) fusion: one unimodal model per modality, their logits averaged.

The combination rule is the mean of the per-modality logits over the modalities a sample has.
HEALNet's `LateFusion` instead feeds the concatenated logits to a linear layer; averaging is
what tolerates missing modalities (a missing one is left out of the mean rather than fed as a
fill value), and it is the missing-aware late fusion that is the strongest classical baseline on
TCGA cohorts (mean of per-modality risks over the modalities a patient has).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from einops import einsum
from torch import nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.models.baselines.unimodal import Unimodal
from polyfuse.models.encoder_fusion import EncoderFusionModel
from polyfuse.models.model import THREE_FOLDS, ModelOutput, prepare_inputs
from polyfuse.models.registry import register_model


@register_model("late")
class LateFusion(EncoderFusionModel):
    """One `Unimodal` branch (encoder → MLP → heads) per modality; logits averaged.

    logits_t(b) = Σ_m w_bm · logits_{m,t}(b), w_bm = present_bm / Σ_m present_bm (0 for a sample
    with no modality, whose logits are then 0). `embedding` is the same weighted mean of the
    branch embeddings. `aux["modality_logits/<task>"]` is `(B, M, out_dim)` and `aux["weights"]`
    is `(B, M)`, modalities in the order of `specs`. Trained end to end on the fused logits.
    Every branch takes this model's encoder keywords.
    """

    regime = THREE_FOLDS

    def __init__(
        self, specs: dict[str, ModalitySpec], tasks: dict[str, TaskSpec], **encoding: Any
    ) -> None:
        super().__init__(specs, tasks, **encoding)
        branch = asdict(self.encoding)
        self.branches = nn.ModuleDict(
            {m: Unimodal(specs, tasks, modality=m, **branch) for m in specs}
        )

    def forward(self, inputs: dict[str, ModalityBatch]) -> ModelOutput:
        inputs = prepare_inputs(inputs, self.specs)
        present = torch.stack([inputs[m].present for m in self.branches], dim=1)
        weights = present.float() / present.sum(dim=1, keepdim=True).clamp(min=1)
        embeddings, logits, aux = [], {t: [] for t in self.tasks}, {}
        for branch in self.branches.values():
            z, maps = branch.fuse(inputs)
            embeddings.append(z)
            aux.update(maps)
            for t, head in branch.heads.items():
                logits[t].append(head(z))
        fused = {}
        for t, per_modality in logits.items():
            stacked = torch.stack(per_modality, dim=1)
            aux[f"modality_logits/{t}"] = stacked
            fused[t] = einsum(weights, stacked, "b m, b m o -> b o")
        embedding = einsum(weights, torch.stack(embeddings, dim=1), "b m, b m d -> b d")
        aux["weights"] = weights
        return ModelOutput(fused, embedding, aux)
