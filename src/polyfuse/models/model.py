"""The one model interface: `forward(inputs) -> ModelOutput`, whatever the fusion method."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError, DataError
from polyfuse.models.blocks.masking import zero_absent


@dataclass
class ModelOutput:
    """Logits per task, the fused embedding, and what a user may inspect (attention, gates)."""

    logits: dict[str, Tensor]
    embedding: Tensor
    aux: dict[str, Tensor] = field(default_factory=dict)


def build_heads(tasks: dict[str, TaskSpec], in_dim: int) -> nn.ModuleDict:
    """One linear head per task, sized by the task's number of logits."""
    return nn.ModuleDict({t: nn.Linear(in_dim, spec.out_dim) for t, spec in tasks.items()})


def prepare_inputs(
    inputs: dict[str, ModalityBatch], specs: dict[str, ModalitySpec]
) -> dict[str, ModalityBatch]:
    """Check every modality against its spec and make absent samples exactly zero.

    A modality missing from `inputs` counts as absent for the whole batch. Zeroing absent rows
    (with `where`, so NaN or inf fills cannot leak into values or gradients) is what makes every
    model's output independent of the fill value; token masks are cleared for absent samples.
    """
    unknown = set(inputs) - set(specs)
    if unknown:
        raise DataError(
            f"inputs have unknown modalities {sorted(unknown)}; model has {list(specs)}"
        )
    if not inputs:
        raise DataError("a batch needs at least one modality")
    ref = next(iter(inputs.values()))
    size, device = ref.present.shape[0], ref.present.device  # not len(): export keeps it symbolic
    out = {}
    for m, spec in specs.items():
        b = inputs.get(m)
        if b is None:
            out[m] = _absent(spec, size, device)
            continue
        _check_layout(m, spec, b, size)
        mask = None if b.token_mask is None else b.token_mask & b.present[:, None]
        # rows of absent samples, and padded tokens of present ones, become exactly zero
        keep = b.present if mask is None else mask
        if _all_kept(keep):  # nothing to clear: the caller's tensors, not full-size copies
            out[m] = ModalityBatch(b.data, b.present, mask, b.times)
            continue
        data = zero_absent(keep, b.data)
        times = None if b.times is None else zero_absent(mask, b.times)
        out[m] = ModalityBatch(data, b.present, mask, times)
    return out


def _all_kept(keep: Tensor) -> bool:
    """Whether a presence or token mask keeps everything, so that zeroing would copy the data
    unchanged. Always False while a graph is captured (the graph must not branch on values)."""
    return not capturing_graph() and bool(keep.all())


def capturing_graph() -> bool:
    """Whether the model is being traced or exported into a graph (TorchScript, torch.export /
    ONNX, `polyfuse.inference.export`). Such a graph cannot branch on tensor values, so checks
    that read values are skipped and shortcuts that skip work for an all-absent batch compute
    instead (their result is masked out either way)."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def check_token_ids(m: str, ids: Tensor, vocab: int) -> None:
    """Token ids (padding included) must lie in [0, vocab): a DataError otherwise. Not checked
    while a graph is captured (`capturing_graph`): an exported graph's caller checks its ids."""
    if capturing_graph() or not ids.numel():
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab:
        raise DataError(f"modality '{m}': token ids must lie in [0, {vocab}), got [{low}, {high}]")


def unknown_kind(owner: str, spec: ModalitySpec) -> ConfigError:
    """The error for a modality kind that `owner` has no path for, so that a kind added to
    `ModalitySpec` fails loudly where it is not handled instead of taking another kind's path."""
    return ConfigError(
        f"{owner}: modality '{spec.name}' has kind '{spec.kind}', which it cannot read"
    )


def _absent(spec: ModalitySpec, size: int, device: torch.device) -> ModalityBatch:
    present = torch.zeros(size, dtype=torch.bool, device=device)
    if not spec.is_tokens:
        return ModalityBatch(torch.zeros(size, *spec.shape, device=device), present)
    mask = torch.zeros(size, 1, dtype=torch.bool, device=device)
    if spec.kind == "text":
        return ModalityBatch(torch.zeros(size, 1, dtype=torch.long, device=device), present, mask)
    data = torch.zeros(size, 1, spec.width, device=device)
    times = torch.zeros(size, 1, device=device) if spec.kind == "sequence" else None
    return ModalityBatch(data, present, mask, times)


