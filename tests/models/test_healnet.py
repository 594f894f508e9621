"""HEALNet: the properties that define it (methods.md §1, §5.5).

The registry-wide tests (shapes, fill-value invariance, masking, batch independence, save/load)
run on it from `test_registry_models.py`; these pin what is specific to HEALNet.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from polyfuse.data.dataset import Batch, ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError, DataError
from polyfuse.models.blocks.attention import Attention
from polyfuse.models.healnet import HEALNET_PRESETS, HEALNET_TRAINING, HEALNet
from polyfuse.models.model import prepare_inputs
from polyfuse.models.registry import create_model, model_hparams

SMALL = dict(num_latents=6, latent_dim=16, cross_dim_head=8, latent_dim_head=8, latent_heads=2)


SURVIVAL = {"os": TaskSpec("os", "survival", n_bins=4)}


@pytest.fixture
def three(specs: dict[str, ModalitySpec]) -> dict[str, ModalitySpec]:
    """The 3-modality toy: a tabular, an image and a bag (padding) modality."""
    return {m: specs[m] for m in ("clinical", "xray", "wsi")}


@pytest.fixture
def toy3(make_dataset, three):
    """12 samples of the 3-modality toy, every modality absent somewhere, present elsewhere."""
    return make_dataset(n=12, seed=3, specs=three)


def build(specs, tasks=None, seed: int = 0, **hparams: Any) -> HEALNet:
    torch.manual_seed(seed)
    model = create_model("healnet", specs, tasks or SURVIVAL, **{**SMALL, **hparams})
    return model.eval()


def without(model: HEALNet, m: str, **hparams: Any) -> HEALNet:
    """A HEALNet built on every modality but `m`, holding the full model's weights.

    Loading is strict: each weight of the smaller model must come from the full one.
    """
    specs = {k: s for k, s in model.specs.items() if k != m}
    smaller = build(specs, model.tasks, seed=1, **hparams)
    state = {k: v for k, v in model.state_dict().items() if m not in k.split(".")}
    smaller.load_state_dict(state, strict=True)
    return smaller.eval()


def outputs(model: nn.Module, inputs: dict[str, ModalityBatch]) -> dict[str, torch.Tensor]:
    out = model(inputs)
    return {**{f"logits/{t}": v for t, v in out.logits.items()}, "embedding": out.embedding}


# ------------------------------------------------------------------------ masked absence

EQUIVALENT = {
    "default": {},
    "self-attention per modality": dict(self_per_cross_attn=1),
    "self-attention per layer": dict(self_per_cross_attn=2, self_attn_per_modality=False),
    "tied weights": dict(depth=3, weight_tie_layers=True, self_per_cross_attn=1),
    "tabular as tokens, GEGLU": dict(tabular_as_tokens=True, snn=False),
    "WSI feature dims": dict(wsi_tokens="feature_dims", max_instances=6),
    "SDPA path": dict(return_attention=False),
}


@pytest.mark.parametrize("hparams", EQUIVALENT.values(), ids=EQUIVALENT.keys())
def test_absent_modality_equals_model_without_it(hparams: dict[str, Any], toy3) -> None:
    """For a sample without m, the output is that of a model built without m (same weights),
    and for a sample with m it is not (so the comparison can fail)."""
    data = toy3
    inputs = data.batch(np.arange(len(data))).inputs
    model = build(data.specs, **hparams)
    full = outputs(model, inputs)
    for m in data.specs:
        smaller = without(model, m, **hparams)
        rest = outputs(smaller, {k: v for k, v in inputs.items() if k != m})
        absent = ~inputs[m].present
        used = inputs[m].present
        if inputs[m].token_mask is not None:
            used = used & inputs[m].token_mask.any(1)
        assert absent.any() and used.any()
        for key in full:
            torch.testing.assert_close(full[key][absent], rest[key][absent], atol=1e-6, rtol=0)
        gap = (full["logits/os"][used] - rest["logits/os"][used]).abs().amax(1)
        assert (gap > 1e-4).all(), f"modality '{m}' changed nothing where present"


def test_every_kind_of_the_toy_is_skipped_exactly(make_dataset) -> None:
    data = make_dataset(n=12, seed=4)
    inputs = data.batch(np.arange(len(data))).inputs
    model = build(data.specs, self_per_cross_attn=1)
    full = outputs(model, inputs)
    for m in data.specs:
        others = {k: v for k, v in inputs.items() if k != m}
        rest = outputs(without(model, m, self_per_cross_attn=1), others)
        absent = ~inputs[m].present
        for key in full:
            torch.testing.assert_close(full[key][absent], rest[key][absent], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "code_behaviour",
    [dict(self_attn_on_missing=True, self_per_cross_attn=1), dict(per_sample_missing=False)],
    ids=["self-attention on missing", "batch-level missingness"],
)
def test_code_flags_break_the_equivalence(code_behaviour: dict[str, Any], toy3) -> None:
    """The flags reproducing the reference code do not skip an absent modality exactly."""
    data = toy3
    inputs = data.batch(np.arange(len(data))).inputs
    model = build(data.specs, **code_behaviour)
    full = outputs(model, inputs)
    m = "clinical"
    rest = outputs(without(model, m, **code_behaviour), {k: v for k, v in inputs.items() if k != m})
    absent = ~inputs[m].present
    assert not torch.allclose(full["embedding"][absent], rest["embedding"][absent], atol=1e-4)


def test_batch_level_missingness_skips_a_modality_absent_from_the_whole_batch(toy3) -> None:
    data = toy3
    inputs = data.batch(np.arange(len(data))).inputs
    code = build(data.specs, per_sample_missing=False)
    intent = build(data.specs)
    # clinical present in every sample, xray absent from the batch, wsi absent in some samples
    clinical = ModalityBatch(inputs["clinical"].data, torch.ones(12, dtype=torch.bool))
    whole = {"clinical": clinical}
    for key, value in outputs(code, whole).items():
        torch.testing.assert_close(value, outputs(intent, whole)[key])
    partial = whole | {"wsi": inputs["wsi"]}
    used = inputs["wsi"].present & inputs["wsi"].token_mask.any(1)
    got, want = outputs(code, partial)["embedding"], outputs(intent, partial)["embedding"]
    torch.testing.assert_close(got[used], want[used])
    assert not torch.allclose(got[~used], want[~used])  # updated from their zero fill


def tcga_acc_inputs() -> tuple[dict[str, ModalitySpec], dict[str, TaskSpec], dict]:
    import polyfuse as pf
    from polyfuse.data.preprocess import Preprocessor

    raw = pf.datasets.load("tcga-acc")
    data = Preprocessor().fit(raw).transform(raw)  # imputes the NaN of present rows
    return data.specs, data.tasks, data.batch(np.arange(len(data))).inputs


def test_absent_modality_equals_model_without_it_on_tcga_acc() -> None:
    specs, tasks, inputs = tcga_acc_inputs()
    assert len(specs) == 6
    model = build(specs, tasks)
    for m in specs:
        # clinical is never missing in TCGA-ACC: take it away from the first 10 patients too
        masked = dict(inputs)
        present = inputs[m].present.clone()
        present[:10] = False
        masked[m] = ModalityBatch(inputs[m].data, present)
        full = outputs(model, masked)
        rest = outputs(without(model, m), {k: v for k, v in inputs.items() if k != m})
        for key in full:
            torch.testing.assert_close(full[key][~present], rest[key][~present], atol=1e-6, rtol=0)
        assert not torch.allclose(full["embedding"][present], rest["embedding"][present])


# ------------------------------------------------------------------------ attention maps


def test_attention_maps_per_layer_and_modality(toy3) -> None:
    data = toy3
    inputs = prepare_inputs(data.batch(np.arange(len(data))).inputs, data.specs)
    model = build(data.specs, depth=2, cross_heads=2, tabular_as_tokens=True)
    aux = model(inputs).aux
    tokens = {"clinical": 7, "xray": 16 * 16, "wsi": inputs["wsi"].data.shape[1]}
    assert set(aux) == {f"attention/layer{i}/{m}" for i in range(2) for m in tokens}
    for i in range(2):
        for m, n in tokens.items():
            w = aux[f"attention/layer{i}/{m}"]
            assert w.shape == (12, 2, 6, n)
            b = inputs[m]
            real = torch.ones(12, n, dtype=torch.bool) if b.token_mask is None else b.token_mask
            used = b.present & real.any(1)
            sums = w.sum(-1)
            torch.testing.assert_close(sums[used], torch.ones_like(sums[used]))
            assert (w[~used] == 0).all()  # skipped samples: no attention at all
            assert (w.permute(0, 3, 1, 2)[~real] == 0).all()  # padding: exactly 0


def test_first_attention_by_hand_with_temperature() -> None:
    """Layer 0 of the first modality sees S = latents; its map, from the raw tokens with their
    Fourier channels written out by hand, is softmax(q·k / √e / 0.5)."""
    specs = {"omics": ModalitySpec("omics", "tabular", (5,))}
    model = build(specs, cross_heads=2, tabular_as_tokens=True)
    x = torch.randn(3, 5)
    aux = model({"omics": ModalityBatch(x, torch.ones(3, dtype=torch.bool))}).aux
    p = torch.linspace(-1, 1, 5)  # one spatial axis of F positions; max_freq 2 → scales [1, 1]
    pos = torch.stack([*[torch.sin(math.pi * p)] * 2, *[torch.cos(math.pi * p)] * 2, p], -1)
    tokens = torch.cat([x[..., None], pos.expand(3, 5, 5)], dim=-1)  # (B, F, 1 + 5)
    block = model.layers[0]["cross"]["omics"]
    q = block.fn.to_q(block.norm(model.latents))  # (L, h·e)
    k = block.fn.to_kv(block.norm_context(tokens))[..., :16]  # (B, F, h·e)
    for h in range(2):
        logits = q[:, h * 8 : (h + 1) * 8] @ k[..., h * 8 : (h + 1) * 8].transpose(1, 2)
        want = torch.softmax(logits / math.sqrt(8) / 0.5, dim=-1)
        torch.testing.assert_close(aux["attention/layer0/omics"][:, h], want)


# ------------------------------------------------------------------------ the forward by hand


def layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """(x − mean) / √(var + eps) · γ + β over the last axis, written out."""
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def leaky_relu(x: torch.Tensor, slope: float) -> torch.Tensor:
    return torch.where(x >= 0, x, slope * x)


def attention_by_hand(
    block: nn.Module, s: torch.Tensor, context: torch.Tensor | None, slope: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """§1(b): LeakyReLU((softmax(Q Kᵀ e^{-1/2} / 0.5) V) W_o + b_o), Q from LN(S), K and V from
    LN_m(X_m) (cross) or LN(S) (self). Returns the output and its pre-activation."""
    attn = block.fn
    x = layer_norm(s, block.norm)
    c = x if context is None else layer_norm(context, block.norm_context)
    inner = attn.to_q.out_features
    e = inner // attn.heads
    q = x @ attn.to_q.weight.T
    kv = c @ attn.to_kv.weight.T
    k, v = kv[..., :inner], kv[..., inner:]
    heads = []
    for h in range(attn.heads):
        part = slice(h * e, (h + 1) * e)
        logits = q[..., part] @ k[..., part].transpose(-1, -2) / math.sqrt(e) / 0.5
        heads.append(torch.softmax(logits, dim=-1) @ v[..., part])
    pre = torch.cat(heads, dim=-1) @ attn.to_out.weight.T + attn.to_out.bias
    return leaky_relu(pre, slope), pre


def feed_forward_by_hand(block: nn.Module, s: torch.Tensor) -> torch.Tensor:
    """LN → Linear(d, 8d) → a ⊙ SELU(g) → Linear(4d, d)."""
    first, last = block.fn.net[0], block.fn.net[2]
    a, g = (layer_norm(s, block.norm) @ first.weight.T + first.bias).chunk(2, dim=-1)
    return (a * torch.nn.functional.selu(g)) @ last.weight.T + last.bias


def healnet_by_hand(
    model: HEALNet, x: torch.Tensor, slope: float
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The whole forward of §1(b) for one tabular modality of F tokens (all present, untied):
    per layer S += CrossAttn(LN S, LN X); S += FF(LN S); [S += SelfAttn(LN S); S += FF(LN S)];
    then logits = head(LN(mean over L of S)). Returns (logits, embedding, pre-activations)."""
    b, f = x.shape
    p = torch.linspace(-1, 1, f, dtype=x.dtype)  # one axis of F positions, scales [1, 1]
    pos = torch.stack([*[torch.sin(math.pi * p)] * 2, *[torch.cos(math.pi * p)] * 2, p], -1)
    tokens = torch.cat([x[..., None], pos.expand(b, f, 5)], dim=-1)
    s = model.latents.expand(b, *model.latents.shape)
    pres = []
    for layer in model.layers:
        delta, pre = attention_by_hand(layer["cross"]["omics"], s, tokens, slope)
        s = s + delta
        s = s + feed_forward_by_hand(layer["cross_ff"]["omics"], s)
        pres.append(pre)
        for attn, ff in layer["latent"]:
            delta, pre = attention_by_hand(attn, s, None, slope)
            s = s + delta
            s = s + feed_forward_by_hand(ff, s)
            pres.append(pre)
    embedding = layer_norm(s.mean(dim=1), model.norm)
    head = model.heads["os"]
    return embedding @ head.weight.T + head.bias, embedding, pres


