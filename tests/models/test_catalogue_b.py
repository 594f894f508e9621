"""The property that defines each of mcat, mult, perceiver, dfg and mm_prognosis.

Forward, backward, masking and save/load are tested for every registered model in
`test_registry_models.py`; here only what makes each method itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyfuse.errors import ConfigError
from polyfuse.models.baselines.mm_prognosis import similarity_loss
from polyfuse.models.blocks.tokenizers import ModalityTokenizer
from polyfuse.models.registry import create_model


def _subset(specs, names):
    return {m: specs[m] for m in names}


# ------------------------------------------------------------------------------ tokenizers


def test_tokenizer_kinds_give_tokens_and_masks(specs, inputs) -> None:
    expected = {"clinical": 3, "xray": 16, "ct": 8}  # 3 groups; 4×4 and 2×2×2 patches of 4
    for m, spec in specs.items():
        x, mask = ModalityTokenizer(spec, 8, tabular_groups=3, patch_size=4)(inputs[m])
        assert x.shape[:2] == mask.shape and x.shape[2] == 8
        if m in expected:
            assert mask.shape[1] == expected[m]
        assert (x[~mask] == 0).all()  # nothing under the mask, so no fill value can leak
        assert not mask[~inputs[m].present].any()


def test_tokenizer_pads_images_to_whole_patches() -> None:
    from polyfuse.data.dataset import ModalityBatch
    from polyfuse.data.specs import ModalitySpec

    spec = ModalitySpec("img", "image", (2, 10, 7))
    x, mask = ModalityTokenizer(spec, 4, patch_size=4)(
        ModalityBatch(torch.randn(3, 2, 10, 7), torch.ones(3, dtype=torch.bool))
    )
    assert x.shape == (3, 3 * 2, 4) and mask.all()


# ------------------------------------------------------------------------------------ mcat


def test_mcat_streams_per_query_and_other(specs, tasks) -> None:
    model = create_model("mcat", specs, tasks)
    assert model.queries == ["clinical"]  # default: the tabular (omics) modalities
    assert set(model.coattention["clinical"]) == set(specs) - {"clinical"}
    assert set(model.streams["clinical"]) == set(specs)  # (q, o) for o ≠ q, and (q, q)
    exact = create_model("mcat", specs, tasks, context_streams=False)
    assert list(exact.streams) == ["clinical"]
    two = create_model("mcat", specs, tasks, queries=["clinical", "labs"])
    n = len(specs)
    assert sum(len(c) for c in two.coattention.values()) == 2 * (n - 1)
    assert sum(len(s) for s in two.streams.values()) == 2 * n + (n - 2)


def test_mcat_coattention_guided_by_queries_and_zero_without_context(specs, tasks, inputs) -> None:
    model = create_model("mcat", specs, tasks).eval()
    out = model(inputs)
    w = out.aux["coattention/clinical/wsi"]
    n_groups = 6  # min(tabular_groups=6, 7 features)
    assert w.shape[2] == n_groups and w.shape[3] == inputs["wsi"].data.shape[1]
    used = inputs["clinical"].present & inputs["wsi"].present & inputs["wsi"].token_mask.any(1)
    torch.testing.assert_close(w[used].sum(-1), torch.ones_like(w[used].sum(-1)))
    assert (w[~used] == 0).all()


def test_mcat_rejects_unknown_query(specs, tasks) -> None:
    with pytest.raises(ConfigError, match="did you mean"):
        create_model("mcat", specs, tasks, queries=["clinicl"])


# ------------------------------------------------------------------------------------ mult


@pytest.mark.parametrize("names", [("clinical", "wsi"), ("clinical", "wsi", "labs"), None])
def test_mult_has_m_times_m_minus_one_cross_modal_blocks(specs, tasks, names) -> None:
    chosen = specs if names is None else _subset(specs, names)
    model = create_model("mult", chosen, tasks)
    n = len(chosen)
    pairs = [(a, b) for b, sources in model.cross.items() for a in sources]
    assert len(pairs) == n * (n - 1)
    assert all(a != b for a, b in pairs) and len(set(pairs)) == len(pairs)


def test_mult_is_directional(specs, tasks, inputs) -> None:
    """Changing the clinical → wsi transformer changes the wsi stream only, not clinical's."""
    chosen = _subset(specs, ("clinical", "wsi"))
    model = create_model("mult", chosen, tasks).eval()
    batch = {m: inputs[m] for m in chosen}
    seen: dict[str, torch.Tensor] = {}

    def run() -> dict[str, torch.Tensor]:
        hooks = [
            model.self_attention[b][0].register_forward_hook(
                lambda mod, args, out, b=b: seen.__setitem__(b, out[0])
            )
            for b in chosen
        ]
        with torch.no_grad():
            model(batch)
        for h in hooks:
            h.remove()
        return dict(seen)

    base = run()
    with torch.no_grad():
        for p in model.cross["wsi"]["clinical"].parameters():  # clinical → wsi
            p.add_(torch.randn_like(p))
    changed = run()
    assert torch.equal(base["clinical"], changed["clinical"])
    both = inputs["clinical"].present & inputs["wsi"].present & inputs["wsi"].token_mask.any(1)
    real = inputs["wsi"].token_mask[both]
    assert (base["wsi"][both][real] - changed["wsi"][both][real]).abs().max() > 1e-6


