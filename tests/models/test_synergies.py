"""Learnable synergies (LSMT): the properties that define it (methods.md §3, §5.5).

The registry-wide tests (shapes, fill-value invariance, masking, batch independence, save/load)
run on it from `test_registry_models.py`; these pin what is specific to the method: the absent
modality = model-without-it equivalence, the memory's fixed output size, the attention maps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError
from polyfuse.models.blocks.attention import Attention
from polyfuse.models.blocks.tokenizers import FeatureTokenizer
from polyfuse.models.registry import create_model, model_class
from polyfuse.models.synergies import SYNERGIES_PRESETS, PerceiverMemory, Synergies

SMALL = dict(
    dim=16,
    depth=2,
    heads=2,
    dim_head=8,
    num_latents=5,
    memory_dim_head=8,
    tabular_tokens="features",
)
TASKS = {"dx": TaskSpec("dx", "multilabel", classes=("a", "b", "c"))}


def build(specs, tasks=None, seed: int = 0, **hparams: Any) -> Synergies:
    torch.manual_seed(seed)
    return create_model("synergies", specs, tasks or TASKS, **{**SMALL, **hparams}).eval()


def without(model: Synergies, m: str, **hparams: Any) -> Synergies:
    """The model built on every modality but `m`, holding the full model's weights (strictly)."""
    specs = {k: s for k, s in model.specs.items() if k != m}
    smaller = build(specs, model.tasks, seed=1, **hparams)
    state = {k: v for k, v in model.state_dict().items() if m not in k.split(".")}
    smaller.load_state_dict(state, strict=True)
    return smaller.eval()


def test_memory_rule(specs) -> None:
    model = build(specs, memory_threshold=3, tabular_tokens="features")
    # sequences and bags always; the 7-feature table (7 > 3) and the images (1 patch) by size
    assert model.memory_modalities == ("clinical", "wsi", "labs")
    assert build(specs).memory_modalities == ("wsi", "labs")
    assert build(specs, memory_modalities=["xray"]).memory_modalities == ("xray",)
    with pytest.raises(ConfigError, match="nope"):
        build(specs, memory_modalities=["nope"])


@pytest.mark.parametrize(
    "hparams",
    [{}, {"memory_threshold": 3, "text_tokens": "pooled", "tabular_tokens": "features"}],
)
def test_absent_modality_equals_model_without_it(specs, dataset, hparams) -> None:
    """Masked default: for a sample lacking m, the output is that of the model without m."""
    batch = dataset.batch(np.arange(len(dataset))).inputs
    model = build(specs, **hparams)
    with torch.no_grad():
        full = model(batch)
        for m in specs:
            absent = ~batch[m].present
            assert absent.any()
            rest = {k: v for k, v in batch.items() if k != m}
            out = without(model, m, **hparams)(rest)
            for t in TASKS:
                torch.testing.assert_close(
                    full.logits[t][absent], out.logits[t][absent], atol=1e-5, rtol=0, msg=m
                )
            torch.testing.assert_close(full.embedding[absent], out.embedding[absent])


def test_zero_fill_attends_absent_modality(specs, dataset) -> None:
    """The paper's zero-fill: an absent image is read (as zeros), unlike the masked default."""
    batch = dataset.batch(np.arange(len(dataset))).inputs
    model = build(specs, missing="zero_fill")
    absent = ~batch["xray"].present
    rest = {k: v for k, v in batch.items() if k != "xray"}
    with torch.no_grad():
        full = model(batch).embedding[absent]
        alone = without(model, "xray", missing="zero_fill")(rest).embedding[absent]
    assert (full - alone).abs().max() > 1e-4


