"""How a benchmark was made: the data fingerprint changes with anything the models see or must
predict and with nothing else, and the settings hash with any setting."""

from __future__ import annotations

import numpy as np

from polyfuse.config import TrainingConfig
from polyfuse.data.dataset import ArraySource, FileSource, ListSource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.evaluation.record import run_record
from polyfuse.training.settings import FitSettings


def _data(tmp_path, **change) -> MultimodalDataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3))
    present = np.ones(6, bool)
    texts = [f"report {i}" for i in range(6)]
    files = []
    for i in range(6):
        path = tmp_path / f"bag{i}.npy"
        if not path.exists():
            np.save(path, np.ones((2, 2)))
        files.append(path)
    y = rng.integers(0, 2, 6).astype(float)
    parts = dict(x=x, present=present, texts=texts, y=y, ids=[f"p{i}" for i in range(6)])
    parts |= change
    return MultimodalDataset(
        parts["ids"],
        {
            "tab": ModalitySpec("tab", "tabular", (3,)),
            "text": ModalitySpec("text", "text", (), vocab_size=100),
            "bag": ModalitySpec("bag", "bag", (2,)),
        },
        {
            "tab": ArraySource(parts["x"], parts["present"]),
            "text": ListSource(parts["texts"]),
            "bag": FileSource(files, "bag"),
        },
        {"y": TaskSpec("y", "binary")},
        {"y": parts["y"]},
        name="toy",
    )


def test_the_fingerprint_follows_what_the_models_see_and_predict(tmp_path):
    base = _data(tmp_path)
    assert base.fingerprint() == _data(tmp_path).fingerprint()  # rebuilt: the same
    x = np.random.default_rng(0).normal(size=(6, 3))
    x[2, 1] += 1e-3
    present = np.ones(6, bool)
    present[4] = False
    texts = [f"report {i}" for i in range(6)]
    texts[5] = "report five"
    y = _data(tmp_path).targets["y"].copy()
    y[0] = 1 - y[0]
    changed = [
        _data(tmp_path, x=x),
        _data(tmp_path, present=present),
        _data(tmp_path, texts=texts),
        _data(tmp_path, y=y),
        _data(tmp_path, ids=[f"q{i}" for i in range(6)]),
        base.subset(np.arange(5)),
    ]
    prints = {d.fingerprint() for d in changed}
    assert len(prints) == len(changed) and base.fingerprint() not in prints
    before = base.fingerprint()
    np.save(tmp_path / "bag3.npy", np.ones((3, 2)))  # a file of another size
    assert base.fingerprint() != before


def test_the_record_names_versions_settings_and_data(tmp_path):
    data = _data(tmp_path)
    kw = dict(models=["late"], hparams={"late": {"dim": 8}}, folds=5, repeats=3)
    record = run_record([data], settings=FitSettings.of(seed=3), **kw)
    assert record["packages"]["numpy"] == np.__version__ and "polyfuse" in record["packages"]
    assert record["settings"]["seed"] == 3 and record["settings"]["folds"] == 5
    assert record["datasets"][0]["fingerprint_sha256"] == data.fingerprint()
    assert record["datasets"][0]["modalities"] == {"tab": 6, "text": 6, "bag": 6}
    again = run_record([data], settings=FitSettings.of(seed=3), **kw)
    assert again["settings_sha256"] == record["settings_sha256"]
    for settings in (
        FitSettings.of(seed=4),
        FitSettings.of(seed=3, training=TrainingConfig(lr=0.01)),
    ):
        other = run_record([data], settings=settings, **kw)
        assert other["settings_sha256"] != record["settings_sha256"]
