"""Fixtures shared by the test folders (their helper functions are in `helpers.py`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "own_data"


@pytest.fixture()
def own_data(tmp_path: Path) -> Path:
    """A copy of the own-data example with a short training schedule (two epochs), writing its
    runs below its own folder."""
    dest = tmp_path / "own"
    shutil.copytree(EXAMPLE, dest)
    text = (dest / "experiment.yaml").read_text()
    text = text.replace("epochs: 30", "epochs: 2").replace("output: ../../runs", "output: runs")
    (dest / "experiment.yaml").write_text(text)
    return dest


@pytest.fixture()
def no_data(monkeypatch):
    """Reading any data is a test failure: the checks (names, config, output) must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("data were read before the checks")

    monkeypatch.setattr("polyfuse.datasets.from_config", refuse)
    monkeypatch.setattr("polyfuse.datasets.load", refuse)
    monkeypatch.setattr("polyfuse.datasets.DatasetInfo.load", refuse)