@pytest.mark.parametrize("length", [3, 50, 700])
def test_memory_output_size_is_independent_of_length(length: int) -> None:
    torch.manual_seed(0)
    memory = PerceiverMemory(
        16,
        num_latents=6,
        latent_dim=12,
        depth=2,
        cross_heads=1,
        cross_dim_head=8,
        heads=2,
        dim_head=8,
        ff_mult=2,
        attn_dropout=0.0,
        ff_dropout=0.0,
    )
    tokens = torch.randn(3, length, 16)
    mask = torch.ones(3, length, dtype=torch.bool)
    mask[1, length // 2 :] = False
    slots, maps = memory(tokens, mask, return_weights=True)
    assert slots.shape == (3, 6, 16)
    assert [w.shape for w in maps] == [(3, 1, 6, length)] * 2
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(3, 1, 6))
    assert (maps[0][1, ..., length // 2 :] == 0).all()


def _sequence_batch(steps: int, size: int = 2) -> dict[str, ModalityBatch]:
    g = torch.Generator().manual_seed(steps)
    present = torch.ones(size, dtype=torch.bool)
    return {
        "clinical": ModalityBatch(torch.randn(size, 7, generator=g), present),
        "labs": ModalityBatch(
            torch.randn(size, steps, 3, generator=g),
            present,
            torch.ones(size, steps, dtype=torch.bool),
            torch.arange(steps, dtype=torch.float32).expand(size, steps).clone(),
        ),
    }


def test_joint_sequence_length_is_independent_of_sequence_length() -> None:
    specs = {
        "clinical": ModalitySpec("clinical", "tabular", (7,)),
        "labs": ModalitySpec("labs", "sequence", (3,)),
    }
    model = build(specs)
    for steps in (10, 1000):
        aux = model(_sequence_batch(steps)).aux
        assert aux["memory_slots/layer0/labs"].shape == (2, 2, 5)  # L slots, whatever T
        assert aux["attention/memory0/labs"].shape == (2, 1, 5, steps)
        assert aux["attention/layer1/clinical"].shape == (2, 2, 7)


def test_cls_attention_maps(specs, dataset) -> None:
    batch = dataset.batch(np.arange(len(dataset))).inputs
    model = build(specs, memory_threshold=3)
    aux = model(batch).aux
    n = len(dataset)
    tokens = {
        "xray": 1,  # 16 × 16 with 16-pixel patches
        "ct": 1,
        "report": batch["report"].data.shape[1],
    }
    for i in range(2):
        for m, count in tokens.items():
            assert aux[f"attention/layer{i}/{m}"].shape == (n, 2, count)
        for m in ("clinical", "wsi", "labs"):
            assert aux[f"memory_slots/layer{i}/{m}"].shape == (n, 2, 5)
            assert f"attention/layer{i}/{m}" not in aux
        # with the CLS itself, the CLS row sums to 1; absent modalities get exactly 0
        maps = [aux[k].sum(-1) for k in aux if k.endswith(tuple(specs)) and f"layer{i}/" in k]
        torch.testing.assert_close(sum(maps) + aux[f"cls_self/layer{i}"], torch.ones(n, 2))
        assert (aux[f"cls_self/layer{i}"][-1] == 1).all()  # the last sample has no modality
        for m, b in batch.items():
            key = f"{'memory_slots' if m in model.memories else 'attention'}/layer{i}/{m}"
            assert (aux[key][~b.present] == 0).all(), key
    assert aux["attention/memory0/wsi"].shape == (n, 1, 5, batch["wsi"].data.shape[1])


def test_only_shared_attention_blocks(specs) -> None:
    model = build(specs)
    kinds = {type(mod) for mod in model.modules()}
    assert Attention in kinds
    assert not kinds & {nn.MultiheadAttention, nn.TransformerEncoderLayer}


def test_feature_tokenizer_formula() -> None:
    tok = FeatureTokenizer(4, 3)
    x = torch.randn(2, 4)
    expected = x[..., None] * tok.weight + tok.bias
    torch.testing.assert_close(tok(x), expected)


def test_paper_preset_and_options(specs, inputs) -> None:
    model = build(specs, preset="paper", dim=32, dim_head=8, memory_depth=2, memory_dim=16)
    assert model.missing == "zero_fill" and model.position_encoding == "sinusoid_doubled"
    assert model.modality_embed is None
    out = model(inputs)
    assert torch.isfinite(out.logits["dx"]).all()
    assert SYNERGIES_PRESETS["paper"]["dim"] == 384
    defaults = model_class("synergies").training_defaults({"preset": "paper"})
    assert defaults == {"lr": 4e-5, "weight_decay": 0.01}
    with pytest.raises(ConfigError, match="did you mean"):
        build(specs, preset="papr")
    single = build(specs, tabular_tokens="single", return_attention=False)
    assert not single(inputs).aux


def test_images_are_padded_to_whole_patches() -> None:
    spec = {"xray": ModalitySpec("xray", "image", (1, 20, 20))}
    assert build(spec, patch_size=8).tokenizers["xray"].num_patches == 9  # ceil(20/8)²
    assert build(spec, patch_size=5).tokenizers["xray"].num_patches == 16
