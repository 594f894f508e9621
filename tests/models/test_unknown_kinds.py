"""A modality kind a model has no path for is a ConfigError naming the modality and the kind,
never a silent detour through another kind's path (HEALNet once read any unknown kind as text).

`ModalitySpec` refuses unknown kinds, so the specs here are forged past its check: what a kind
added to `ModalitySpec` but not yet to a model would look like.
"""

from __future__ import annotations

import pytest
import torch

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec
from polyfuse.errors import ConfigError
from polyfuse.models.blocks.tokenizers import ModalityTokenizer
from polyfuse.models.registry import create_model, list_models

NAME = r"'odd'.*'graph'"  # the message names the modality, then the kind


def forged(spec: ModalitySpec, kind: str = "graph") -> ModalitySpec:
    object.__setattr__(spec, "kind", kind)
    return spec


def odd_spec() -> ModalitySpec:
    return forged(ModalitySpec("odd", "tabular", (3,)))


@pytest.mark.filterwarnings("ignore::polyfuse.errors.FallbackWarning")  # mcat: no omics query
@pytest.mark.parametrize("name", list_models())
def test_every_model_refuses_an_unknown_kind_at_construction(name, tasks) -> None:
    with pytest.raises(ConfigError, match=NAME):
        create_model(name, {"odd": odd_spec()}, tasks)


def tabular_batch() -> ModalityBatch:
    return ModalityBatch(torch.randn(2, 3), torch.ones(2, dtype=torch.bool))


def test_healnet_reading_an_unknown_kind_raises(tasks) -> None:
    """The per-batch dispatch too: a kind changed after construction is not read as text."""
    spec = ModalitySpec("odd", "tabular", (3,))
    model = create_model("healnet", {"odd": spec}, tasks).eval()
    model({"odd": tabular_batch()})  # the tabular path reads it
    forged(spec)
    with pytest.raises(ConfigError, match=NAME):
        model({"odd": tabular_batch()})


def test_tokenizer_reading_an_unknown_kind_raises() -> None:
    spec = ModalitySpec("odd", "tabular", (3,))
    tokenizer = ModalityTokenizer(spec, 4)
    tokenizer(tabular_batch())
    forged(spec)
    with pytest.raises(ConfigError, match=NAME):
        tokenizer(tabular_batch())
