"""Learnable synergies (LSMT): the properties that define it (methods.md §3, §5.5).

The registry-wide tests (shapes, fill-value invariance, masking, batch independence, save/load)
run on it from `test_registry_models.py`; these pin what is specific to the method: the absent
modality = model-without-it equivalence, the memory's fixed output size, the attention maps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


@pytest.mark.filterwarnings("ignore:synergies. missing=.zero_fill:polyfuse.errors.FallbackWarning")
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


def _memory(**options: Any) -> PerceiverMemory:
    torch.manual_seed(0)
    sizes = dict(num_latents=6, latent_dim=12, depth=2, cross_heads=1, cross_dim_head=8)
    sizes |= dict(heads=2, dim_head=8, ff_mult=2, attn_dropout=0.0, ff_dropout=0.0)
    return PerceiverMemory(16, **{**sizes, **options}).eval()


def _layer_norm(x: Tensor, norm: nn.LayerNorm) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps)


def _attention(x: Tensor, context: Tensor, mask: Tensor | None, attn: Attention) -> Tensor:
    """Multi-head softmax(Q Kᵀ / √e) V W_o + b_o by hand, masked keys excluded."""
    h = attn.heads
    q = attn.to_q(x).unflatten(-1, (h, -1)).transpose(1, 2)  # (B, h, N, e)
    k, v = attn.to_kv(context).chunk(2, dim=-1)
    k, v = (t.unflatten(-1, (h, -1)).transpose(1, 2) for t in (k, v))
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        logits = logits.masked_fill(~mask[:, None, None, :], -math.inf)
    out = (logits.softmax(-1) @ v).transpose(1, 2).flatten(2)
    return attn.to_out(out)


def _geglu(x: Tensor, ff: nn.Module) -> Tensor:
    first, _, second, _ = ff.net
    a, g = first(x).chunk(2, dim=-1)
    return second(a * F.gelu(g))


def test_memory_layer_order_by_hand() -> None:
    """methods.md §3(b)2: per layer Z += CrossAttn(LN Z, LN X); Z += FF(LN Z); Z += SelfAttn(LN Z);
    Z += FF(LN Z); then Linear(d_z → d). Recomputed from the weights with explicit formulas."""
    memory = _memory()
    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(3, 9, 16, generator=g)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 4:] = False
    z = memory.latents.expand(3, -1, -1)
    for layer in memory.layers:
        cross, latent = layer["cross"], layer["latent"]
        context = _layer_norm(tokens, cross.attn.norm_context)
        z = z + _attention(_layer_norm(z, cross.attn.norm), context, mask, cross.attn.fn)
        z = z + _geglu(_layer_norm(z, cross.ff.norm), cross.ff.fn)
        normed = _layer_norm(z, latent.attn.norm)
        z = z + _attention(normed, normed, None, latent.attn.fn)
        z = z + _geglu(_layer_norm(z, latent.ff.norm), latent.ff.fn)
    expected = memory.out(z)
    with torch.no_grad():
        for return_weights in (False, True):
            slots, _ = memory(tokens, mask, return_weights=return_weights)
            torch.testing.assert_close(slots, expected.detach(), atol=1e-5, rtol=1e-5)


def test_memory_latents_interact_through_self_attention() -> None:
    """Cross-attention and feed-forward treat each latent on its own; only the latents'
    self-attention mixes them, so changing latent 0 changes every other slot, and stops doing
    so when the self-attention's output is zeroed."""
    tokens = torch.randn(2, 9, 16, generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 9, dtype=torch.bool)
    # not a constant shift, which every LayerNorm would remove
    kick = torch.randn(12, generator=torch.Generator().manual_seed(3))
    for depth in (1, 2):
        memory = _memory(depth=depth)
        with torch.no_grad():
            base, _ = memory(tokens, mask)
            memory.latents[0] += kick
            moved, _ = memory(tokens, mask)
        change = (moved - base).abs().amax(dim=(0, 2))  # per slot
        assert change[0] > 1e-3
        assert (change[1:] > 1e-5).all(), (depth, change)
        # control: without the self-attention update, the other slots stay exactly the same
        with torch.no_grad():
            for layer in memory.layers:
                layer["latent"].attn.fn.to_out.weight.zero_()
                layer["latent"].attn.fn.to_out.bias.zero_()
            base, _ = memory(tokens, mask)
            memory.latents[0] -= kick
            moved, _ = memory(tokens, mask)
        change = (moved - base).abs().amax(dim=(0, 2))
        assert change[0] > 1e-3 and (change[1:] == 0).all()


def test_memory_self_attention_reaches_the_prediction(specs, inputs) -> None:
    """Perturbing a memory's latent self-attention changes the prediction of exactly the samples
    holding that modality (mask mode: a memory of no real token is masked)."""
    model = build(specs)
    with torch.no_grad():
        base = model(inputs).embedding
        for p in model.memories["labs"].layers[0]["latent"].attn.parameters():
            p.add_(torch.randn_like(p))
        changed = model(inputs).embedding
    real = inputs["labs"].token_mask.any(dim=1)
    assert real.any() and (~real).any()
    per_sample = (changed - base).abs().amax(dim=1)
    assert (per_sample[real] > 1e-4).all()
    assert (per_sample[~real] < 1e-6).all()


