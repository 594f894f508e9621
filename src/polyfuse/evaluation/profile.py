"""Cost of a model without training it: parameters, FLOPs, latency and peak memory.

Every model is measured on the same inputs (rows of the cohort, preprocessed as for training),
so the numbers compare models, not data pipelines. What each number means:

* `params` / `trainable_params`: elements of all parameters / of those with `requires_grad`
  (shared parameters counted once).
* `flops_per_sample`: FLOPs of one forward pass, counted by `torch.utils.flop_counter.
  FlopCounterMode` on the whole profiling batch and divided by its size. The counter covers
  matrix products, convolutions and attention kernels (2 FLOPs per multiply-add), not
  element-wise ops, normalisation or pooling; for token modalities the count includes the
  padding of the batch. `train_flops_per_sample` is forward + backward of a summed-logit loss
  (no optimiser step).
* `latency_ms_b1` / `latency_ms_b256`: median wall time of one forward pass over `repeats`
  timed calls after `warmup` untimed ones, in eval mode under `no_grad`, with the inputs already
  collated, preprocessed and on the device: data loading, preprocessing and host-to-device
  copies are excluded. Batch 1 is the row with the most modalities present; batch 256 repeats
  the rows cyclically. Threads are used as configured and recorded in `threads`.
* `peak_memory_mb`: the most tensor memory alive at once during one training step (train
  mode, forward + backward at batch 256, gradients starting empty), including the parameters,
  buffers and inputs, in MiB (2**20 bytes). On CUDA this is the rise of
  `torch.cuda.max_memory_allocated` over the memory allocated before the step, plus the
  parameters, buffers and inputs. On CPU there is no allocator statistic, so every storage an
  operator creates is tracked with a `TorchDispatchMode` and released by a weak-reference
  callback when freed; the peak of that running total is exact and deterministic at the
  granularity of operator outputs (it equals the CPU allocator trace of `torch.profiler` on
  an MLP, see the tests). Workspaces a fused kernel allocates and frees internally are not
  seen, and the CPU allocator's own overhead and fragmentation are not included.
"""

from __future__ import annotations

import functools
import statistics
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from polyfuse.config import PreprocessConfig
from polyfuse.data.dataset import ModalityBatch, MultimodalDataset
from polyfuse.data.preprocess import Preprocessor
from polyfuse.errors import ConfigError

LARGE_BATCH = 256
MIB = 2**20


@dataclass
class ModelProfile:
    """The cost of one model on one set of inputs (see the module docstring for definitions)."""

    params: int
    trainable_params: int
    flops_per_sample: float
    train_flops_per_sample: float
    latency_ms_b1: float
    latency_ms_b256: float
    peak_memory_mb: float
    device: str
    threads: int
    flops_batch: int  # the batch size FLOPs were counted at
    memory_method: str  # "cuda.max_memory_allocated" or "dispatch-tracker"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------- inputs


def take_rows(
    inputs: dict[str, ModalityBatch], idx: Sequence[int] | Tensor
) -> dict[str, ModalityBatch]:
    """Rows `idx` of a batch (repeats allowed), token padding trimmed to the last used column.

    Trimming keeps a batch of 1 from paying for the padding of the batch it was cut from.
    """
    out = {}
    for m, b in inputs.items():
        index = torch.as_tensor(idx, dtype=torch.long, device=b.present.device)

        def pick(t: Tensor | None, index: Tensor = index) -> Tensor | None:
            return None if t is None else t.index_select(0, index)

        data, present, mask, times = (
            pick(b.data),
            pick(b.present),
            pick(b.token_mask),
            pick(b.times),
        )
        if mask is not None:
            used = torch.nonzero(mask.any(0))
            n = int(used.max()) + 1 if len(used) else 1
            data, mask = data[:, :n], mask[:, :n]
            times = None if times is None else times[:, :n]
        out[m] = ModalityBatch(data, present, mask, times)
    return out


def _batch_size(inputs: dict[str, ModalityBatch]) -> int:
    return len(next(iter(inputs.values())).present)


def _fullest_row(inputs: dict[str, ModalityBatch]) -> int:
    """The first row with the most modalities present: a typical patient, not an empty one."""
    counts = sum(b.present.long().cpu() for b in inputs.values())
    return int(torch.argmax(counts))


def _to(inputs: dict[str, ModalityBatch], device: torch.device) -> dict[str, ModalityBatch]:
    return {m: b.to(device) for m, b in inputs.items()}