BY_HAND = {"cross-attention only": {}, "with self-attention": dict(self_per_cross_attn=1)}


@pytest.mark.parametrize("hparams", BY_HAND.values(), ids=BY_HAND.keys())
def test_forward_equals_the_specification_by_hand(hparams: dict[str, Any]) -> None:
    """Two layers of HEALNet equal the forward written out from methods.md §1(b) in float64,
    with LeakyReLU(0.01) after every attention and the head on the mean over the latents;
    the same computation without the LeakyReLU, or with max-pooling, is far off."""
    specs = {"omics": ModalitySpec("omics", "tabular", (5,))}
    model = build(specs, depth=2, cross_heads=2, tabular_as_tokens=True, **hparams).double()
    torch.manual_seed(1)
    x = torch.randn(4, 5, dtype=torch.float64)
    out = model({"omics": ModalityBatch(x, torch.ones(4, dtype=torch.bool))})
    with torch.no_grad():
        logits, embedding, pres = healnet_by_hand(model, x, slope=0.01)
        linear, _, _ = healnet_by_hand(model, x, slope=1.0)
    torch.testing.assert_close(out.embedding, embedding, atol=1e-10, rtol=0)
    torch.testing.assert_close(out.logits["os"], logits, atol=1e-10, rtol=0)
    assert len(pres) == 2 * (1 + hparams.get("self_per_cross_attn", 0))
    for pre in pres:  # every attention has negative outputs for the LeakyReLU to act on
        assert (pre < 0).float().mean() > 0.2
    assert (out.logits["os"] - linear).abs().max() > 1e-2

    plain = build(
        specs, depth=2, cross_heads=2, tabular_as_tokens=True, attn_leaky_relu=False, **hparams
    ).double()
    plain.load_state_dict(model.state_dict())
    got = plain({"omics": ModalityBatch(x, torch.ones(4, dtype=torch.bool))}).logits["os"]
    torch.testing.assert_close(got, linear, atol=1e-10, rtol=0)


