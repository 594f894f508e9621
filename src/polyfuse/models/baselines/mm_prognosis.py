"""MM-Prognosis: intermediate fusion of per-modality embeddings with a similarity loss.

Cheerla, Gevaert. "Deep learning with multimodal representation for pancancer prognosis
prediction". Bioinformatics 35(14), 2019 (i446–i454). HEALNet's "intermediate fusion" baseline
(konst-int-i/healnet@90459b6:healnet/baselines/mm_prognosis.py).

Each modality m has its own deep encoder to a common embedding space, z_m = θ_m(x_m) (every
kind through its encoder, `models/encoders.py`). The patient's representation is the mean over
its available modalities, which feeds the heads:

    h = Σ_m p_m z_m / max(Σ_m p_m, 1)            p_m: presence (after multimodal dropout)

A similarity loss pulls together the embeddings of the same patient across modalities and
pushes apart those of different patients (a margin ranking loss on cosine similarity):

    L_sim = mean over modality pairs (A, B), patients i ≠ j, both directions, of
            max(0, M − cos(z_A,i, z_B,i) + cos(z_A,i, z_B,j))            M = margin (0.1)

where i and j range over patients having both modalities. Multimodal dropout (training only)
drops whole modality embeddings of a sample with probability `modality_dropout` (0.25 in the
paper) before averaging, so the model learns to predict from any subset.

The loss is returned as `aux["loss/similarity"]` (a 0-dim tensor, already multiplied by
`similarity_weight`); the training engine adds every `aux` entry named "loss/…" to the task
losses. It is computed in training mode only, as a training-time regulariser like dropout:
validation losses and early stopping see the task losses alone.

Missing modalities: an absent modality is left out of the mean (encoders give 0 for it and
p_m = 0) and out of every similarity term; a sample without any modality gets h = 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError
from polyfuse.models.blocks.masking import zero_absent
from polyfuse.models.encoder_fusion import ENCODER_SPACE, EncoderFusionModel, EncoderKeywords
from polyfuse.models.encoders import encode_all
from polyfuse.models.model import build_heads
from polyfuse.models.registry import register_model
from polyfuse.search_space import Float


def similarity_loss(
    vectors: Mapping[str, Tensor], present: Mapping[str, Tensor], *, margin: float = 0.1
) -> Tensor:
    """The margin loss above on `(B, d)` embeddings with `(B,)` presence; 0 with no valid term.

    >>> e = torch.eye(2)
    >>> round(float(similarity_loss({"a": e, "b": e.flip(0)}, {"a": torch.ones(2, dtype=bool),
    ...       "b": torch.ones(2, dtype=bool)})), 4)        # cos(i, i) = 0, cos(i, j) = 1
    1.1
    """
    total, count = None, 0
    for a, b in itertools.combinations(vectors, 2):
        both = present[a] & present[b]
        sim = F.normalize(vectors[a], dim=-1) @ F.normalize(vectors[b], dim=-1).T  # (B, B)
        pos = sim.diagonal()
        # valid (i, j): both patients have both modalities, i ≠ j
        valid = (
            both[:, None]
            & both[None, :]
            & ~torch.eye(len(both), dtype=torch.bool, device=both.device)
        )
        for s in (sim, sim.T):  # anchor in A (rows), then anchor in B
            hinge = F.relu(margin - pos[:, None] + s)
            term = zero_absent(valid, hinge).sum()
            total = term if total is None else total + term
            count += int(valid.sum())
    if total is None:
        return torch.zeros(())
    return total / max(count, 1)


@register_model("mm_prognosis")
class MMPrognosis(EncoderFusionModel):
    """Encoders to a common space → mean over present modalities → heads; + similarity loss.

    `dim` is the width of the common embedding space (512 in the paper).

    Args:
        margin: M of the similarity loss.
        similarity_weight: factor of the similarity loss in `aux["loss/similarity"]`.
        modality_dropout: probability of dropping a modality's embedding (training only).
    """

    encoder_defaults: ClassVar[EncoderKeywords] = EncoderKeywords(dim=32)
    # how `polyfuse tune` searches it (the shared training dimensions are added there)
    search_space: ClassVar[dict[str, Any]] = {
        **ENCODER_SPACE,
        "margin": Float(0.05, 0.5),
        "similarity_weight": Float(0.1, 3.0, log=True),
        "modality_dropout": Float(0.0, 0.5),
    }

    def __init__(
        self,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        *,
        margin: float = 0.1,
        similarity_weight: float = 1.0,
        modality_dropout: float = 0.25,
        **encoding: Any,
    ) -> None:
        super().__init__(specs, tasks, **encoding)
        if not 0.0 <= modality_dropout < 1.0:
            raise ConfigError(
                f"mm_prognosis: modality_dropout must be in [0, 1), got {modality_dropout}"
            )
        if similarity_weight < 0:
            raise ConfigError(
                f"mm_prognosis: similarity_weight must be >= 0, got {similarity_weight}"
            )
        self.margin = margin
        self.similarity_weight = similarity_weight
        self.modality_dropout = modality_dropout
        self.encoders = self.encoders_for(specs)
        self.heads = build_heads(tasks, self.encoding.dim)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        z, aux = encode_all(self.encoders, inputs)
        present = {m: inputs[m].present for m in self.specs}
        keep = dict(present)
        if self.training and self.modality_dropout > 0:
            keep = {
                m: p & (torch.rand(p.shape, device=p.device) >= self.modality_dropout)
                for m, p in present.items()
            }
        weights = torch.stack([keep[m] for m in self.specs], dim=1).to(z[next(iter(z))].dtype)
        stacked = torch.stack([z[m] for m in self.specs], dim=1)  # (B, M, d), 0 where absent
        h = (weights[..., None] * stacked).sum(dim=1) / weights.sum(dim=1, keepdim=True).clamp(
            min=1
        )
        if self.training:
            loss = similarity_loss(z, present, margin=self.margin)
            aux["loss/similarity"] = self.similarity_weight * loss.to(h.device)
        return h, aux
