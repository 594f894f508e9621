"""What the floors read: bags mean-pooled, sequences as each channel's mean and last observed
value, by hand; a floor on a bag alone learns what the bag carries."""

from __future__ import annotations

import numpy as np
import pytest

from polyfuse.data.dataset import ArraySource, ListSource, MultimodalDataset
from polyfuse.data.pooled import numeric_modalities, pooled
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.data.splits import kfold
from polyfuse.errors import FallbackWarning
from polyfuse.evaluation.classical import default_floors, floored_tasks, run_floors


def test_bags_and_sequences_pooled_by_hand():
    bag = np.array([[1.0, 2.0], [3.0, 6.0]])
    seq = (np.array([[5.0, np.nan], [1.0, 4.0], [np.nan, np.nan]]), np.array([2.0, 1.0, 3.0]))
    data = MultimodalDataset(
        ["a", "b"],
        {
            "wsi": ModalitySpec("wsi", "bag", (2,)),
            "labs": ModalitySpec("labs", "sequence", (2,)),
            "scan": ModalitySpec("scan", "image", (1, 2, 2)),
        },
        {
            "wsi": ListSource([bag, None]),
            "labs": ListSource([seq, None]),
            "scan": ArraySource(np.zeros((2, 1, 2, 2)), np.ones(2, bool)),
        },
        {"y": TaskSpec("y", "binary")},
        {"y": np.array([0.0, 1.0])},
    )
    assert numeric_modalities(data) == ["wsi", "labs"]  # an image is not pooled
    view = pooled(data)
    assert list(view.specs) == ["wsi", "labs"]
    np.testing.assert_allclose(view.sources["wsi"].values[0], [2.0, 4.0])
    # labs sorted by time: t=1 (1, 4), t=2 (5, nan), t=3 (nan, nan)
    np.testing.assert_allclose(view.sources["labs"].values[0], [3.0, 4.0, 5.0, 4.0])
    assert view.specs["labs"].feature_names[:1] == ("labs.mean[0]",)
    assert not view.sources["wsi"].present[1] and not view.sources["labs"].present[1]


def test_a_floor_on_a_bag_alone_learns_what_the_bag_carries():
    rng = np.random.default_rng(0)
    n = 120
    bags = [rng.normal(size=(int(rng.integers(3, 9)), 4)) for _ in range(n)]
    signal = np.array([b[:, 0].mean() for b in bags])
    y = (signal + rng.normal(0, 0.2, n) > 0).astype(float)
    data = MultimodalDataset(
        [f"p{i}" for i in range(n)],
        {"wsi": ModalitySpec("wsi", "bag", (4,))},
        {"wsi": ListSource(bags)},
        {"y": TaskSpec("y", "binary")},
        {"y": y},
    )
    assert floored_tasks(data) == ["y"] and default_floors(data) == ["logreg[all]", "hgb[all]"]
    rows = run_floors(["logreg[wsi]"], data, kfold(data, 3, 1, seed=0))
    assert rows.query("metric == 'auroc'")["value"].gt(0.8).all()


def test_no_numeric_modality_no_floors_with_a_warning():
    data = MultimodalDataset(
        ["a", "b"],
        {"scan": ModalitySpec("scan", "image", (1, 2, 2))},
        {"scan": ArraySource(np.zeros((2, 1, 2, 2)), np.ones(2, bool))},
        {"y": TaskSpec("y", "binary")},
        {"y": np.array([0.0, 1.0])},
    )
    with pytest.warns(FallbackWarning, match="no numeric modality"):
        assert floored_tasks(data) == []
