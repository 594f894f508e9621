"""The defining property of each of tfn, lmf, gated_bilinear, multimodn and medfuse.

The registry-wide tests (shapes, backward, fill-value invariance, masking, batch independence,
state_dict) run on these models without code here; each test below checks what makes one
method that method, on a tiny cohort of three tabular modalities.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from einops import rearrange
from torch import nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec
from polyfuse.errors import ConfigError
from polyfuse.models.blocks.kronecker import bounded_width, kronecker, with_one
from polyfuse.models.encoders import encode_all
from polyfuse.models.model import prepare_inputs
from polyfuse.models.registry import create_model

W = 2  # per-modality width inside the tensor products of the tiny cases


@pytest.fixture
def tiny_specs() -> dict[str, ModalitySpec]:
    return {
        "a": ModalitySpec("a", "tabular", (3,)),
        "b": ModalitySpec("b", "tabular", (4,)),
        "c": ModalitySpec("c", "tabular", (5,)),
    }


@pytest.fixture
def tiny_inputs(tiny_specs, make_dataset) -> dict[str, ModalityBatch]:
    data = make_dataset(n=8, seed=3, specs=tiny_specs)
    return data.batch(np.arange(8)).inputs


def build(name: str, specs, tasks, **hparams) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, specs, tasks, **hparams).eval()


def capture_input(module: nn.Module) -> list[torch.Tensor]:
    """The input of `module` at every call, appended to the returned list."""
    seen: list[torch.Tensor] = []
    module.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach()))
    return seen


def present_matrix(inputs: dict[str, ModalityBatch], order) -> torch.Tensor:
    return torch.stack([inputs[m].present for m in order], dim=1)


# --- shared block --------------------------------------------------------------------------


def test_kronecker_matches_torch_kron_row_by_row() -> None:
    gen = torch.Generator().manual_seed(0)
    vectors = [torch.randn(4, d, generator=gen) for d in (2, 3, 1)]
    out = kronecker(vectors)
    assert out.shape == (4, 3 * 4 * 2)
    for b in range(4):
        expected = with_one(vectors[0][b : b + 1])[0]
        for v in vectors[1:]:
            expected = torch.kron(expected, with_one(v[b : b + 1])[0])
        torch.testing.assert_close(out[b], expected)
    assert (out[:, -1] == 1).all()


def test_bounded_width_keeps_product_under_budget() -> None:
    assert bounded_width(2, 16, 4096) == 16
    assert bounded_width(3, 32, 4096) == 15
    assert bounded_width(6, 16, 4096) == 3
    assert bounded_width(12, 16, 4096) == 1
    for m in range(1, 13):
        assert (bounded_width(m, 16, 4096) + 1) ** m <= 4096
    with pytest.raises(ConfigError, match="lmf"):
        bounded_width(13, 16, 4096)


# --- tfn -----------------------------------------------------------------------------------


def test_tfn_product_is_bounded_for_many_modalities(specs, tasks) -> None:
    model = build("tfn", specs, tasks)  # the six modalities of the toy cohort
    assert model.width == 3 and model.post[0].in_features == 4**6 <= 4096
    many = {f"m{i}": ModalitySpec(f"m{i}", "tabular", (2,)) for i in range(13)}
    with pytest.raises(ConfigError, match="max_product"):
        create_model("tfn", many, tasks)


def test_tfn_keeps_exactly_the_terms_of_present_modalities(tiny_specs, tasks, tiny_inputs):
    model = build("tfn", tiny_specs, tasks, width=W)
    seen = capture_input(model.post)
    model(tiny_inputs)
    t = rearrange(seen[0], "b (i j k) -> b i j k", i=W + 1, j=W + 1)
    present = present_matrix(tiny_inputs, tiny_specs)
    # the unimodal slices: the entry with every other index on its constant 1
    z = [t[:, :W, W, W], t[:, W, :W, W], t[:, W, W, :W]]
    torch.testing.assert_close(t[:, W, W, W], torch.ones(len(t)))
    torch.testing.assert_close(seen[0], kronecker(z))  # T = ⊗_m [z_m; 1]
    for m in range(3):
        assert (z[m][~present[:, m]] == 0).all()  # an absent modality is [0 … 0, 1]
    assert (t[~present[:, 0], :W] == 0).all()  # so every term that involves it is 0


# --- lmf -----------------------------------------------------------------------------------


def test_lmf_at_full_rank_equals_tfn(tiny_specs, tasks, tiny_inputs) -> None:
    """W (out, 3, 3, 3) has CP rank ≤ 3·3 = 9: slice it along the first modality's axis."""
    hp = dict(dim=8, width=W, hidden=(8,), dropout=0.0)
    tfn = build("tfn", tiny_specs, tasks, **hp)
    lmf = build("lmf", tiny_specs, tasks, rank=(W + 1) ** 2, **hp)
    shared = {
        k: v
        for k, v in tfn.state_dict().items()
        if k.startswith(("encoders.", "project.", "heads."))
    }
    lmf.load_state_dict(shared, strict=False)
    # TFN's post MLP is [Linear(27, 8), LayerNorm, ReLU, Linear(8, 8)]; LMF replaces its first
    # layer by the factors and keeps the rest.
    lmf.post[0].load_state_dict(tfn.post[1].state_dict())
    lmf.post[3][0].load_state_dict(tfn.post[3].state_dict())
    weight = rearrange(tfn.post[0].weight.detach(), "o (i j k) -> o i j k", i=W + 1, j=W + 1)
    with torch.no_grad():
        lmf.bias.copy_(tfn.post[0].bias)
        lmf.rank_weights.fill_(1.0)
        for f in lmf.factors.values():
            f.zero_()
        for r, (j, k) in enumerate(itertools.product(range(W + 1), repeat=2)):
            lmf.factors["a"][r] = weight[:, :, j, k].T  # (i, o)
            lmf.factors["b"][r, j] = 1.0
            lmf.factors["c"][r, k] = 1.0
    a, b = tfn(tiny_inputs), lmf(tiny_inputs)
    torch.testing.assert_close(a.embedding, b.embedding, atol=1e-5, rtol=1e-5)
    for t in tasks:
        torch.testing.assert_close(a.logits[t], b.logits[t], atol=1e-5, rtol=1e-5)


