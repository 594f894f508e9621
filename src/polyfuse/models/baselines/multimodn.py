"""MultiModN: modular encoders update one shared state, one modality after another.

Swamy, Satayeva, Frej, Bossy, Vogels, Jaggi, Käser, Hartley. "MultiModN — Multimodal,
Multi-Task, Interpretable Modular Networks." NeurIPS 2023 (code: EPFLiGHT/MultiModN).

    s_0 = a trainable initial state
    s_m = e_m(s_{m-1}, x_m)        for m = 1 … M in a fixed order   (e_m: MLP on [s; enc_m(x_m)])
    ŷ_t^(m) = d_t(s_m)             task decoders, shared by every step

Each modality has its own module e_m, so modules can be added, dropped or reordered, and the
decoders read the state after every step (what each modality added to a prediction).
Choices here: modalities are taken in the order of `specs`; e_m applies the kind's encoder,
then `mlp([s; enc_m(x_m)]) → s` (the reference's MLP encoder, non-residual); the decoders are
the model's heads, applied to every intermediate state for `aux["step_logits/<task>"]`
(B, M + 1, out) — the engine trains on the final state, the reference sums the loss of every
step and adds a state-change penalty.

Absent modalities: the reference skips an encoder when its input holds NaN (for the whole
batch). Here the skip is per sample, a masked update: s_m = s_{m-1} where modality m is absent,
so a sample runs exactly the modules of the modalities it has, and a model built without m
gives the same output as this one with m absent everywhere.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.models.blocks.masking import where_present
from polyfuse.models.blocks.mlp import mlp
from polyfuse.models.encoder_fusion import EncoderFusionModel
from polyfuse.models.encoders import encode_all
from polyfuse.models.model import THREE_FOLDS, build_heads
from polyfuse.models.registry import register_model


@register_model("multimodn")
class MultiModN(EncoderFusionModel):
    """Trainable s_0 → masked state update per modality → final state as embedding → heads.

    `aux["states"]` is (B, M + 1, dim): s_0 then the state after each modality of `specs`.
    `dim` is also the width of the state; `hidden` and `dropout` also shape each state-update
    MLP.
    """

    regime = THREE_FOLDS

    def __init__(
        self, specs: dict[str, ModalitySpec], tasks: dict[str, TaskSpec], **encoding: Any
    ) -> None:
        super().__init__(specs, tasks, **encoding)
        dim, hidden, dropout = self.encoding.dim, self.encoding.hidden, self.encoding.dropout
        self.encoders = self.encoders_for(specs)
        self.init_state = nn.Parameter(torch.zeros(dim))
        self.update = nn.ModuleDict({m: mlp(2 * dim, hidden, dim, dropout=dropout) for m in specs})
        self.heads = build_heads(tasks, dim)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        vectors, aux = encode_all(self.encoders, inputs)
        size = next(iter(inputs.values())).present.shape[0]
        state = repeat(self.init_state, "d -> b d", b=size)
        states = [state]
        for m, z in vectors.items():
            updated = self.update[m](torch.cat([state, z], dim=-1))
            state = where_present(inputs[m].present, updated, state)  # skip if absent
            states.append(state)
        stacked = torch.stack(states, dim=1)
        aux["states"] = stacked
        flat = rearrange(stacked, "b s d -> (b s) d")
        for t, head in self.heads.items():
            aux[f"step_logits/{t}"] = rearrange(head(flat), "(b s) o -> b s o", b=size)
        return state, aux
