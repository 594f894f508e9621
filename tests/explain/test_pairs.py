"""Pair-weight figure of hierarchical fusion: the matrix behind it and a readable PNG."""

from __future__ import annotations

import numpy as np
import pytest

from polyfuse.errors import DataError
from polyfuse.explain.pairs import pair_matrix, plot_pair_weights

PNG = b"\x89PNG\r\n\x1a\n"
NAMES = ("a+b", "a+c", "b+c", "a+b+c")


def weights() -> np.ndarray:
    return np.array([[0.6, 0.2, 0.1, 0.1], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


def test_pair_matrix_is_symmetric_mean_of_pairs():
    mat = pair_matrix(weights(), NAMES, ["a", "b", "c"])
    assert np.isnan(np.diag(mat)).all()
    np.testing.assert_allclose(mat[0, 1], (0.6 + 1.0) / 3)
    np.testing.assert_allclose(mat, mat.T)
    np.testing.assert_allclose(mat[1, 2], 0.1 / 3)


def test_pair_matrix_rejects_mismatch():
    with pytest.raises(DataError, match="expected"):
        pair_matrix(weights()[:, :2], NAMES, ["a", "b", "c"])
    with pytest.raises(DataError, match="not in"):
        pair_matrix(weights(), NAMES, ["a", "b"])


def test_plot_pair_weights_writes_png(tmp_path):
    path = plot_pair_weights(weights(), NAMES, ["a", "b", "c"], tmp_path / "f" / "pairs.png")
    assert path.read_bytes()[:8] == PNG
    assert [p.name for p in path.parent.iterdir()] == ["pairs.png"]  # no temporary left