def test_lmf_parameters_grow_linearly_in_modalities(tasks) -> None:
    def fusion_params(n: int) -> int:
        specs = {f"m{i}": ModalitySpec(f"m{i}", "tabular", (2,)) for i in range(n)}
        return sum(p.numel() for p in build("lmf", specs, tasks).factors.parameters())

    sizes = [fusion_params(n) for n in (2, 4, 8, 16)]
    assert sizes[1] == 2 * sizes[0] and sizes[3] == 8 * sizes[0]


# --- gated_bilinear ------------------------------------------------------------------------


def test_gated_bilinear_is_a_kronecker_product_of_gated_embeddings(tiny_specs, tasks, tiny_inputs):
    model = build("gated_bilinear", tiny_specs, tasks, width=W)
    seen = capture_input(model.fusion)
    out = model(tiny_inputs)
    t = rearrange(seen[0], "b (i j k) -> b i j k", i=W + 1, j=W + 1)
    o = [t[:, :W, W, W], t[:, W, :W, W], t[:, W, W, :W]]
    torch.testing.assert_close(seen[0], kronecker(o))
    present = present_matrix(tiny_inputs, tiny_specs)
    for i, m in enumerate(tiny_specs):
        gate = out.aux[f"gate/{m}"]
        assert ((gate > 0) & (gate < 1))[present[:, i]].all()
        assert (gate[~present[:, i]] == 0).all() and (o[i][~present[:, i]] == 0).all()


def test_gated_bilinear_gate_reads_the_other_modalities(tiny_specs, tasks, tiny_inputs, cloned):
    model = build("gated_bilinear", tiny_specs, tasks, width=W)
    j = int(torch.nonzero(present_matrix(tiny_inputs, tiny_specs).all(1))[0])
    changed = cloned(tiny_inputs)
    changed["b"].data[j] += 1.0
    before, after = model(tiny_inputs).aux["gate/a"], model(changed).aux["gate/a"]
    assert (before[j] - after[j]).abs().max() > 1e-6  # gate of a moved with b
    others = torch.arange(len(before)) != j
    torch.testing.assert_close(before[others], after[others])


