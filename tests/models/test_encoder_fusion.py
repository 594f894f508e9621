"""The encoder-fusion base: every model on per-modality encoders takes the same encoder keywords,
with defaults of its own, the registry sees them, and they reach the encoders."""

from __future__ import annotations

from dataclasses import asdict

import pytest
from torch import nn

from polyfuse.models.encoder_fusion import EncoderFusionModel, EncoderKeywords
from polyfuse.models.encoders import Encoder, ImageEncoder, TabularEncoder
from polyfuse.models.keywords import complete_signature
from polyfuse.models.registry import create_model, list_models, model_class, model_hparams

BASE = dict(dim=64, hidden=(64,), dropout=0.1, tabular="mlp", encoder=None)
# each model's own defaults of the encoder keywords (the others are BASE)
DEFAULTS = {
    "dfg": dict(dim=16, hidden=(32,)),
    "early": {},
    "gated_bilinear": dict(dropout=0.25),
    "hierarchical": dict(dim=32),
    "late": {},
    "lmf": {},
    "medfuse": {},
    "mm_prognosis": dict(dim=32),
    "multimodn": {},
    "tfn": {},
    "unimodal": {},
}


def test_the_encoder_fusion_models() -> None:
    found = {m for m in list_models() if issubclass(model_class(m), EncoderFusionModel)}
    assert found == set(DEFAULTS)


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_registry_sees_the_encoder_keywords_with_the_model_defaults(name, specs, tasks) -> None:
    expected = {**BASE, **DEFAULTS[name]}
    hparams = model_hparams(name)
    assert {k: hparams[k] for k in expected} == expected
    assert list(hparams)[-len(expected) :] == list(expected)  # after the model's own keywords
    model = create_model(name, specs, tasks)
    assert asdict(model.encoding) == expected


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_encoder_keywords_build_the_encoders(name, specs, tasks) -> None:
    model = create_model(
        name, specs, tasks, dim=8, hidden=[5], dropout=0.2, tabular="snn", encoder={"channels": [4]}
    )
    encoders = [m for m in model.modules() if isinstance(m, Encoder)]
    assert encoders and all(e.out_dim == 8 for e in encoders)
    assert any(isinstance(e, TabularEncoder) for e in encoders)  # every model reads "clinical"
    for tabular in (e for e in encoders if isinstance(e, TabularEncoder)):
        kinds = [type(layer) for layer in tabular.net]
        assert kinds == [nn.Linear, nn.SELU, nn.AlphaDropout, nn.Linear]
        assert tabular.net[0].out_features == 5 and tabular.net[2].p == 0.2
    images = [e for e in encoders if isinstance(e, ImageEncoder)]
    assert images or name == "unimodal"  # which encodes its first modality only, the tabular one
    assert all(e.features[0].out_channels == 4 for e in images)


def test_late_fusion_branches_take_its_keywords(specs, tasks) -> None:
    model = create_model("late", specs, tasks, dim=8, tabular="snn")
    for m, branch in model.branches.items():
        assert branch.modality == m
        assert branch.encoding == EncoderKeywords(dim=8, tabular="snn")


def test_a_keyword_group_needs_a_double_star_parameter() -> None:
    def init(self, specs, tasks, *, width: int = 1) -> None: ...

    with pytest.raises(TypeError, match=r"\*\*group"):
        complete_signature(init, EncoderKeywords())