def zero_updates(model: HEALNet) -> None:
    """Every residual update of S adds exactly 0 (output projections and their biases zeroed),
    so S stays the latent array whatever the input."""
    with torch.no_grad():
        for layer in model.layers:
            blocks = [*layer["cross"].values(), *layer["cross_ff"].values()]
            blocks += [block for pair in layer["latent"] for block in pair]
            for block in blocks:
                out = block.fn.to_out if isinstance(block.fn, Attention) else block.fn.net[2]
                out.weight.zero_()
                out.bias.zero_()


# latents chosen so that their mean over L is [1, −1, 1, −1], while their max is [3, 1, 2, 0]
# and the first latent [3, −1, 0, −2]
HAND_LATENTS = [[3.0, -1.0, 0.0, -2.0], [0.0, -3.0, 2.0, 0.0], [0.0, 1.0, 1.0, -1.0]]


def test_head_is_a_linear_map_of_the_mean_latent() -> None:
    """With S = the latent array (all updates zero), embedding = LN(mean_L S) = [1, −1, 1, −1]
    / √(1 + 1e-5) and the logits are the head's linear map of it, for any input."""
    specs = {"omics": ModalitySpec("omics", "tabular", (3,))}
    model = build(specs, num_latents=3, latent_dim=4, cross_dim_head=2, self_per_cross_attn=1)
    zero_updates(model)
    with torch.no_grad():
        model.latents.copy_(torch.tensor(HAND_LATENTS))
        model.heads["os"].weight.copy_(
            torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 1], [1, -1, 1, -1]])
        )
        model.heads["os"].bias.copy_(torch.tensor([0.5, 0.0, 0.0, -1.0]))
    out = model({"omics": ModalityBatch(torch.randn(2, 3), torch.ones(2, dtype=torch.bool))})
    c = 1 / math.sqrt(1 + 1e-5)
    want = torch.tensor([c, -c, c, -c]).expand(2, 4)
    torch.testing.assert_close(out.embedding, want, atol=1e-6, rtol=0)
    logits = torch.tensor([c + 0.5, -c, 0.0, 4 * c - 1]).expand(2, 4)
    torch.testing.assert_close(out.logits["os"], logits, atol=1e-6, rtol=0)


