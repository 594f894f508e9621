"""Spatial explanations: per-pixel attributions drawn over images, attention drawn at a slide's
patch coordinates (read from the CLAM file), for the first patients."""

from __future__ import annotations

import numpy as np
import pytest

from polyfuse.config import TrainingConfig
from polyfuse.data.dataset import ArraySource, FileSource, MultimodalDataset
from polyfuse.data.readers import read_patch_coords
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.explain.report import explain
from polyfuse.training.fit import fit_model
from polyfuse.training.settings import FitSettings

FAST = FitSettings.of(training=TrainingConfig(epochs=3, progress=False), seed=0)
PNG = b"\x89PNG\r\n\x1a\n"


def test_pixel_attributions_are_drawn_and_vanish_where_the_image_is_the_baseline(tmp_path):
    pytest.importorskip("captum")
    from polyfuse.explain.features import integrated_gradients

    rng = np.random.default_rng(0)
    n = 40
    images = np.zeros((n, 1, 8, 8), np.float32)
    images[:, :, :4, :4] = rng.normal(size=(n, 1, 4, 4))  # only the top-left quadrant varies
    y = (images[:, 0, :4, :4].mean((1, 2)) > 0).astype(np.float32)
    data = MultimodalDataset(
        [f"p{i}" for i in range(n)],
        {"scan": ModalitySpec("scan", "image", (1, 8, 8))},
        {"scan": ArraySource(images, np.ones(n, bool))},
        {"y": TaskSpec("y", "binary")},
        {"y": y},
    )
    fitted = fit_model("early", data, FAST)
    att = integrated_gradients(fitted, data, "y")
    assert att.values["scan"].shape == (n, 1, 8, 8)
    assert (att.values["scan"][:, :, 4:, :] == 0).all()  # input = baseline there: nothing
    assert np.abs(att.values["scan"][:, :, :4, :4]).sum() > 0
    files = explain(fitted, data, tmp_path, patients=[])
    figure = tmp_path / "pixels_y_scan.png"
    assert figure in files and figure.read_bytes().startswith(PNG)


def test_slide_attention_is_drawn_at_the_patches_coordinates(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(1)
    n, paths = 12, []
    for i in range(n):
        k = int(rng.integers(3, 7))
        path = tmp_path / f"slide{i}.h5"
        with h5py.File(path, "w") as f:
            f["features"] = rng.normal(size=(k, 5)).astype(np.float32)
            f["coords"] = (rng.integers(0, 50, size=(1, k, 2)) * 256).astype(np.int64)
        paths.append(path)
    coords = read_patch_coords(paths[0])
    assert coords is not None and coords.ndim == 2 and coords.shape[1] == 2
    assert read_patch_coords(tmp_path / "missing.npy") is None
    x = rng.normal(size=(n, 3)).astype(np.float32)
    data = MultimodalDataset(
        [f"p{i}" for i in range(n)],
        {"clin": ModalitySpec("clin", "tabular", (3,)), "wsi": ModalitySpec("wsi", "bag", (5,))},
        {"clin": ArraySource(x, np.ones(n, bool)), "wsi": FileSource(paths, "bag")},
        {"y": TaskSpec("y", "binary")},
        {"y": (x[:, 0] > 0).astype(np.float32)},
    )
    fitted = fit_model("early", data, FAST)
    files = explain(fitted, data, tmp_path / "out", patients=[])
    figure = tmp_path / "out" / "slide_wsi.png"
    assert figure in files and figure.read_bytes().startswith(PNG)
