"""The base of fusion models built on per-modality encoders: their shared keywords, once.

Every such model takes the same encoder keywords (`EncoderKeywords`), with defaults of its own
(`encoder_defaults`). A subclass's `__init__` declares only its own keywords and passes the
rest on as `**encoding`; its signature is completed with the encoder keywords and the model's
defaults (`models/keywords.py`), so the registry sees every hyper-parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from torch import nn

from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.models.encoders import build_encoders
from polyfuse.models.keywords import complete_signature
from polyfuse.models.model import MultimodalModel
from polyfuse.search_space import Categorical

# How `polyfuse tune` searches the encoder keywords; a model's `search_space` starts from it.
ENCODER_SPACE: dict[str, Any] = {
    "dim": Categorical((16, 32, 64, 128)),  # multiples of the sequence encoder's heads
    "hidden": Categorical(([32], [64], [128], [64, 64])),
    "tabular": Categorical(("mlp", "snn")),
}


@dataclass(frozen=True)
class EncoderKeywords:
    """The encoder keywords of every encoder-fusion model.

    Args:
        dim: width of each modality's encoding.
        hidden: hidden widths of tabular encoders (a model may size its own MLPs with them too).
        dropout: dropout in the encoders (and in the model's own layers, as it says).
        tabular: "mlp" or "snn" (self-normalising network, for omics) for tabular modalities.
        encoder: further `build_encoder` options, e.g. `{"channels": [16, 32]}`.
    """

    dim: int = 64
    hidden: Sequence[int] = (64,)
    dropout: float = 0.1
    tabular: str = "mlp"
    encoder: Mapping[str, Any] | None = None


class EncoderFusionModel(MultimodalModel):
    """A fusion model whose modalities first go through `build_encoder` (see `EncoderKeywords`).

    `self.encoding` holds the encoder keywords of this instance; `encoders_for(specs)` builds
    the encoders with them. The default search space is the encoders' (`ENCODER_SPACE`).
    """

    fine_tunes_backbones = True

    encoder_defaults: ClassVar[EncoderKeywords] = EncoderKeywords()
    search_space: ClassVar[Mapping[str, Any]] = ENCODER_SPACE

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            complete_signature(cls.__init__, cls.encoder_defaults)

    def __init__(
        self, specs: dict[str, ModalitySpec], tasks: dict[str, TaskSpec], **encoding: Any
    ) -> None:
        super().__init__(specs, tasks)
        self.encoding = replace(self.encoder_defaults, **encoding)

    def encoders_for(self, specs: Mapping[str, ModalitySpec]) -> nn.ModuleDict:
        """One encoder per modality of `specs`, built with this model's encoder keywords."""
        e = self.encoding
        return build_encoders(
            specs, e.dim, hidden=e.hidden, dropout=e.dropout, tabular=e.tabular, **(e.encoder or {})
        )


__all__ = ["ENCODER_SPACE", "EncoderFusionModel", "EncoderKeywords"]
