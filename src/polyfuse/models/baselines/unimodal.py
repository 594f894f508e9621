"""Unimodal baseline: one modality's encoder, an MLP, the task heads.

The reference every fusion method must beat (HEALNet reports "uplift over the best unimodal
baseline"): with `tabular="snn"` on omics it is the SNN of Klambauer et al. 2017, on a bag of
patch features it is ABMIL (Ilse et al. 2018). It reads only its own modality; the others are
validated and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError, did_you_mean
from polyfuse.models.blocks.mlp import mlp
from polyfuse.models.encoders import ENCODER_SPACE, build_encoders, encode_all
from polyfuse.models.model import MultimodalModel, build_heads
from polyfuse.models.registry import register_model


@register_model("unimodal")
class Unimodal(MultimodalModel):
    """Encoder of one modality → MLP → heads.

    A sample lacking the modality is encoded as a learned "absent" vector instead, so the model
    still predicts for it: in effect the learned prior of the patients without that data (zero
    would be an arbitrary point of the embedding space, and the fill value must not matter).

    Args:
        modality: the modality to use; default the first one of `specs`.
        dim: width of the encoder output and of the embedding.
        hidden: hidden widths of the MLP after the encoder (and of a tabular encoder).
        dropout: dropout in the encoder and the MLP.
        tabular: "mlp" or "snn" (self-normalising network) for a tabular modality.
        encoder: further `build_encoder` options, e.g. `{"channels": [16, 32]}`.
    """

    # how `polyfuse tune` searches it (the shared training dimensions are added there)
    search_space: ClassVar[dict[str, Any]] = ENCODER_SPACE

    def __init__(
        self,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        *,
        modality: str | None = None,
        dim: int = 64,
        hidden: Sequence[int] = (64,),
        dropout: float = 0.1,
        tabular: str = "mlp",
        encoder: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(specs, tasks)
        modality = next(iter(specs)) if modality is None else modality
        if modality not in specs:
            raise ConfigError(
                f"unimodal: unknown modality '{modality}'{did_you_mean(modality, specs)}; "
                f"have {list(specs)}"
            )
        self.modality = modality
        self.used_modalities = (modality,)
        self.encoders = build_encoders(
            {modality: specs[modality]},
            dim,
            hidden=hidden,
            dropout=dropout,
            tabular=tabular,
            **dict(encoder or {}),
        )
        self.absent = nn.Parameter(torch.zeros(dim))
        self.mlp = mlp(dim, hidden, dim, dropout=dropout)
        self.heads = build_heads(tasks, dim)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        vectors, aux = encode_all(self.encoders, inputs)
        present = inputs[self.modality].present[:, None]
        z = torch.where(present, vectors[self.modality], self.absent)
        return self.mlp(z), aux