def _check_layout(m: str, spec: ModalitySpec, b: ModalityBatch, size: int) -> None:
    if b.present.shape != (size,) or b.present.dtype != torch.bool:
        raise DataError(
            f"modality '{m}': present must be a bool tensor of shape ({size},), "
            f"got {b.present.dtype} {tuple(b.present.shape)}"
        )
    integer = not b.data.is_floating_point()
    if integer != (spec.kind == "text"):
        want_type = "integer token ids" if spec.kind == "text" else "floating-point values"
        raise DataError(f"modality '{m}' ({spec.kind}) needs {want_type}, got {b.data.dtype}")
    if b.times is not None and (b.token_mask is None or b.times.shape != b.token_mask.shape):
        raise DataError(f"modality '{m}': times must have the (B, N) shape of its token_mask")
    got = tuple(b.data.shape)
    if spec.is_tokens:
        want_rank = 2 if spec.kind == "text" else 3
        ok = len(got) == want_rank and got[0] == size
        ok = ok and (spec.kind == "text" or got[2] == spec.width)
        ok = ok and b.token_mask is not None and tuple(b.token_mask.shape) == got[:2]
        want = "(B, N)" if spec.kind == "text" else f"(B, N, {spec.width}) with a (B, N) token_mask"
    else:
        ok = got == (size, *spec.shape)
        want = str((size, *spec.shape))
    if not ok:
        raise DataError(f"modality '{m}' ({spec.kind}): got data of shape {got}, expected {want}")


THREE_SEEDS: Mapping[str, Any] = MappingProxyType({"ensemble": 3})
"""A regime: an ensemble of 3 seeds on the same samples, which leave-one-cohort-out over the
four bundled cohorts gives every held-out cohort for the models that name it
(`docs/defaults.md`)."""
THREE_FOLDS: Mapping[str, Any] = MappingProxyType({"ensemble": 3, "ensemble_validation": "folds"})
"""A regime: 3 members cross-fitted on 3 folds (each early-stops on its own fold), which
leave-one-cohort-out gives every held-out cohort for the models that name it, over their 3
seeds on the same samples; it costs no more than the seeds."""


class MultimodalModel(nn.Module):
    """Base class: validated inputs → `fuse` → one head per task.

    Subclasses implement `fuse(inputs) -> (embedding, aux)` and set `self.heads`; a method whose
    predictions are not made from one embedding (late fusion) overrides `forward` instead.
    Modalities are processed in the fixed order of `specs`.

    `search_space` declares how `polyfuse tune` searches this model's hyper-parameters: a dict
    of keyword name → `polyfuse.search_space.Float | Int | Categorical` (plain data; the shared
    training dimensions are added by the tuner). Empty: only the shared ones are searched.
    """

    search_space: ClassVar[Mapping[str, Any]] = {}
    fine_tunes_backbones: ClassVar[bool] = False
    """Whether an image modality's pretrained backbone (`ModalitySpec.backbone`) is the
    model's encoder for it; a model that reads pixels its own way refuses such a modality."""

    def __init__(self, specs: dict[str, ModalitySpec], tasks: dict[str, TaskSpec]) -> None:
        super().__init__()
        if not specs:
            raise DataError("a model needs at least one modality")
        if not tasks:
            raise DataError("a model needs at least one task")
        tuned = [m for m, s in specs.items() if s.backbone is not None]
        if tuned and not self.fine_tunes_backbones:
            raise ConfigError(
                f"model '{type(self).__name__}' reads images its own way and cannot fine-tune "
                f"the pretrained backbone of modality {tuned[0]!r}; set encoder.trainable: false "
                "to embed the images once with it (frozen), or choose a model that fine-tunes "
                "backbones (late, early, synergies and the other encoder-based models)"
            )
        self.specs = dict(specs)
        self.tasks = dict(tasks)
        self.used_modalities: tuple[str, ...] = tuple(specs)  # a model reading fewer says so

    regime: ClassVar[Mapping[str, Any]] = {}
    """The small-data regime the model trains with by default (TrainingConfig fields), chosen
    across the bundled cohorts (`docs/defaults.md`)."""

    @classmethod
    def training_defaults(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """Training settings (TrainingConfig fields) this model trains best with: its `regime`,
        unless a preset in `hparams` says otherwise (a model with presets overrides this).

        The engine applies them unless the user set the same field explicitly.
        """
        return dict(cls.regime)

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def forward(self, inputs: dict[str, ModalityBatch]) -> ModelOutput:
        embedding, aux = self.fuse(prepare_inputs(inputs, self.specs))
        logits = {t: head(embedding) for t, head in self.heads.items()}
        return ModelOutput(logits, embedding, aux)
