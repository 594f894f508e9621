"""A toy cohort covering every modality kind and task type, with random per-sample missingness."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from helpers import WORDS

from polyfuse.data.dataset import ArraySource, ListSource, ModalityBatch, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec


def toy_specs() -> dict[str, ModalitySpec]:
    """One modality of each kind (two images: 2D and 3D)."""
    return {
        "clinical": ModalitySpec("clinical", "tabular", (7,)),
        "xray": ModalitySpec("xray", "image", (1, 16, 16)),
        "ct": ModalitySpec("ct", "image", (1, 8, 8, 8)),
        "wsi": ModalitySpec("wsi", "bag", (12,)),
        "labs": ModalitySpec("labs", "sequence", (3,)),
        "report": ModalitySpec("report", "text", (), vocab_size=64),
    }


def toy_tasks() -> dict[str, TaskSpec]:
    return {
        "response": TaskSpec("response", "binary"),
        "subtype": TaskSpec("subtype", "multiclass", classes=("a", "b", "c")),
        "os": TaskSpec("os", "survival", n_bins=4),
        "age": TaskSpec("age", "regression"),
    }


def toy_presence(n: int, n_modalities: int, rng: np.random.Generator) -> np.ndarray:
    """Random presence with every modality absent somewhere and present somewhere.

    Row `n - 1` has no modality at all and row `n - 2` has all of them.
    """
    assert n >= n_modalities + 3
    presence = rng.random((n, n_modalities)) < 0.6
    for j in range(n_modalities):
        presence[j, j] = False
        presence[j + 1, j] = True
    presence[n - 2] = True
    presence[n - 1] = False
    return presence


def toy_dataset(
    n: int = 10, seed: int = 0, specs: dict[str, ModalitySpec] | None = None
) -> MultimodalDataset:
    """Random values, variable token counts, NaN inside sequences, one empty bag and one empty
    text among present samples."""
    rng = np.random.default_rng(seed)
    specs = toy_specs() if specs is None else specs
    tasks = toy_tasks()
    presence = toy_presence(n, len(specs), rng)
    sources = {}
    for j, (m, spec) in enumerate(specs.items()):
        present = presence[:, j]
        first = int(np.flatnonzero(present)[0])
        if spec.kind in ("tabular", "image"):
            values = rng.normal(size=(n, *spec.shape)).astype(np.float32)
            sources[m] = ArraySource(values, present)
        elif spec.kind == "bag":
            sizes = rng.integers(1, 6, n)
            sizes[first] = 0  # a present bag with no instance
            sources[m] = ListSource(
                [
                    rng.normal(size=(int(k), spec.width)).astype(np.float32) if p else None
                    for k, p in zip(sizes, present, strict=True)
                ]
            )
        elif spec.kind == "sequence":
            items = []
            for p in present:
                if not p:
                    items.append(None)
                    continue
                t = int(rng.integers(1, 7))
                values = rng.normal(size=(t, spec.width)).astype(np.float32)
                values[rng.random(values.shape) < 0.25] = np.nan
                times = np.sort(rng.uniform(0, 48, t)).astype(np.float32)
                items.append((values, times))
            sources[m] = ListSource(items)
        else:
            texts = [
                " ".join(rng.choice(WORDS, int(rng.integers(1, 9)))) if p else None for p in present
            ]
            texts[first] = ""  # a present report with no token
            sources[m] = ListSource(texts)
    targets = {
        "response": rng.integers(0, 2, n).astype(np.float32),
        "subtype": rng.integers(0, 3, n).astype(np.float32),
        "os": np.stack([rng.uniform(1, 60, n), rng.integers(0, 2, n)], axis=1),
        "age": rng.normal(60, 10, n),
    }
    ids = [f"p{i:02d}" for i in range(n)]
    return MultimodalDataset(ids, specs, sources, tasks, targets, name="toy")


def clone_inputs(inputs: dict[str, ModalityBatch]) -> dict[str, ModalityBatch]:
    def copy(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.clone()

    return {
        m: ModalityBatch(copy(b.data), copy(b.present), copy(b.token_mask), copy(b.times))
        for m, b in inputs.items()
    }


def garble(inputs: dict[str, ModalityBatch], fill: str, seed: int = 0) -> dict[str, ModalityBatch]:
    """A copy whose absent rows and token padding hold `fill` ("big", "nan", "random"):
    values a model must never look at. Absent rows also get a random token mask."""
    gen = torch.Generator().manual_seed(seed)
    out = clone_inputs(inputs)
    for b in out.values():
        absent = ~b.present
        if b.data.dtype == torch.long:
            junk = torch.randint(-(10**6), 10**6, b.data.shape, generator=gen)
        elif fill == "big":
            junk = torch.full_like(b.data, 1e6)
        elif fill == "nan":
            junk = torch.full_like(b.data, float("nan"))
        else:
            junk = 100 * torch.randn(b.data.shape, generator=gen)
        if b.token_mask is None:
            b.data[absent] = junk[absent]
            continue
        hidden = ~b.token_mask | absent[:, None]
        b.data[hidden] = junk[hidden]
        if b.times is not None:
            b.times[hidden] = junk[..., 0][hidden] if junk.dim() == 3 else 1e6
        b.token_mask[absent] = torch.rand(b.token_mask[absent].shape, generator=gen) < 0.5
    return out


@pytest.fixture
def specs() -> dict[str, ModalitySpec]:
    return toy_specs()


@pytest.fixture
def tasks() -> dict[str, TaskSpec]:
    return toy_tasks()


@pytest.fixture
def dataset() -> MultimodalDataset:
    return toy_dataset()


@pytest.fixture
def inputs(dataset: MultimodalDataset) -> dict[str, ModalityBatch]:
    return dataset.batch(np.arange(len(dataset))).inputs


@pytest.fixture
def make_dataset() -> Callable[..., MultimodalDataset]:
    """`make_dataset(n=10, seed=0, specs=None)` for tests that need another cohort."""
    return toy_dataset


@pytest.fixture
def garbled() -> Callable[..., dict[str, ModalityBatch]]:
    """`garbled(inputs, fill, seed=0)`: see `garble`."""
    return garble


@pytest.fixture
def cloned() -> Callable[[dict[str, ModalityBatch]], dict[str, ModalityBatch]]:
    """`cloned(inputs)`: a deep copy of a batch's inputs."""
    return clone_inputs