@pytest.mark.parametrize("where", ["cross", "self"])
@pytest.mark.parametrize("leaky", [True, False], ids=["leaky", "no-leaky"])
def test_attention_output_goes_through_leaky_relu_by_hand(where: str, leaky: bool) -> None:
    """One layer with every update zero but one attention's output bias b_o = [1, −2, 0.5, −4]:
    S = latents + act(b_o), act = LeakyReLU(0.01) by default ([1, −0.02, 0.5, −0.04]), the
    identity with attn_leaky_relu=False. The embedding is LN([1, −1, 1, −1] + act(b_o))."""
    specs = {"omics": ModalitySpec("omics", "tabular", (3,))}
    model = build(
        specs,
        depth=1,
        num_latents=3,
        latent_dim=4,
        cross_dim_head=2,
        latent_heads=1,
        latent_dim_head=2,
        self_per_cross_attn=1,
        **({} if leaky else dict(attn_leaky_relu=False)),  # leaky: the default
    )
    zero_updates(model)
    layer = model.layers[0]
    attn = layer["cross"]["omics"].fn if where == "cross" else layer["latent"][0][0].fn
    with torch.no_grad():
        model.latents.copy_(torch.tensor(HAND_LATENTS))
        attn.to_out.bias.copy_(torch.tensor([1.0, -2.0, 0.5, -4.0]))
    out = model({"omics": ModalityBatch(torch.randn(2, 3), torch.ones(2, dtype=torch.bool))})
    act = [1.0, -0.02, 0.5, -0.04] if leaky else [1.0, -2.0, 0.5, -4.0]
    v = [m + a for m, a in zip([1.0, -1.0, 1.0, -1.0], act, strict=True)]
    mu = sum(v) / 4
    sd = math.sqrt(sum((vi - mu) ** 2 for vi in v) / 4 + 1e-5)
    want = torch.tensor([(vi - mu) / sd for vi in v]).expand(2, 4)
    torch.testing.assert_close(out.embedding, want, atol=1e-6, rtol=0)