def _sinusoid(n: int, dim: int, max_period: float = 10_000.0) -> Tensor:
    """The Transformer's encoding by its formula: PE(p, 2i) = sin(p ω_i), PE(p, 2i+1) = cos(p ω_i),
    ω_i = max_period^(-2i/dim)."""
    pe = torch.zeros(n, dim)
    for p in range(n):
        for i in range(dim // 2):
            omega = max_period ** (-2 * i / dim)
            pe[p, 2 * i], pe[p, 2 * i + 1] = math.sin(p * omega), math.cos(p * omega)
    return pe


def _joint_input(
    model: Synergies, batch: dict[str, ModalityBatch]
) -> tuple[Tensor, Tensor, Tensor]:
    """`(input of the first joint layer, its key mask, the embedding)` of one forward pass."""
    seen: dict[str, Tensor] = {}

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        seen["x"], seen["mask"] = args[0].detach().clone(), kwargs["mask"]

    handle = model.layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            embedding = model(batch).embedding
    finally:
        handle.remove()
    return seen["x"], seen["mask"], embedding


@pytest.mark.parametrize(
    ("encoding", "scale"), [("none", 1.0), ("sinusoid", 1.0), ("sinusoid_doubled", 2.0)]
)
def test_position_encoding_of_the_joint_sequence(encoding: str, scale: float) -> None:
    """methods.md §3(b)3: the joint sequence gets a sinusoid over its positions (CLS at 0); the
    paper's code adds it as `x += pos_embedding(x)` = x + (x + PE), so X ← 2X + PE. The first
    joint layer reads exactly that, and the prediction is the joint stack run on it."""
    specs = {
        "clinical": ModalitySpec("clinical", "tabular", (7,)),
        "labs": ModalitySpec("labs", "sequence", (3,)),
    }
    batch = _sequence_batch(6)
    plain, _, _ = _joint_input(build(specs), batch)  # X: CLS, 7 feature tokens, 5 slots
    model = build(specs, position_encoding=encoding)  # same seed: the same weights
    x, key_mask, embedding = _joint_input(model, batch)
    assert plain.shape == (2, 1 + 7 + 5, 16)
    pe = _sinusoid(plain.shape[1], 16) if encoding != "none" else torch.zeros(())
    torch.testing.assert_close(x, scale * plain + pe, atol=1e-5, rtol=1e-5)
    if encoding != "none":
        assert (x - plain).abs().max() > 0.5  # the encoding is not negligible
    with torch.no_grad():
        for layer in model.layers:
            x, _ = layer(x, mask=key_mask)
        torch.testing.assert_close(embedding, model.norm(x[:, 0]))


def test_position_encoding_makes_slot_order_matter() -> None:
    """The memory is equivariant in its latents and the joint attention in its tokens, so without
    an encoding reordering the latents (hence the slots) leaves the prediction as it was; the
    sinusoid ties each slot to its position, so the same reordering changes it. With the same
    weights, X, X + PE and 2X + PE give three different predictions."""
    specs = {
        "clinical": ModalitySpec("clinical", "tabular", (7,)),
        "labs": ModalitySpec("labs", "sequence", (3,)),
    }
    batch = _sequence_batch(6)
    outputs = {}
    for encoding in ("none", "sinusoid", "sinusoid_doubled"):
        model = build(specs, position_encoding=encoding)
        with torch.no_grad():
            outputs[encoding] = model(batch).embedding
            latents = model.memories["labs"].latents
            latents.copy_(latents.flip(0))
            reordered = model(batch).embedding
        if encoding == "none":
            torch.testing.assert_close(reordered, outputs[encoding], atol=1e-5, rtol=1e-5)
        else:
            assert (reordered - outputs[encoding]).abs().max() > 1e-3, encoding
    for a, b in (("none", "sinusoid"), ("sinusoid", "sinusoid_doubled")):
        assert (outputs[a] - outputs[b]).abs().max() > 1e-3, (a, b)


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


@pytest.mark.filterwarnings("ignore:synergies. missing=.zero_fill:polyfuse.errors.FallbackWarning")
def test_paper_preset_and_options(specs, inputs) -> None:
    model = build(specs, preset="paper", dim=32, dim_head=8, memory_depth=2, memory_dim=16)
    assert model.missing == "zero_fill" and model.position_encoding == "sinusoid_doubled"
    assert model.modality_embed is None
    out = model(inputs)
    assert torch.isfinite(out.logits["dx"]).all()
    assert SYNERGIES_PRESETS["paper"]["dim"] == 384
    defaults = model_class("synergies").training_defaults({"preset": "paper"})
    assert defaults == {"lr": 4e-5, "weight_decay": 0.01, "lr_schedule": "cosine"}
    with pytest.raises(ConfigError, match="did you mean"):
        build(specs, preset="papr")
    single = build(specs, tabular_tokens="single", return_attention=False)
    assert not single(inputs).aux


def test_images_are_padded_to_whole_patches() -> None:
    spec = {"xray": ModalitySpec("xray", "image", (1, 20, 20))}
    assert build(spec, patch_size=8).tokenizers["xray"].num_patches == 9  # ceil(20/8)²
    assert build(spec, patch_size=5).tokenizers["xray"].num_patches == 16
