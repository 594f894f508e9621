"""MedFuse-style fusion: an LSTM reads the modality embeddings as a sequence.

Hayat, Geras, Shamout. "MedFuse: Multi-modal fusion with clinical time-series data and chest
X-ray images." MLHC 2022.

MedFuse encodes the EHR time series (LSTM) and the chest X-ray (ResNet-34), projects the image
features to the EHR width, and feeds the sequence [v_ehr, v_cxr] to a fusion LSTM whose last
hidden state goes to the classifier. A patient without an X-ray gives a sequence of length 1
(packed), so a missing modality is never imputed.

Generalised to M modalities of any kind: every modality goes through its kind's encoder and a
modality-specific projection (MedFuse's projection, one per modality so the LSTM can tell the
modalities apart), and the LSTM runs over the modalities in the order of `specs`:

    (h_m, c_m) = LSTMCell(P_m z_m, (h_{m-1}, c_{m-1})),    (h_0, c_0) = 0,    embedding = h_M

Absent modalities: the LSTM steps only over the modalities a sample has. This is done by a
masked state carry, (h_m, c_m) = (h_{m-1}, c_{m-1}) where m is absent, which equals packing each
sample's present embeddings into a shorter sequence (tested against `nn.LSTM` on packed
sequences). A sample with no modality keeps h = 0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.models.blocks.masking import where_present
from polyfuse.models.encoder_fusion import EncoderFusionModel
from polyfuse.models.encoders import encode_all
from polyfuse.models.model import THREE_FOLDS, build_heads
from polyfuse.models.registry import register_model


@register_model("medfuse")
class MedFuse(EncoderFusionModel):
    """Encoders → per-modality projection → LSTM over the present modalities → last h → heads.

    `dim` is also the width of the LSTM input, of its hidden state and of the embedding;
    `dropout` also acts on the final hidden state.
    """

    regime = THREE_FOLDS

    def __init__(
        self, specs: dict[str, ModalitySpec], tasks: dict[str, TaskSpec], **encoding: Any
    ) -> None:
        super().__init__(specs, tasks, **encoding)
        dim = self.encoding.dim
        self.encoders = self.encoders_for(specs)
        self.project = nn.ModuleDict({m: nn.Linear(dim, dim) for m in specs})
        self.lstm = nn.LSTMCell(dim, dim)
        self.dropout = nn.Dropout(self.encoding.dropout)
        self.heads = build_heads(tasks, dim)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        vectors, aux = encode_all(self.encoders, inputs)
        first = next(iter(vectors.values()))
        h = torch.zeros_like(first)
        c = torch.zeros_like(first)
        for m, z in vectors.items():
            present = inputs[m].present
            h_new, c_new = self.lstm(self.project[m](z), (h, c))
            # masked state carry: an absent modality is not a step of this sample's sequence
            h = where_present(present, h_new, h)
            c = where_present(present, c_new, c)
        return self.dropout(h), aux