# --- multimodn -----------------------------------------------------------------------------


def test_multimodn_absent_step_leaves_the_state(tiny_specs, tasks, tiny_inputs) -> None:
    out = build("multimodn", tiny_specs, tasks)(tiny_inputs)
    states = out.aux["states"]
    assert states.shape == (8, 4, 64)
    present = present_matrix(tiny_inputs, tiny_specs)
    for i in range(3):
        same = (states[:, i + 1] == states[:, i]).all(1)
        assert torch.equal(same, ~present[:, i])
    torch.testing.assert_close(states[:, -1], out.embedding)
    for t in tasks:  # the decoders read every step, the last step gives the logits
        torch.testing.assert_close(out.aux[f"step_logits/{t}"][:, -1], out.logits[t])


def test_multimodn_dropping_a_module_equals_the_modality_absent(tiny_specs, tasks, tiny_inputs):
    full = build("multimodn", tiny_specs, tasks)
    without = build("multimodn", {m: s for m, s in tiny_specs.items() if m != "b"}, tasks)
    kept = {
        k: v for k, v in full.state_dict().items() if not k.startswith(("encoders.b.", "update.b."))
    }
    without.load_state_dict(kept)
    absent = dict(tiny_inputs)
    absent["b"] = ModalityBatch(tiny_inputs["b"].data, torch.zeros_like(tiny_inputs["b"].present))
    dropped = {m: v for m, v in tiny_inputs.items() if m != "b"}
    a, b = full(absent), without(dropped)
    torch.testing.assert_close(a.embedding, b.embedding)
    for t in tasks:
        torch.testing.assert_close(a.logits[t], b.logits[t])


# --- medfuse -------------------------------------------------------------------------------


def test_medfuse_equals_an_lstm_over_packed_present_modalities(tiny_specs, tasks, tiny_inputs):
    model = build("medfuse", tiny_specs, tasks, dim=8)
    out = model(tiny_inputs)
    inputs = prepare_inputs(tiny_inputs, tiny_specs)
    vectors, _ = encode_all(model.encoders, inputs)
    steps = torch.stack([model.project[m](z) for m, z in vectors.items()], dim=1)  # (B, M, D)
    present = present_matrix(inputs, tiny_specs)
    lstm = nn.LSTM(8, 8, batch_first=True)
    cell = model.lstm
    lstm.load_state_dict(
        {
            "weight_ih_l0": cell.weight_ih,
            "weight_hh_l0": cell.weight_hh,
            "bias_ih_l0": cell.bias_ih,
            "bias_hh_l0": cell.bias_hh,
        }
    )
    lengths = present.sum(1)
    rows = torch.nonzero(lengths > 0).flatten()
    packed_rows = torch.zeros(len(rows), 3, 8)
    for n, b in enumerate(rows):
        packed_rows[n, : lengths[b]] = steps[b, present[b]]  # the present steps, in order
    packed = nn.utils.rnn.pack_padded_sequence(
        packed_rows, lengths[rows], batch_first=True, enforce_sorted=False
    )
    with torch.no_grad():
        _, (h_n, _) = lstm(packed)
    torch.testing.assert_close(out.embedding[rows], h_n[0], atol=1e-6, rtol=1e-5)
    assert (out.embedding[lengths == 0] == 0).all()


def test_medfuse_order_matters(tiny_specs, tasks, tiny_inputs) -> None:
    """A sequence model, not a set function: reversing the modality order changes the output."""
    model = build("medfuse", tiny_specs, tasks, dim=8)
    reordered = build("medfuse", dict(reversed(tiny_specs.items())), tasks, dim=8)
    reordered.load_state_dict(model.state_dict())
    both = present_matrix(tiny_inputs, tiny_specs).sum(1) >= 2
    diff = (model(tiny_inputs).embedding - reordered(tiny_inputs).embedding)[both]
    assert diff.abs().max() > 1e-4