def test_explicit_and_sdpa_paths_give_the_same_model(make_dataset) -> None:
    data = make_dataset(n=12, seed=3)
    inputs = data.batch(np.arange(len(data))).inputs
    explicit = build(data.specs, self_per_cross_attn=1)
    fast = build(data.specs, self_per_cross_attn=1, return_attention=False)
    fast.load_state_dict(explicit.state_dict())
    assert fast(inputs).aux == {}
    for key, value in outputs(explicit, inputs).items():
        torch.testing.assert_close(outputs(fast, inputs)[key], value, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------ parameters


def expected_parameters(depth: int, tied: bool, n_self: int) -> int:
    """Counts of methods.md §1(h), for SMALL on the 3-modality toy and one survival task."""
    d, heads, e, lh, le = 16, 1, 8, 2, 8
    token_dims = [7 + 5, 1 + 2 * 5, 12]  # tabular F + (2K+1); image C + 2·(2K+1); bag D
    cross = [
        d * heads * e + t * 2 * heads * e + heads * e * d + d + 2 * d + 2 * t for t in token_dims
    ]
    ff = d * 8 * d + 8 * d + 4 * d * d + d + 2 * d
    latent = d * lh * le + d * 2 * lh * le + lh * le * d + d + 2 * d + ff
    rest = 6 * d + 2 * d + d * 4 + 4  # latents, final LN, survival head of 4 bins
    layer = sum(cross) + 3 * ff + n_self * latent
    if not tied or depth == 1:
        return rest + depth * layer
    # layer 0 is its own; layers 1.. share one set: own cross-attentions, one cross-FF
    return rest + layer + sum(cross) + ff + n_self * latent


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.filterwarnings(
    "ignore:weight_tie_layers has no effect:polyfuse.errors.FallbackWarning"
)
@pytest.mark.parametrize("n_self", [0, 1])
def test_parameter_counts_with_and_without_weight_tying(n_self: int, three) -> None:
    specs = three
    for depth in (1, 2, 5):
        untied = build(specs, depth=depth, self_per_cross_attn=n_self)
        assert count(untied) == expected_parameters(depth, False, n_self)
        tied = build(specs, depth=depth, self_per_cross_attn=n_self, weight_tie_layers=True)
        assert count(tied) == expected_parameters(depth, True, n_self)
    grow = [count(build(specs, depth=k, weight_tie_layers=True)) for k in (2, 3, 5)]
    assert grow[0] == grow[1] == grow[2]  # no growth after layer 1
    tied = build(specs, depth=3, weight_tie_layers=True)
    assert len(tied.layers) == 2 and tied.layer_order == [0, 1, 1]
    assert "shared_ff" in tied.layers[1] and "cross_ff" not in tied.layers[1]
    assert "cross_ff" in tied.layers[0] and "shared_ff" not in tied.layers[0]


def test_tied_weights_are_stored_once(three, tmp_path) -> None:
    """Every tensor appears once in the state_dict, so safetensors (the run format) saves it."""
    from safetensors.torch import load_file, save_file

    model = build(three, depth=4, weight_tie_layers=True, self_per_cross_attn=1)
    state = model.state_dict()
    assert len({v.data_ptr() for v in state.values()}) == len(state)
    save_file(state, str(tmp_path / "w.safetensors"))
    other = build(three, depth=4, weight_tie_layers=True, self_per_cross_attn=1, seed=1)
    other.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    x = {"clinical": ModalityBatch(torch.randn(2, 7), torch.ones(2, dtype=torch.bool))}
    torch.testing.assert_close(model(x).embedding, other(x).embedding)


def tied_state_for_untied(tied: HEALNet) -> dict[str, torch.Tensor]:
    """The tied model's weights laid out for the untied one: layer i ← tied layer order[i], and
    the one shared cross-FF ← every modality's cross-FF."""
    state = {}
    for key, value in tied.state_dict().items():
        head, *rest = key.split(".")
        if head != "layers":
            state[key] = value
            continue
        index, block, *tail = rest
        for i in (i for i, j in enumerate(tied.layer_order) if j == int(index)):
            if block == "shared_ff":
                for m in tied.specs:
                    state[".".join(["layers", str(i), "cross_ff", m, *tail])] = value.clone()
            else:
                state[".".join(["layers", str(i), block, *tail])] = value.clone()
    return state


def test_tied_layers_share_weights_and_gradients_untied_layers_do_not(toy3) -> None:
    """Tied = the untied model whose layers 1..3 hold one copy of the same weights (one cross-FF
    for every modality) run three times: same outputs, and the shared weights' gradient is the
    sum of their copies'. Untied layers hold their own tensors and get their own gradients."""
    inputs = toy3.batch(np.arange(len(toy3))).inputs
    hparams = dict(depth=4, self_per_cross_attn=1)
    tied = build(toy3.specs, weight_tie_layers=True, **hparams)
    untied = build(toy3.specs, seed=1, **hparams)
    untied.load_state_dict(tied_state_for_untied(tied), strict=True)
    out_tied, out_untied = tied(inputs), untied(inputs)
    torch.testing.assert_close(out_tied.embedding, out_untied.embedding)
    torch.testing.assert_close(out_tied.logits["os"], out_untied.logits["os"])
    maps = [out_tied.aux[f"attention/layer{i}/xray"] for i in range(4)]
    assert (maps[2] - maps[1]).abs().max() > 1e-6  # the shared layer runs at depths 1, 2, 3

    out_tied.logits["os"].sum().backward()
    out_untied.logits["os"].sum().backward()
    copies = [dict(untied.layers[i].named_parameters()) for i in range(4)]
    for name, p in tied.layers[1].named_parameters():
        block, *tail = name.split(".")
        names = [".".join(["cross_ff", m, *tail]) for m in toy3.specs]
        expected = sum(
            c[n].grad for c in copies[1:] for n in (names if block == "shared_ff" else [name])
        )
        torch.testing.assert_close(p.grad, expected, rtol=1e-4, atol=1e-6, msg=name)
    for name, p in tied.layers[0].named_parameters():
        torch.testing.assert_close(p.grad, copies[0][name].grad, msg=name)

    # untied: every tensor stored once per layer, each layer with a gradient of its own
    assert len({p.data_ptr() for p in untied.parameters()}) == len(list(untied.parameters()))
    q = "cross.xray.fn.to_q.weight"
    assert (copies[1][q].grad - copies[2][q].grad).abs().max() > 1e-6


# ------------------------------------------------------------------------ presets


def test_presets_load_and_can_be_overridden(three, tasks) -> None:
    specs = three
    torch.manual_seed(0)
    blca = create_model("healnet", specs, tasks, preset="blca")
    assert blca.latents.shape == (25, 119) and len(blca.layers) == 2
    attn = blca.layers[0]["cross"]["xray"].fn
    assert attn.heads == 1 and attn.to_q.out_features == 16 and attn.dropout == 0.0830
    custom = create_model("healnet", specs, tasks, preset="BLCA", depth=3, num_latents=4)
    assert custom.latents.shape == (4, 119) and len(custom.layers) == 3
    assert custom.layers[0]["cross"]["xray"].fn.to_q.out_features == 16  # rest from the preset
    with pytest.raises(ConfigError, match="did you mean 'blca'"):
        create_model("healnet", specs, tasks, preset="blcaa")


def test_presets_are_hyperparameters_and_training_settings() -> None:
    from polyfuse.config import TrainingConfig

    known = model_hparams("healnet")
    assert "preset" in known
    assert {"blca", "brca", "kirp", "ucec", "reference"} <= set(HEALNET_PRESETS)
    for name, values in HEALNET_PRESETS.items():
        assert set(values) <= set(known), name
    assert HEALNET_PRESETS["kirp"]["depth"] == 5 and HEALNET_PRESETS["ucec"]["latent_dim"] == 65
    for cohort, values in HEALNET_TRAINING.items():
        config = TrainingConfig(**values)
        assert config.class_weights == "inverse" and config.batch_size == 4, cohort
        assert config.lr_schedule == "onecycle" and config.lr == 0.008, cohort  # the code's
    assert HEALNET_TRAINING["ucec"]["l1"] == pytest.approx(16 * 3.185e-4)


@pytest.mark.parametrize("cohort", ["blca", "brca", "kirp", "ucec"])
def test_tuned_configs_have_no_self_attention(cohort: str) -> None:
    specs = {
        "omics": ModalitySpec("omics", "tabular", (30,)),
        "wsi": ModalitySpec("wsi", "bag", (12,)),
    }
    model = create_model("healnet", specs, SURVIVAL, preset=cohort)
    names = [n for n, mod in model.named_modules() if isinstance(mod, Attention)]
    assert len(names) == HEALNET_PRESETS[cohort]["depth"] * 2
    assert all(".cross." in n for n in names)
    assert all(len(layer["latent"]) == 0 for layer in model.layers)
    reference = create_model("healnet", specs, SURVIVAL, preset="reference")
    assert all(len(layer["latent"]) == 1 for layer in reference.layers)


# ------------------------------------------------------------------------ inputs


def test_raw_token_widths_include_fourier_channels(specs) -> None:
    model = build(specs)
    assert model.token_dims == {
        "clinical": 7 + 5,  # 1 token of F channels + one axis of 2K+1
        "xray": 1 + 2 * 5,
        "ct": 1 + 3 * 5,
        "wsi": 12,  # unordered instances: no positions
        "labs": 2 * 3 + 8,  # values + observed indicators + time channels
        "report": 16 + 8,  # learned embedding + index channels
    }
    assert build(specs, tabular_as_tokens=True).token_dims["clinical"] == 1 + 5
    assert build(specs, fourier_encode_data=False).token_dims["xray"] == 1
    assert not any(p.requires_grad for p in model.fourier._cache.values())


def test_fourier_channels_are_cached_per_shape(toy3) -> None:
    data = toy3
    inputs = data.batch(np.arange(len(data))).inputs
    model = build(data.specs)
    model(inputs)
    cached = dict(model.fourier._cache)
    model(inputs)
    assert set(cached) == set(model.fourier._cache)
    assert all(model.fourier._cache[k] is v for k, v in cached.items())


def test_wrong_inputs_raise_naming_the_modality(make_dataset) -> None:
    data = make_dataset(n=12, seed=3)
    inputs = data.batch(np.arange(len(data))).inputs
    model = build(data.specs)
    bad = dict(inputs)
    bad["xray"] = ModalityBatch(inputs["xray"].data[..., :8, :], inputs["xray"].present)
    with pytest.raises(DataError, match="'xray'"):
        model(bad)
    bad = dict(inputs)
    ids = inputs["report"].data.clone()
    ids[inputs["report"].token_mask] = 64  # outside the vocabulary of 64
    bad["report"] = ModalityBatch(ids, inputs["report"].present, inputs["report"].token_mask)
    with pytest.raises(DataError, match="'report'"):
        model(bad)
    narrow = build(data.specs, wsi_tokens="feature_dims", max_instances=2)
    with pytest.raises(DataError, match=r"'wsi'.*max_instances"):
        narrow(inputs)


def test_bad_settings_raise_config_errors(three) -> None:
    specs = three
    with pytest.raises(ConfigError, match="max_instances"):
        build(specs, wsi_tokens="feature_dims")
    with pytest.raises(ConfigError, match="wsi_tokens"):
        build(specs, wsi_tokens="tiles")
    with pytest.raises(ConfigError, match="depth"):
        build(specs, depth=0)


# ------------------------------------------------------------------------ loss


def test_training_loss_by_hand() -> None:
    """The engine's HEALNet objective: MCAT NLL (α = 0.4, bin weights) + l1·Σ|θ| (§1(e))."""
    from polyfuse.tasks.objective import TaskObjective
    from polyfuse.training.module import FusionModule

    specs = {"omics": ModalitySpec("omics", "tabular", (4,))}
    tasks = SURVIVAL
    model = build(specs)
    objective = TaskObjective(tasks["os"], alpha=0.4, class_weights="inverse")
    objective.cuts.copy_(torch.tensor([0.0, 10.0, 20.0, 30.0, 100.0]))
    objective.weights.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    module = FusionModule(model, nn.ModuleDict({"os": objective}), l1=1e-3)
    x = torch.randn(3, 4)
    inputs = {"omics": ModalityBatch(x, torch.ones(3, dtype=torch.bool))}
    target = torch.tensor([[5.0, 1.0], [25.0, 0.0], [35.0, 1.0]])  # bins 0, 2, 3
    got = module.loss(Batch(inputs, {"os": target}, torch.arange(3)))

    logits = model(inputs).logits["os"].tolist()
    total = 0.0
    for row, y, event in zip(logits, (0, 2, 3), (1, 0, 1), strict=True):
        h = [1 / (1 + math.exp(-v)) for v in row]
        s_pad = [1.0]
        for hk in h:
            s_pad.append(s_pad[-1] * (1 - hk))
        c = 1 - event
        unc = -(1 - c) * (math.log(max(s_pad[y], 1e-7)) + math.log(max(h[y], 1e-7)))
        cen = -c * math.log(max(s_pad[y + 1], 1e-7))
        total += 0.6 * (cen + unc) * (0.1, 0.2, 0.3, 0.4)[y] + 0.4 * unc
    l1 = 1e-3 * sum(p.abs().sum().item() for p in model.parameters())
    assert got.item() == pytest.approx(total / 3 + l1, rel=1e-5)


@pytest.mark.slow
def test_cross_validates_on_tcga_acc() -> None:
    """HEALNet learns survival on TCGA-ACC: every patient is scored once out of fold, and every
    test fold ranks patients well above chance (c-index 0.5). With these defaults (seed 0) the
    folds gave c-index 0.805 ± 0.042 (0.76 to 0.86) and Uno's 0.769 ± 0.028."""
    import polyfuse as pf

    data = pf.datasets.load("tcga-acc")
    result = pf.cross_validate("healnet", data, folds=5, repeats=1, progress=False)
    assert sorted(result.predictions["id"]) == sorted(data.ids)
    metrics = result.folds[result.folds["task"] == "os"]
    c_index = metrics[metrics["metric"] == "c_index"].set_index("fold")["value"]
    assert sorted(c_index.index) == [0, 1, 2, 3, 4]
    assert c_index.mean() > 0.7 and c_index.min() > 0.6, c_index.to_dict()
    uno = metrics[metrics["metric"] == "uno_c_index"]["value"]
    assert uno.mean() > 0.65 and uno.min() > 0.55, uno.tolist()
