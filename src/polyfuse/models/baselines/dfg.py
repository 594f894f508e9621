"""DFG: the Dynamic Fusion Graph of Graph-MFN, a vertex for every subset of modalities.

Zadeh, Liang, Poria, Cambria, Morency. "Multimodal Language Analysis in the Wild: CMU-MOSEI and
Interpretable Dynamic Fusion Graph". ACL 2018. Reference code:
ecfm/CMU-MultimodalSDK@3af8420:mmsdk/mmmodelsdk/fusion/dynamic_fusion_graph/model.py.

Vertices are the 2^M − 1 non-empty subsets S of the M modalities. A unimodal vertex is the
modality's encoding, T_{m} = z_m. Every larger vertex is computed from all its proper
non-empty subsets (as the reference code does; the paper draws only the |S|−1 parents),
each weighted by a sample-dependent efficacy α:

    T_S = D_S([α_{S'→S} · T_{S'}]_{S' ⊊ S, S' ≠ ∅})      |S| ≥ 2, in order of size
    T   = D_T([α_{S→T} · T_S]_{all S})                     the graph's summary: the embedding
    α   = sigmoid(D_α([z_1, p_1, …, z_M, p_M]))            one efficacy per edge

D_S, D_T and D_α are MLPs; p_m is the presence indicator. The paper's efficacies are sigmoids
(the reference code leaves them linear). The reference runs the DFG inside the Memory Fusion
Network at each time step of LSTMs; here it fuses the encoders' (B, d) vectors once (a
"static" DFG), every kind through its encoder (`models/encoders.py`).

Missing modalities: a vertex exists for a sample only when all its modalities are present;
a vertex with an absent member outputs exactly 0 (z_m of an absent m is 0 already), so it
carries nothing to the vertices above it or to T. The efficacy network sees the presence
indicators, so it can re-weight the surviving vertices per missingness pattern.

Cost: 2^M − 1 vertices and Σ_S (2^|S| − 2) edges, exponential in M; `max_modalities` refuses
more modalities at construction.

Inspection: `aux["efficacies"]` (B, edges), the α of every edge, vertices in `self.subsets`
order with each vertex's incoming edges in `itertools.combinations` order.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError
from polyfuse.models.blocks.masking import zero_absent
from polyfuse.models.blocks.mlp import mlp
from polyfuse.models.encoder_fusion import EncoderFusionModel, EncoderKeywords
from polyfuse.models.encoders import encode_all
from polyfuse.models.model import THREE_FOLDS, build_heads
from polyfuse.models.registry import register_model
from polyfuse.search_space import Categorical


def subsets(items: Sequence[str]) -> list[tuple[str, ...]]:
    """The non-empty subsets of `items`, by size, then in `itertools.combinations` order."""
    return [s for r in range(1, len(items) + 1) for s in itertools.combinations(items, r)]


def vertex_name(subset: Sequence[str]) -> str:
    return "+".join(subset)


@register_model("dfg")
class DynamicFusionGraph(EncoderFusionModel):
    """Encoders → one vertex per modality subset with efficacy-weighted edges → summary T.

    `dim` is also the width of every vertex; `hidden` also the hidden widths of the vertex
    networks D_S and the summary D_T; `dropout` also acts in those MLPs.

    Args:
        efficacy_hidden: hidden widths of the efficacy network D_α.
        max_modalities: refuse more modalities than this (the graph has 2^M − 1 vertices).
    """

    regime = THREE_FOLDS

    encoder_defaults: ClassVar[EncoderKeywords] = EncoderKeywords(dim=16, hidden=(32,))
    # how `polyfuse tune` searches it (the shared training dimensions are added there)
    search_space: ClassVar[dict[str, Any]] = {
        "dim": Categorical((8, 16, 32, 64)),
        "hidden": Categorical(([32], [64])),
        "efficacy_hidden": Categorical(([16], [32])),
        "tabular": Categorical(("mlp", "snn")),
    }

    def __init__(
        self,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        *,
        efficacy_hidden: Sequence[int] = (32,),
        max_modalities: int = 8,
        **encoding: Any,
    ) -> None:
        super().__init__(specs, tasks, **encoding)
        if len(specs) > max_modalities:
            raise ConfigError(
                f"dfg: {len(specs)} modalities give {2 ** len(specs) - 1} graph vertices; the "
                f"limit is max_modalities={max_modalities} (raise it, or group modalities)"
            )
        dim, hidden, dropout = self.encoding.dim, self.encoding.hidden, self.encoding.dropout
        self.encoders = self.encoders_for(specs)
        self.subsets = subsets(list(specs))
        # incoming edges of each multimodal vertex: all its proper non-empty subsets
        self.parents = {s: subsets(s)[:-1] for s in self.subsets if len(s) > 1}
        self.vertices = nn.ModuleDict(
            {
                vertex_name(s): mlp(len(p) * dim, hidden, dim, dropout=dropout)
                for s, p in self.parents.items()
            }
        )
        self.summary = mlp(len(self.subsets) * dim, hidden, dim, dropout=dropout)
        self.n_edges = sum(len(p) for p in self.parents.values()) + len(self.subsets)
        self.efficacy = mlp(len(specs) * (dim + 1), efficacy_hidden, self.n_edges, dropout=dropout)
        self.heads = build_heads(tasks, dim)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        z, aux = encode_all(self.encoders, inputs)
        present = {m: inputs[m].present for m in self.specs}
        indicators = [v for m in self.specs for v in (z[m], present[m][:, None].to(z[m].dtype))]
        alpha = torch.sigmoid(self.efficacy(torch.cat(indicators, dim=-1)))
        edges = iter(alpha.unbind(dim=-1))
        vertex: dict[tuple[str, ...], Tensor] = {(m,): z[m] for m in self.specs}
        for s, parents in self.parents.items():
            x = torch.cat([next(edges)[:, None] * vertex[p] for p in parents], dim=-1)
            active = torch.stack([present[m] for m in s]).all(dim=0)
            vertex[s] = zero_absent(active, self.vertices[vertex_name(s)](x))
        x = torch.cat([next(edges)[:, None] * vertex[s] for s in self.subsets], dim=-1)
        aux["efficacies"] = alpha
        return self.summary(x), aux
