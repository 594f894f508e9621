"""EHPAL-Net: the properties that define it (methods.md §2, §5.5); the registry tests cover the rest."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError
from polyfuse.models.ehpal import EHPALNet, channel_shuffle
from polyfuse.models.macfusion import MACFusion, dct_matrix
from polyfuse.models.registry import create_model

TASKS = {"os": TaskSpec("os", "survival", survival_head="cox"), "y": TaskSpec("y", "binary")}


def small_specs() -> dict[str, ModalitySpec]:
    return {
        "img": ModalitySpec("img", "image", (3, 16, 16)),
        "omics": ModalitySpec("omics", "tabular", (12,)),
        "labs": ModalitySpec("labs", "tabular", (5,)),
    }


def small_inputs(n: int = 4, seed: int = 0) -> dict[str, ModalityBatch]:
    g = torch.Generator().manual_seed(seed)
    present = torch.ones(n, dtype=torch.bool)
    return {
        m: ModalityBatch(torch.randn(n, *s.shape, generator=g), present.clone())
        for m, s in small_specs().items()
    }


def train_step(model: torch.nn.Module, inputs: dict[str, ModalityBatch]) -> None:
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = model(inputs)
    loss = sum(v.pow(2).mean() for v in out.logits.values())
    loss.backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name
    opt.step()


def test_paper_stage_shapes_for_four_128px_images() -> None:
    """methods.md §2(b)(vi), channels-first: width=1, four 3×128×128 inputs, batch 1."""
    specs = {f"m{i}": ModalitySpec(f"m{i}", "image", (3, 128, 128)) for i in range(1, 5)}
    torch.manual_seed(0)
    model = create_model("ehpal", specs, TASKS, width=1, grid_size=32).eval()
    assert model.widths == [64, 128, 256, 512]
    shapes: dict[str, list[tuple]] = {}

    def record(name: str):
        def hook(module, args, out):
            outs = out if isinstance(out, tuple) else (out,)
            shapes[name] = [
                tuple(o.shape) if torch.is_tensor(o) else [tuple(t.shape) for t in o]
                for o in outs
                if torch.is_tensor(o) or isinstance(o, list)
            ]

        return hook

    for m in specs:
        model.to_grid[m].register_forward_hook(record(f"stem/{m}"))
    for k, stage in enumerate(model.stages):
        stage.register_forward_hook(record(f"stage{k + 1}"))
    for k, inject in model.inject.items():
        inject.register_forward_hook(record(f"inject{int(k) + 1}"))
    inputs = {
        m: ModalityBatch(torch.randn(1, 3, 128, 128), torch.ones(1, dtype=torch.bool))
        for m in specs
    }
    with torch.no_grad():
        out = model(inputs)
    side = [(1, 512, 4, 4)] * 2
    assert shapes["stem/m1"][0] == shapes["stem/m2"][0] == (1, 64, 32, 32)
    assert shapes["stage1"][:2] == [(1, 64, 32, 32), (1, 64, 32, 32)]
    assert shapes["stage2"][0] == (1, 128, 16, 16) and shapes["stage2"][2] == side
    assert shapes["inject3"][0] == (1, 256, 16, 16)
    assert shapes["stage3"][0] == (1, 256, 8, 8) and shapes["stage3"][2] == side
    assert shapes["inject4"][0] == (1, 512, 8, 8)
    assert shapes["stage4"][0] == (1, 512, 4, 4) and shapes["stage4"][2] == side
    assert out.embedding.shape == (1, 3584)


@pytest.mark.parametrize("poincare", ["exp_map", "as_coded"])
@pytest.mark.parametrize("constraint", ["elementwise_clip", "keras_minmaxnorm"])
def test_macfusion_shape_attention_and_gates(poincare: str, constraint: str) -> None:
    torch.manual_seed(0)
    mac = MACFusion(16, poincare=poincare, fractal_constraint=constraint)
    # GAP-scale inputs (sigmoid saturates to exactly 0 in float32 for large Lorentz times)
    x1, x2 = 0.2 * torch.randn(5, 16, 4, 3), 0.5 * torch.rand(5, 16, 4, 3)
    present = torch.ones(5, dtype=torch.bool)
    y1, y2, info = mac(x1, x2, present, present)
    assert y1.shape == x1.shape and y2.shape == x2.shape
    for s in ("a", "b"):
        assert info[s].shape == (5, 16)
        torch.testing.assert_close(info[s].sum(-1), torch.ones(5))
        g = info[f"g{s}"]
        assert g.shape == (5, 1) and bool(((g > 0) & (g < 1)).all())
    # channel-wise gating, broadcast over H, W: Y1 = o·κ·X1·(A2 + g2)
    expected = x1 * (mac.output_gate * mac.cross_gate * (info["b"] + info["gb"]))[..., None, None]
    torch.testing.assert_close(y1, expected)


def test_macfusion_absent_partner_returns_present_stream() -> None:
    torch.manual_seed(0)
    mac = MACFusion(8)
    x1, x2 = torch.randn(3, 8, 2, 2), torch.randn(3, 8, 2, 2)
    p1 = torch.tensor([True, True, False])
    p2 = torch.tensor([True, False, True])
    y1, y2, info = mac(x1, x2, p1, p2)
    torch.testing.assert_close(y1[1], x1[1])  # partner 2 absent: stream 1 untouched
    torch.testing.assert_close(y2[2], x2[2])
    assert not torch.allclose(y1[0], x1[0])
    assert (info["b"][1] == 0).all() and (info["gb"][1] == 0).all()
    assert (info["a"][2] == 0).all() and (info["ga"][2] == 0).all()


def test_fractal_constraints() -> None:
    mac = MACFusion(16, fractal_constraint="keras_minmaxnorm")
    s = mac.fractal_dims().detach()
    assert math.isclose(float(s.norm()), 2.0, rel_tol=1e-5)  # 1.8·√16 = 7.2 → scaled to 2
    torch.testing.assert_close(s, torch.full((16,), 2 / 4))
    mac = MACFusion(16)
    with torch.no_grad():
        mac.fractal[:3] = torch.tensor([0.2, 1.5, 3.0])
    torch.testing.assert_close(mac.fractal_dims()[:4], torch.tensor([1.0, 1.5, 2.0, 1.8]))


def test_poincare_terms_by_hand() -> None:
    mac = MACFusion(2, gate="reference")
    v, c = torch.tensor([[3.0, 4.0]]), torch.tensor(4.0)  # ‖v‖ = 5, √c = 2
    mac.poincare = "exp_map"
    torch.testing.assert_close(
        mac._poincare(v, c.sqrt()), (torch.tanh(c.sqrt() * 5) * 25 / 10).view(1, 1)
    )
    mac.poincare = "as_coded"
    coded = torch.tanh(torch.tensor(10.0)) * (27 + 64) / (5 + 1e-6)
    torch.testing.assert_close(mac._poincare(v, c.sqrt()), coded.view(1, 1))
    # per channel: rms(v) = √12.5 in place of ‖v‖, the mean of v³ in place of the sum
    per_channel, r = MACFusion(2), math.sqrt(12.5)
    torch.testing.assert_close(
        per_channel._poincare(v, c.sqrt()),
        (torch.tanh(torch.tensor(2 * r)) * r**2 / (2 * r)).view(1, 1),
    )


def test_dct_is_orthonormal_dct_ii() -> None:
    d = dct_matrix(6)
    torch.testing.assert_close(d @ d.T, torch.eye(6), atol=1e-6, rtol=0)
    x = torch.randn(6, dtype=torch.float64)
    n = torch.arange(6, dtype=torch.float64)
    by_hand = torch.stack(
        [(x * torch.cos(math.pi * (2 * n + 1) * k / 12)).sum() for k in range(6)]
    ) * math.sqrt(2 / 6)
    by_hand[0] /= math.sqrt(2)
    torch.testing.assert_close(d.double() @ x, by_hand, atol=1e-6, rtol=0)


def test_channel_shuffle_interleaves_groups() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_mc_dropout_at_inference() -> None:
    inputs = small_inputs()
    torch.manual_seed(0)
    on = create_model("ehpal", small_specs(), TASKS, mc_dropout_at_inference=True).eval()
    a, b = on(inputs).embedding, on(inputs).embedding
    assert not torch.allclose(a, b)
    torch.manual_seed(0)
    off = create_model("ehpal", small_specs(), TASKS).eval()
    torch.testing.assert_close(off(inputs).embedding, off(inputs).embedding, atol=0, rtol=0)


FLAGS = [
    {"poincare": "as_coded"},
    {"fractal_constraint": "keras_minmaxnorm"},
    {"mc_dropout_at_inference": True},
    {"always_project_shortcut": True},
    {"mhcf_activation": "relu"},
    {"learnable_curvature": False},
    {"per_sample_missing": False},
    {"norm_groups": 8},
    {"gate": "reference"},
    {"width": 0.5, "grid_size": 4},
    {"injection_schedule": [["omics", "img"], ["omics", "img"], ["labs"], ["img"]]},
    {"encoder": {"tabular": "snn"}, "adapter_dim": 16},
]


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f))
def test_every_flag_builds_and_trains_one_step(flags: dict) -> None:
    torch.manual_seed(0)
    model = create_model("ehpal", small_specs(), TASKS, **flags)
    inputs = small_inputs()
    inputs["labs"].present[1] = False
    train_step(model, inputs)


def test_aux_holds_attention_and_gates_of_every_macfusion_layer() -> None:
    torch.manual_seed(0)
    model = create_model("ehpal", small_specs(), TASKS).eval()
    aux = model(small_inputs()).aux
    # 3 stages × 2 EHF blocks × 2 MACFusion layers × 2 streams
    assert len([k for k in aux if k.startswith("attention/")]) == 24
    assert len([k for k in aux if k.startswith("gate/")]) == 24
    torch.testing.assert_close(aux["attention/stage3/ehf2/mac2/b"].sum(-1), torch.ones(4))
    assert aux["gate/stage1/ehf1/mac1/a"].shape == (4, 1)


def test_absent_injected_modality_leaves_only_its_zero_sides() -> None:
    """A sample without the stage-3 modality: its B-side output is zero; the A stream goes on
    from the present streams only (the model without that modality gives the same A side)."""
    torch.manual_seed(0)
    model = create_model("ehpal", small_specs(), TASKS, dropout=0.0).eval()
    inputs = small_inputs()
    inputs["labs"].present[0] = False
    sides: list = []
    model.stages[2].register_forward_hook(lambda mod, a, out: sides.append(out[2]))
    out = model(inputs)
    assert (sides[0][1][0] == 0).all() and not (sides[0][1][1] == 0).all()
    # the embedding of sample 0 = the same model with 'labs' absent from the whole batch
    dropped = {m: b for m, b in inputs.items() if m != "labs"}
    torch.testing.assert_close(model(dropped).embedding[0], out.embedding[0])


def test_one_modality_trains_both_streams_from_it() -> None:
    specs = {"omics": ModalitySpec("omics", "tabular", (12,))}
    torch.manual_seed(0)
    model = create_model("ehpal", specs, TASKS)
    assert model.schedule == [["omics", "omics"], ["omics", "omics"]]
    assert len(model.stages) == 2
    inputs = {"omics": ModalityBatch(torch.randn(4, 12), torch.ones(4, dtype=torch.bool))}
    train_step(model, inputs)


def test_stages_follow_modalities_and_schedule() -> None:
    torch.manual_seed(0)
    model = create_model("ehpal", small_specs(), TASKS)
    assert model.schedule == [["img", "omics"], ["img", "omics"], ["labs"]]
    model = create_model("ehpal", small_specs(), TASKS, injection_schedule=[["img", "omics"]] * 2)
    assert model.used_modalities == ("img", "omics")
    assert "labs" not in model.to_grid


@pytest.mark.parametrize(
    "schedule",
    [
        [["img", "omics"]],
        [["img", "omics"], ["img", "labs"]],
        [["img", "omics"]] * 2 + [[]],
        [["img", "omics"]] * 2 + [["labs", "labs"]],
    ],
)
def test_bad_schedule_raises(schedule) -> None:
    with pytest.raises(ConfigError, match="injection_schedule"):
        EHPALNet(small_specs(), TASKS, injection_schedule=schedule)
    with pytest.raises(ConfigError, match="'ct'"):
        EHPALNet(small_specs(), TASKS, injection_schedule=[["img", "ct"]] * 2)


def _tables(n_modalities: int) -> dict[str, ModalitySpec]:
    return {f"t{i}": ModalitySpec(f"t{i}", "tabular", (3,)) for i in range(n_modalities)}


def test_many_modalities_are_grouped_into_the_stages_whose_maps_stay_2x2() -> None:
    """Stage k halves the grid k − 1 times: 3 stages on 8×8 (8, 4, 2), 4 on 16×16."""
    torch.manual_seed(0)
    six = create_model("ehpal", _tables(6), TASKS)
    assert six.schedule == [["t0", "t1"], ["t0", "t1"], ["t2", "t3", "t4", "t5"]]
    assert len(six.stages) == 3 and six.used_modalities == tuple(_tables(6))
    wider = create_model("ehpal", _tables(7), TASKS, grid_size=16)
    assert wider.schedule[2:] == [["t2", "t3", "t4"], ["t5", "t6"]] and len(wider.stages) == 4
    paper = create_model("ehpal", _tables(6), TASKS, max_stages=6)
    assert paper.schedule[2:] == [["t2"], ["t3"], ["t4"], ["t5"]]
    assert create_model("ehpal", _tables(3), TASKS).schedule[2:] == [["t2"]]
    with pytest.raises(ConfigError, match="max_stages"):
        create_model("ehpal", _tables(4), TASKS, max_stages=1)


def test_a_group_injects_the_mean_of_the_grids_each_sample_has() -> None:
    from polyfuse.models.ehpal import _group_mean

    grids = [torch.full((3, 2, 1, 1), v) for v in (1.0, 3.0, 8.0)]
    present = [torch.tensor(p) for p in ([True, True, False], [True, False, False], [True] * 3)]
    present[2] = torch.tensor([True, False, False])
    mean, any_present = _group_mean(grids, present)
    assert mean[:, 0, 0, 0].tolist() == [4.0, 1.0, 0.0]  # (1+3+8)/3, 1 alone, none
    assert any_present.tolist() == [True, True, False]


def test_a_grouped_modality_is_read_where_present_and_ignored_where_absent() -> None:
    torch.manual_seed(0)
    model = create_model("ehpal", _tables(5), TASKS, max_stages=3).eval()
    g = torch.Generator().manual_seed(1)
    inputs = {
        m: ModalityBatch(torch.randn(4, 3, generator=g), torch.ones(4, dtype=torch.bool))
        for m in _tables(5)
    }
    inputs["t3"] = ModalityBatch(inputs["t3"].data, torch.tensor([True, True, False, False]))
    with torch.no_grad():
        base = model(inputs).logits["y"]
        changed = dict(inputs, t3=ModalityBatch(inputs["t3"].data + 5.0, inputs["t3"].present))
        moved = model(changed).logits["y"]
    assert not torch.allclose(moved[:2], base[:2])  # read where present
    torch.testing.assert_close(moved[2:], base[2:])  # absent: the fill value does not matter


def test_volumes_adapter_or_refused() -> None:
    specs = {**small_specs(), "ct": ModalitySpec("ct", "image", (1, 8, 8, 8))}
    with pytest.raises(ConfigError, match=r"'ct'.*3D volume"):
        create_model("ehpal", specs, TASKS, volumes="refuse")
    torch.manual_seed(0)
    model = create_model("ehpal", specs, TASKS)
    n = 3
    inputs = small_inputs(n)
    inputs["ct"] = ModalityBatch(torch.randn(n, 1, 8, 8, 8), torch.ones(n, dtype=torch.bool))
    assert model(inputs).embedding.shape[0] == n


def test_width_rounds_channels_to_groups() -> None:
    model = create_model("ehpal", small_specs(), TASKS, width=0.1)
    assert all(w % 8 == 0 for w in model.widths)
    assert np.diff(model.widths).min() >= 0
