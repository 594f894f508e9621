"""FileSource keeps only compact path strings in memory and reads files lazily."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from polyfuse.data import readers
from polyfuse.data.dataset import FileSource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec


def _bags(tmp_path: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        path = tmp_path / f"bag{i}.npy"
        np.save(path, np.full((i + 1, 3), i, dtype=np.float32))
        paths.append(path)
    return paths


def test_paths_are_kept_as_strings_and_read_lazily(tmp_path):
    paths = _bags(tmp_path, 3)
    src = FileSource([paths[0], None, str(paths[2])], "bag")
    assert src.paths == [str(paths[0]), None, str(paths[2])]
    assert all(isinstance(p, str) for p in src.paths if p is not None)
    assert src.present.tolist() == [True, False, True]
    first, absent, last = src.items(np.arange(3))
    assert absent is None
    np.testing.assert_array_equal(first, np.zeros((1, 3), np.float32))
    np.testing.assert_array_equal(last, np.full((3, 3), 2, np.float32))


def test_subsets_share_the_path_strings(tmp_path):
    src = FileSource(_bags(tmp_path, 4), "bag")
    sub = src.take(np.array([3, 1]))
    assert sub.paths[0] is src.paths[3] and sub.paths[1] is src.paths[1]
    hidden = src.hide(np.array([True, False, False, False]))
    assert hidden.paths[0] is None and hidden.paths[2] is src.paths[2]


def test_a_large_index_costs_little_memory():
    """A path costs its string (~100 bytes here), not a pathlib.Path object (~400 bytes)."""
    n = 20_000
    src = FileSource([Path(f"/data/cohort/bags/sample_{i:06d}.h5") for i in range(n)], "bag")
    assert {type(p) for p in src.paths} == {str}
    per_path = (sys.getsizeof(src.paths) + sum(sys.getsizeof(p) for p in src.paths)) / n
    assert per_path < 120, f"{per_path:.0f} bytes per path"


def test_batches_of_a_file_dataset_read_every_file(tmp_path, monkeypatch):
    """With a cache smaller than the cohort, every batch still reads the right files."""
    monkeypatch.setattr(readers, "CACHE_SIZE", 2)
    readers.clear_cache()
    paths = _bags(tmp_path, 5)
    spec = ModalitySpec("bag", "bag", (3,))
    task = TaskSpec("y", "binary")
    data = MultimodalDataset(
        [f"s{i}" for i in range(5)],
        {"bag": spec},
        {"bag": FileSource(paths, "bag")},
        {"y": task},
        {"y": np.array([0, 1, 0, 1, 0], np.float32)},
    )
    for idx in ([4, 0, 2], [1, 3], [4]):
        batch = data[idx]
        lengths = batch.inputs["bag"].token_mask.sum(1).tolist()
        assert lengths == [i + 1 for i in idx]
        assert batch.inputs["bag"].data[:, 0, 0].tolist() == [float(i) for i in idx]
    info = readers.cache_info()
    assert info is not None and info.currsize <= 2
    readers.clear_cache()