# ------------------------------------------------------------------------------- perceiver


def test_perceiver_one_softmax_over_all_modalities(specs, tasks, inputs) -> None:
    model = create_model("perceiver", specs, tasks).eval()
    # single stream: one cross-attention per layer, whatever the number of modalities
    assert all(not isinstance(layer["cross"], torch.nn.ModuleDict) for layer in model.layers)
    w = model(inputs).aux["attention/layer0"]
    sizes = [model.tokenizers[m](inputs[m])[1].shape[1] for m in specs]
    assert w.shape[-1] == sum(sizes)
    any_token = torch.stack([model.tokenizers[m](inputs[m])[1].any(1) for m in specs], dim=1).any(1)
    rows = w.sum(-1)  # one softmax over the concatenation of every modality's tokens
    torch.testing.assert_close(rows[any_token], torch.ones_like(rows[any_token]))
    assert (rows[~any_token] == 0).all()
    start = 0
    for m, size in zip(specs, sizes, strict=True):  # an absent modality's segment gets no attention
        absent = ~inputs[m].present
        assert (w[absent][..., start : start + size] == 0).all(), m
        start += size


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_perceiver_weight_tying(specs, tasks, inputs) -> None:
    """Tied = the untied model whose layers 1..3 hold one copy of the same weights, run 4 times."""
    small = dict(depth=4, num_latents=6, latent_dim=16, token_dim=16, cross_dim_head=16)
    torch.manual_seed(0)
    tied = create_model("perceiver", specs, tasks, weight_tie_layers=True, **small).eval()
    untied = create_model("perceiver", specs, tasks, **small).eval()
    assert len(tied.layers) == 2 and tied.layer_order == [0, 1, 1, 1]
    assert len(untied.layers) == 4
    # parameters: the untied count less the two tied copies of one layer
    assert _count(untied) - _count(tied) == 2 * _count(untied.layers[1]) > 0

    # the untied model given the tied weights (layer i ← tied layer order[i]) computes the same
    state = {}
    for key, value in tied.state_dict().items():
        parts = key.split(".")
        if parts[0] != "layers":
            state[key] = value
            continue
        for i, index in enumerate(tied.layer_order):
            if int(parts[1]) == index:
                state[".".join(["layers", str(i), *parts[2:]])] = value.clone()
    untied.load_state_dict(state, strict=True)
    out_tied, out_untied = tied(inputs), untied(inputs)
    torch.testing.assert_close(out_tied.embedding, out_untied.embedding)
    for t in tasks:
        torch.testing.assert_close(out_tied.logits[t], out_untied.logits[t])
    # the shared layer runs at every tied depth: 4 cross-attention maps, layers 1..3 differ
    maps = [out_tied.aux[f"attention/layer{i}"] for i in range(4)]
    assert (maps[2] - maps[1]).abs().max() > 1e-6

    # gradients of the shared weights accumulate over its three uses
    sum(out_tied.logits[t].sum() for t in tasks).backward()
    sum(out_untied.logits[t].sum() for t in tasks).backward()
    shared = dict(tied.layers[1].named_parameters())
    copies = [dict(untied.layers[i].named_parameters()) for i in (1, 2, 3)]
    assert any(p.grad.abs().max() > 0 for p in shared.values())
    for name, p in shared.items():
        expected = sum(c[name].grad for c in copies)
        torch.testing.assert_close(p.grad, expected, rtol=1e-4, atol=1e-6, msg=name)
    first = dict(tied.layers[0].named_parameters())
    for name, p in first.items():
        torch.testing.assert_close(p.grad, dict(untied.layers[0].named_parameters())[name].grad)

    # changing the shared weight changes the output; the same change to layer 1 only of the
    # untied model changes it differently (the tied change reaches depths 2 and 3 too)
    delta = torch.randn(tied.layers[1]["cross"].attn.fn.to_out.bias.shape)
    with torch.no_grad():
        tied.layers[1]["cross"].attn.fn.to_out.bias.add_(delta)
        untied.layers[1]["cross"].attn.fn.to_out.bias.add_(delta)
        changed, one_copy = tied(inputs).embedding, untied(inputs).embedding
    assert (changed - out_tied.embedding).abs().max() > 1e-4
    assert (changed - one_copy).abs().max() > 1e-4