def _model_device(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def _storage_bytes(tensors: Iterator[Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors` (views and tied weights counted once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        st = t.untyped_storage()
        seen[st._cdata] = st.nbytes()
    return sum(seen.values())


def _input_tensors(inputs: dict[str, ModalityBatch]) -> Iterator[Tensor]:
    for b in inputs.values():
        for t in (b.data, b.present, b.token_mask, b.times):
            if t is not None:
                yield t


# ----------------------------------------------------------------------------------- passes


def _loss(out: Any) -> Tensor | None:
    """A scalar to back-propagate: the sum of all logits (the loss itself costs no FLOPs)."""
    logits = getattr(out, "logits", out)
    tensors = [t for t in tree_flatten(logits)[0] if isinstance(t, Tensor) and t.requires_grad]
    if not tensors:
        return None
    return torch.stack([t.float().sum() for t in tensors]).sum()


def _train_step(model: nn.Module, inputs: dict[str, ModalityBatch]) -> None:
    loss = _loss(model(inputs))
    if loss is not None:
        loss.backward()


@contextmanager
def _isolated(model: nn.Module) -> Iterator[None]:
    """Leave the model and the caller as they were: mode, gradients and the RNG state."""
    training = model.training
    grads = [(p, p.grad) for p in model.parameters()]
    devices = [d for d in {p.device for p, _ in grads} if d.type == "cuda"]
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            for p, g in grads:
                p.grad = g
            model.train(training)


def _clear_grads(model: nn.Module) -> None:
    for p in model.parameters():
        p.grad = None


def _conv_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    groups,
    output_mask,
    out_shape=None,
    **kwargs,
) -> int:
    """torch's `conv_backward_flop` with the weight-gradient term divided by `groups`.

    torch 2.13's `FlopCounterMode` counts a grouped convolution's weight gradient `groups`
    times over (pytorch/pytorch#183405), which made depthwise-heavy nets (EHPAL-Net) look ~28×
    as costly to train as to run; `count_flops` uses this rule when a probe finds the bug.

    The input gradient is a (transposed) convolution with the grouped weight, counted right by
    torch. The weight gradient is counted as a convolution of the transposed input with the
    transposed output gradient, shapes that hold every input channel, so it meets all C_in
    channels instead of C_in / groups: `groups` times too many multiply-adds.
    """
    from torch.utils.flop_counter import conv_flop_count

    flops = 0
    if output_mask[0]:
        grad_input = out_shape[0]
        flops += conv_flop_count(grad_out_shape, w_shape, grad_input, not transposed)
    if output_mask[1]:

        def t(shape):
            return [shape[1], shape[0], *shape[2:]]

        a, b = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += conv_flop_count(t(a), t(b), t(out_shape[1])) // groups
    return flops


@functools.cache
def _overcounts_grouped_conv() -> bool:
    """Whether the installed torch over-counts a grouped conv's weight gradient (a probe)."""
    conv = torch.nn.Conv2d(4, 4, 1, groups=4, bias=False)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        conv(torch.ones(1, 4, 1, 1)).sum().backward()
    backward = counter.get_flop_counts()["Global"][torch.ops.aten.convolution_backward]
    return backward != 2 * 4  # 4 channels, 1 multiply-add each: 8 FLOPs


def _flop_counter() -> Any:
    """A `FlopCounterMode` that counts grouped convolutions' backward exactly."""
    from torch.utils.flop_counter import FlopCounterMode

    fix = {torch.ops.aten.convolution_backward: _conv_backward_flop}
    return FlopCounterMode(display=False, custom_mapping=fix if _overcounts_grouped_conv() else {})


def count_flops(model: nn.Module, inputs: dict[str, ModalityBatch]) -> tuple[int, int]:
    """Total (forward, forward + backward) FLOPs of `model` on `inputs`."""
    with _isolated(model):
        model.eval()
        # grad stays enabled: FlopCounterMode's module hooks fail under no_grad when a module
        # is called with a parameter (a learned latent array); the count is the same
        with _flop_counter() as counter:
            model(inputs)
        forward = counter.get_total_flops()
        model.train()
        _clear_grads(model)
        with _flop_counter() as counter:
            _train_step(model, inputs)
        train = counter.get_total_flops()
    return forward, train


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(
    run: Callable[[], Any],
    device: torch.device,
    *,
    repeats: int,
    warmup: int,
    before: Callable[[], None] = lambda: None,
) -> float:
    """Median milliseconds of `run()` after `warmup` untimed calls (`before()` untimed too)."""
    times = []
    for i in range(warmup + repeats):
        before()
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure_latency(
    model: nn.Module, inputs: dict[str, ModalityBatch], *, repeats: int = 20, warmup: int = 3
) -> float:
    """Median milliseconds of one forward pass (eval mode, no_grad, inputs already in place)."""
    with _isolated(model), torch.no_grad():
        model.eval()
        return _median_ms(
            lambda: model(inputs), _model_device(model), repeats=repeats, warmup=warmup
        )


def measure_step(
    model: nn.Module, inputs: dict[str, ModalityBatch], *, repeats: int = 5, warmup: int = 2
) -> float:
    """Median milliseconds of one training step (forward + backward, gradients from empty);
    the model and its gradients are left as they were."""
    with _isolated(model):
        model.train()
        return _median_ms(
            lambda: _train_step(model, inputs),
            _model_device(model),
            repeats=repeats,
            warmup=warmup,
            before=lambda: _clear_grads(model),
        )


class _LiveStorages(TorchDispatchMode):
    """Running total of the bytes of storages created under this mode, and its peak.

    A storage is counted when an operator returns it and it is not one of the operator's inputs
    (so views and in-place results are not counted twice); a weak reference subtracts it again
    when the storage is freed, whenever that happens (activations saved for backward live until
    backward has used them).
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._refs: dict[int, weakref.ref] = {}

    def _release(self, key: int, nbytes: int) -> Callable[[weakref.ref], None]:
        def release(_: weakref.ref) -> None:
            self.live -= nbytes
            self._refs.pop(key, None)

        return release

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        out = func(*args, **(kwargs or {}))
        flat_in = tree_flatten((args, kwargs))[0]
        inputs = {a.untyped_storage()._cdata for a in flat_in if isinstance(a, Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, Tensor) or t.device.type != "cpu":
                continue
            st = t.untyped_storage()
            key = st._cdata
            if key in inputs or key in self._refs:
                continue
            nbytes = st.nbytes()
            self._refs[key] = weakref.ref(st, self._release(key, nbytes))
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        return out


def measure_peak_memory(model: nn.Module, inputs: dict[str, ModalityBatch]) -> tuple[float, str]:
    """Peak MiB of one forward + backward step on `inputs`, and the method that measured it.

    Parameters, buffers and inputs are counted once as the floor; gradients start empty so
    their allocation counts too.
    """
    device = _model_device(model)
    static = _storage_bytes(iter([*model.parameters(), *model.buffers(), *_input_tensors(inputs)]))
    with _isolated(model):
        model.train()
        _clear_grads(model)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            _train_step(model, inputs)
            torch.cuda.synchronize(device)
            rise = torch.cuda.max_memory_allocated(device) - before
            method = "cuda.max_memory_allocated"
        else:
            with _LiveStorages() as tracker:
                _train_step(model, inputs)
            rise, method = tracker.peak, "dispatch-tracker"
        _clear_grads(model)
    return (static + rise) / MIB, method


# ----------------------------------------------------------------------------------- public


def profile_model(
    model: nn.Module, batch_inputs: dict[str, ModalityBatch], *, repeats: int = 20, warmup: int = 3
) -> ModelProfile:
    """Parameters, FLOPs, latency and peak memory of `model` on rows of `batch_inputs`.

    FLOPs are counted on `batch_inputs` as given; latency at batch 1 and 256 and peak memory at
    batch 256 use rows of it (the fullest row; all rows repeated cyclically). The model is left
    in its mode with its gradients, and the global RNG state is untouched.
    """
    if not batch_inputs or _batch_size(batch_inputs) == 0:
        raise ConfigError("profiling needs a batch with at least one sample")
    device = _model_device(model)
    inputs = _to(batch_inputs, device)
    size = _batch_size(inputs)
    params = {id(p): p for p in model.parameters()}.values()
    forward, train = count_flops(model, inputs)
    one = take_rows(inputs, [_fullest_row(inputs)])
    large = take_rows(inputs, torch.arange(LARGE_BATCH) % size)
    peak, method = measure_peak_memory(model, large)
    return ModelProfile(
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        flops_per_sample=forward / size,
        train_flops_per_sample=train / size,
        latency_ms_b1=measure_latency(model, one, repeats=repeats, warmup=warmup),
        latency_ms_b256=measure_latency(model, large, repeats=repeats, warmup=warmup),
        peak_memory_mb=peak,
        device=str(device),
        threads=torch.get_num_threads(),
        flops_batch=size,
        memory_method=method,
    )


def profile_models(
    names: list[str],
    data: MultimodalDataset,
    *,
    hparams: dict[str, dict] | None = None,
    device: str | torch.device = "cpu",
    preprocess: PreprocessConfig | None = None,
    repeats: int = 20,
    warmup: int = 3,
) -> pd.DataFrame:
    """One row per model (index `model`) with the columns of `ModelProfile`; nothing is trained.

    Preprocessing is fitted on `data` so every model sees the shapes it would be trained on;
    the profiling batch is the first min(len(data), 256) samples. `hparams` maps a model name
    to its hyper-parameters.
    """
    from polyfuse.models.registry import create_model

    hparams = dict(hparams or {})
    unknown = set(hparams) - set(names)
    if unknown:
        raise ConfigError(f"hyper-parameters given for models not profiled: {sorted(unknown)}")
    if len(data) == 0:
        raise ConfigError("profiling needs a dataset with at least one sample")
    cfg = preprocess or PreprocessConfig()
    pre = Preprocessor(cfg.impute, cfg.scale, cfg.missing_indicator)
    prepared = pre.fit_transform(data)
    inputs = prepared.batch(np.arange(min(len(prepared), LARGE_BATCH))).inputs
    rows = {}
    for name in names:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = create_model(name, prepared.specs, prepared.tasks, **hparams.get(name, {}))
        model.to(device)
        rows[name] = profile_model(model, inputs, repeats=repeats, warmup=warmup).as_dict()
        del model
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "model"
    return frame
