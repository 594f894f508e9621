import numpy as np
import pytest

from polyfuse.data.dataset import ArraySource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec


@pytest.fixture(scope="session")
def signal_data() -> MultimodalDataset:
    """160 samples, two tabular modalities (one 30% absent), a binary and a survival task that
    both depend on one feature of each modality: learnable, but not trivially."""
    rng = np.random.default_rng(0)
    n = 160
    a = rng.normal(size=(n, 6)).astype(np.float32)
    b = rng.normal(size=(n, 4)).astype(np.float32)
    a[rng.uniform(size=(n, 6)) < 0.05] = np.nan  # scattered missing values, imputed per fold
    present_b = rng.uniform(size=n) < 0.7
    score = 1.5 * np.nan_to_num(a[:, 0]) - 1.5 * b[:, 1] * present_b
    y = (score + rng.normal(0, 0.5, n) > 0).astype(np.float32)
    time = rng.exponential(np.exp(-score)) * 100 + 1
    censor = rng.exponential(150, n) + 1
    surv = np.stack([np.minimum(time, censor), (time <= censor).astype(float)], 1)
    return MultimodalDataset(
        [f"s{i:03d}" for i in range(n)],
        {"a": ModalitySpec("a", "tabular", (6,)), "b": ModalitySpec("b", "tabular", (4,))},
        {"a": ArraySource(a, np.ones(n, bool)), "b": ArraySource(b, present_b)},
        {"y": TaskSpec("y", "binary"), "os": TaskSpec("os", "survival")},
        {"y": y, "os": surv},
        name="signal",
    )