# ------------------------------------------------------------------------------------- dfg


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_dfg_has_a_vertex_per_subset(specs, tasks, n) -> None:
    chosen = _subset(specs, list(specs)[:n])
    model = create_model("dfg", chosen, tasks)
    assert len(model.subsets) == 2**n - 1
    assert len(set(model.subsets)) == 2**n - 1
    assert len(model.vertices) == 2**n - n - 1  # a network per multimodal vertex
    # every proper non-empty subset feeds a vertex; every vertex feeds the summary
    edges = sum(2 ** len(s) - 2 for s in model.subsets) + 2**n - 1
    assert model.n_edges == edges


def test_dfg_vertex_with_absent_member_is_off(specs, tasks, inputs) -> None:
    chosen = _subset(specs, ("clinical", "xray", "wsi"))
    model = create_model("dfg", chosen, tasks).eval()
    batch = {m: inputs[m] for m in chosen}
    out = model(batch)
    alpha = out.aux["efficacies"]
    assert alpha.shape == (10, model.n_edges) and ((alpha > 0) & (alpha < 1)).all()
    # the trimodal vertex exists only for samples with all three: changing its network
    # changes exactly those samples
    with torch.no_grad():
        for p in model.vertices["clinical+xray+wsi"].parameters():
            p.add_(torch.randn_like(p) * 10)
    changed = model(batch)
    all_three = inputs["clinical"].present & inputs["xray"].present & inputs["wsi"].present
    assert all_three.any() and (~all_three).any()
    torch.testing.assert_close(changed.embedding[~all_three], out.embedding[~all_three])
    assert (changed.embedding[all_three] - out.embedding[all_three]).abs().max() > 1e-6


def test_dfg_refuses_too_many_modalities(specs, tasks) -> None:
    with pytest.raises(ConfigError, match="max_modalities"):
        create_model("dfg", specs, tasks, max_modalities=3)


# ---------------------------------------------------------------------------- mm_prognosis


def _all(n: int) -> torch.Tensor:
    return torch.ones(n, dtype=torch.bool)


def test_similarity_loss_hand_computed() -> None:
    e = torch.eye(2)
    # same patient identical across modalities, others orthogonal: max(0, 0.1 − 1 + 0) = 0
    assert float(similarity_loss({"a": e, "b": e}, {"a": _all(2), "b": _all(2)})) == 0.0
    # swapped: cos(i, i) = 0, cos(i, j) = 1 → 0.1 − 0 + 1 = 1.1 for every term
    swapped = similarity_loss({"a": e, "b": e.flip(0)}, {"a": _all(2), "b": _all(2)})
    assert float(swapped) == pytest.approx(1.1)
    # scale does not matter (cosine), and an absent patient is left out of every term
    three = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    other = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-7.0, 1.0]])
    present = torch.tensor([True, True, False])
    value = similarity_loss({"a": three, "b": other}, {"a": _all(3), "b": present})
    assert float(value) == pytest.approx(0.0)
    # one modality only: no pair, no loss
    assert float(similarity_loss({"a": three}, {"a": _all(3)})) == 0.0


def test_mm_prognosis_exposes_similarity_loss_in_training(specs, tasks, dataset) -> None:
    torch.manual_seed(0)
    model = create_model("mm_prognosis", specs, tasks)
    inputs = dataset.batch(np.arange(len(dataset))).inputs
    out = model.train()(inputs)
    loss = out.aux["loss/similarity"]
    assert loss.dim() == 0 and float(loss.detach()) >= 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoders.parameters())
    assert "loss/similarity" not in model.eval()(inputs).aux


def test_mm_prognosis_embedding_is_mean_over_present(specs, tasks, inputs) -> None:
    model = create_model("mm_prognosis", specs, tasks).eval()
    out = model(inputs)
    vectors = {m: model.encoders[m](inputs[m]) for m in specs}
    present = torch.stack([inputs[m].present for m in specs], dim=1).float()
    total = sum(vectors[m] for m in specs)
    mean = total / present.sum(1, keepdim=True).clamp(min=1)
    torch.testing.assert_close(out.embedding, mean)
