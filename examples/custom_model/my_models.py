"""A fusion model of your own, trained from a config: `model: {name: "my_models:GatedSum"}`.

Run from this folder (the `polyfuse` command imports `module:Class` from the current
directory, after the installed packages):

    cd examples/custom_model
    polyfuse fit experiment.yaml
    polyfuse cv experiment.yaml

A model is a `MultimodalModel` subclass: `__init__(specs, tasks, *, <hyper-parameters>)` with
every hyper-parameter keyword-only and defaulted (the config's `model.params` are checked
against them), `fuse(inputs) -> (embedding, aux)` and one head per task in `self.heads`. The
base class checks each batch against the specs and zeroes absent samples before `fuse`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.models.encoders import build_encoders, encode_all
from polyfuse.models.model import MultimodalModel, build_heads
from polyfuse.models.registry import register_model
from polyfuse.search_space import Categorical, Float


@register_model("gated_sum")  # optional: lets `pytest -p my_models` run the registry-wide checks
class GatedSum(MultimodalModel):
    """Each modality is encoded to `dim`; a learned gate scores each present encoding, and
    the softmax-weighted sum over the present modalities is the embedding.

    Args:
        dim: width of every modality's encoding and of the embedding.
        hidden: hidden widths of the tabular encoders.
        dropout: dropout on the embedding.
    """

    search_space: ClassVar[dict[str, Any]] = {  # optional: how `polyfuse tune` searches it
        "dim": Categorical((16, 32, 64)),
        "dropout": Float(0.0, 0.5),
    }

    def __init__(
        self,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        *,
        dim: int = 32,
        hidden: tuple[int, ...] = (64,),
        dropout: float = 0.1,
    ) -> None:
        super().__init__(specs, tasks)
        self.encoders = build_encoders(specs, dim, hidden=hidden)
        self.gate = nn.Linear(dim, 1)
        self.dropout = nn.Dropout(dropout)
        self.heads = build_heads(tasks, dim)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        vectors, aux = encode_all(self.encoders, inputs)  # absent samples encode to 0
        z = torch.stack(list(vectors.values()), dim=1)  # (B, M, dim)
        present = torch.stack([inputs[m].present for m in vectors], dim=1)  # (B, M)
        scores = self.gate(z).squeeze(-1)
        scores = scores.masked_fill(~present, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1) * present  # a sample with nothing: all 0
        embedding = self.dropout((weights.unsqueeze(-1) * z).sum(dim=1))
        return embedding, {**aux, "gates": weights}
