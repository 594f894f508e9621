"""Profiling: parameter and FLOP counts checked by hand, latency and memory sanity, the table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from polyfuse.data.dataset import ArraySource, ModalityBatch, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.evaluation.profile import (
    count_flops,
    measure_peak_memory,
    profile_model,
    profile_models,
    take_rows,
)
from polyfuse.models.model import MultimodalModel, build_heads
from polyfuse.models.registry import create_model


class LinearOnly(MultimodalModel):
    """The features themselves are the embedding; the one head is nn.Linear(10, 5)."""

    def __init__(self, specs: dict[str, ModalitySpec], tasks: dict[str, TaskSpec]) -> None:
        super().__init__(specs, tasks)
        self.heads = build_heads(tasks, 10)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        return inputs["x"].data, {}


def tabular_data(
    n: int = 40, widths: tuple[int, ...] = (10, 6), seed: int = 0
) -> MultimodalDataset:
    """Tabular modalities `m0, m1, …` (the second one 30% absent), a binary and a survival task."""
    rng = np.random.default_rng(seed)
    specs, sources = {}, {}
    for j, w in enumerate(widths):
        m = f"m{j}"
        specs[m] = ModalitySpec(m, "tabular", (w,))
        present = np.ones(n, bool) if j == 0 else rng.random(n) > 0.3
        sources[m] = ArraySource(rng.normal(size=(n, w)).astype(np.float32), present)
    surv = np.stack([rng.uniform(1, 50, n), rng.integers(0, 2, n)], axis=1)
    return MultimodalDataset(
        [f"s{i}" for i in range(n)],
        specs,
        sources,
        {"y": TaskSpec("y", "binary"), "os": TaskSpec("os", "survival")},
        {"y": rng.integers(0, 2, n).astype(np.float32), "os": surv},
        name="tiny",
    )


def linear_model() -> tuple[LinearOnly, dict[str, ModalityBatch]]:
    specs = {"x": ModalitySpec("x", "tabular", (10,))}
    tasks = {"c": TaskSpec("c", "multiclass", classes=tuple("abcde"))}
    gen = torch.Generator().manual_seed(0)
    inputs = {
        "x": ModalityBatch(torch.randn(8, 10, generator=gen), torch.ones(8, dtype=torch.bool))
    }
    return LinearOnly(specs, tasks), inputs


def early(data: MultimodalDataset, **hparams) -> nn.Module:
    torch.manual_seed(0)
    return create_model("early", data.specs, data.tasks, **hparams)


def test_params_count_every_element_once_and_trainable_excludes_frozen():
    model, inputs = linear_model()
    model.heads["c"].bias.requires_grad_(False)
    prof = profile_model(model, inputs, repeats=2, warmup=1)
    assert prof.params == sum(p.numel() for p in model.parameters()) == 10 * 5 + 5
    assert prof.trainable_params == 10 * 5


def test_flops_of_a_linear_layer_are_two_multiply_adds_per_weight():
    model, inputs = linear_model()
    prof = profile_model(model, inputs, repeats=2, warmup=1)
    assert prof.flops_per_sample == 2 * 10 * 5
    # backward: the weight gradient only (the inputs need no gradient); bias sums are not counted
    assert prof.train_flops_per_sample == 2 * 10 * 5 + 2 * 10 * 5
    assert prof.flops_batch == 8


def test_flops_per_sample_do_not_depend_on_batch_size():
    data = tabular_data()
    model = early(data, dim=16, hidden=(32,))
    inputs = data.batch(np.arange(40)).inputs
    per_sample = [count_flops(model, take_rows(inputs, range(b)))[0] / b for b in (1, 8, 40)]
    assert per_sample[0] > 0
    assert per_sample == [per_sample[0]] * 3


def test_latency_is_positive_and_a_large_batch_takes_longer():
    data = tabular_data(widths=(64, 64))
    model = early(data, dim=128, hidden=(256,))
    prof = profile_model(model, data.batch(np.arange(40)).inputs, repeats=5, warmup=1)
    assert 0 < prof.latency_ms_b1 <= prof.latency_ms_b256
    assert prof.threads == torch.get_num_threads()
    assert prof.device == "cpu"


def test_profiling_leaves_the_model_and_the_rng_as_they_were():
    data = tabular_data()
    model = early(data, dim=16, hidden=(16,))
    model.train()
    grad = torch.full_like(model.heads["y"].weight, 7.0)
    model.heads["y"].weight.grad = grad
    state = torch.get_rng_state()
    profile_model(model, data.batch(np.arange(40)).inputs, repeats=2, warmup=1)
    assert model.training
    assert model.heads["y"].weight.grad is grad
    assert torch.equal(model.heads["y"].weight.grad, torch.full_like(grad, 7.0))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "heads.y.weight")
    assert torch.equal(torch.get_rng_state(), state)


def test_peak_memory_grows_with_batch_size_and_model_width():
    data = tabular_data()
    inputs = data.batch(np.arange(40)).inputs
    model = early(data, dim=32, hidden=(64,))
    small, method = measure_peak_memory(model, take_rows(inputs, torch.arange(32) % 40))
    large, _ = measure_peak_memory(model, take_rows(inputs, torch.arange(256) % 40))
    again, _ = measure_peak_memory(model, take_rows(inputs, torch.arange(256) % 40))
    assert method == "dispatch-tracker"
    assert 0 < small < large
    assert again == large  # deterministic, so models can be compared
    narrow = profile_model(model, inputs, repeats=1, warmup=0).peak_memory_mb
    wide = profile_model(early(data, dim=32, hidden=(512,)), inputs, repeats=1, warmup=0)
    assert narrow == large
    assert wide.peak_memory_mb > narrow


def test_cpu_peak_memory_counts_activations_and_gradients():
    """An MLP's peak is at least its parameters, inputs, gradients and saved activations, and
    matches the CPU allocator trace of torch.profiler where that private API is available."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(100, 512), nn.ReLU(), nn.Linear(512, 4))

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = mlp

        def forward(self, inputs: dict[str, ModalityBatch]) -> Tensor:
            return self.mlp(inputs["x"].data)

    model = Wrap()
    x = torch.randn(256, 100)
    inputs = {"x": ModalityBatch(x, torch.ones(256, dtype=torch.bool))}
    peak, _ = measure_peak_memory(model, inputs)
    params = sum(p.numel() for p in mlp.parameters()) * 4
    floor = 2 * params + x.numel() * 4 + 256 + 2 * 256 * 512 * 4  # + pre- and post-ReLU
    assert peak * 2**20 >= floor

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        mlp(x).sum().backward()
    results = getattr(prof.profiler, "kineto_results", None)
    if results is None or not hasattr(results, "events"):
        pytest.skip("this torch has no profiler allocator trace to compare with")
    events = sorted(
        (e for e in results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    live = top = 0
    for e in events:
        live += e.nbytes()
        top = max(top, live)
    static = params + x.numel() * 4 + 256  # parameters, inputs, the `present` mask
    assert peak * 2**20 == static + top


def test_profile_models_gives_one_row_per_model():
    data = tabular_data()
    table = profile_models(
        ["early", "late"], data, hparams={"late": {"dim": 16}}, repeats=2, warmup=0
    )
    assert list(table.index) == ["early", "late"]
    assert table.index.name == "model"
    for column in (
        "params",
        "flops_per_sample",
        "train_flops_per_sample",
        "latency_ms_b1",
        "latency_ms_b256",
        "peak_memory_mb",
    ):
        assert (table[column] > 0).all(), column
    assert (table["threads"] == torch.get_num_threads()).all()
    assert (table["flops_batch"] == 40).all()
    # the hyper-parameters reach the model: late with dim 16 is smaller than with the default
    default = profile_models(["late"], data, repeats=1, warmup=0)
    assert table.loc["late", "params"] < default.loc["late", "params"]


def test_profile_models_rejects_hparams_for_a_model_not_profiled():
    from polyfuse.errors import ConfigError

    with pytest.raises(ConfigError, match="helnet"):
        profile_models(["early"], tabular_data(), hparams={"helnet": {}})


def test_take_rows_trims_token_padding():
    data = torch.randn(3, 5, 2)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    inputs = {"bag": ModalityBatch(data, torch.ones(3, dtype=torch.bool), mask)}
    one = take_rows(inputs, [1])["bag"]
    assert one.data.shape == (1, 2, 2)
    assert torch.equal(one.data[0], data[1, :2])
    many = take_rows(inputs, torch.arange(7) % 3)["bag"]
    assert many.data.shape == (7, 5, 2)


def test_grouped_convolution_training_flops_are_three_times_forward() -> None:
    """torch 2.13 counts a grouped conv's weight gradient `groups` times over; we do not."""
    from polyfuse.evaluation.profile import _flop_counter

    conv = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    with _flop_counter() as counter:
        y = conv(x)
    forward = counter.get_total_flops()
    assert forward == 2 * 2 * 16 * 8 * 8 * 9  # batch × channels × pixels × 3×3 multiply-adds
    with _flop_counter() as counter:
        conv(x).sum().backward()
    assert counter.get_total_flops() == 3 * forward  # forward + input grad + weight grad
    assert y.shape == x.shape
