"""Per-feature attributions, modality contributions with intervals, and the per-patient pages
(#18 item 7): integrated gradients that add up, rank the features that drive the label, and
leave absent modalities alone; pages that say what the predictor says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polyfuse.config import TrainingConfig
from polyfuse.data.dataset import ArraySource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError
from polyfuse.training.fit import FittedModel, fit_model
from polyfuse.training.settings import FitSettings

pytest.importorskip("captum")


def _cohort(n: int = 400, seed: int = 0) -> MultimodalDataset:
    """y from a0 (strong) and b1 (weaker); b absent for a third; a2, a3, b0 are noise."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 4)).astype(np.float32)
    b = rng.normal(size=(n, 2)).astype(np.float32)
    has_b = np.arange(n) % 3 != 0
    logit = 2.5 * a[:, 0] + 1.2 * b[:, 1] * has_b
    y = (logit + rng.logistic(size=n) * 0.3 > 0).astype(np.float32)
    return MultimodalDataset(
        [f"p{i}" for i in range(n)],
        {
            "a": ModalitySpec("a", "tabular", (4,), ("a0", "a1", "a2", "a3")),
            "b": ModalitySpec("b", "tabular", (2,), ("b0", "b1")),
        },
        {"a": ArraySource(a, np.ones(n, bool)), "b": ArraySource(b, has_b)},
        {"y": TaskSpec("y", "binary")},
        {"y": y},
        name="ig",
    )


@pytest.fixture(scope="module")
def fitted() -> FittedModel:
    training = TrainingConfig(epochs=30, batch_size=64, progress=False)
    return fit_model("early", _cohort(), FitSettings.of(training=training, seed=0))


def test_attributions_add_up_and_rank_the_features_that_drive_the_label(fitted):
    from polyfuse.explain.features import feature_table, integrated_gradients

    data = _cohort(60, seed=1)
    att = integrated_gradients(fitted, data, "y", steps=64)
    total = sum(v.reshape(len(v), -1).sum(1) for v in att.values.values())
    logits = np.log(fitted.predict(data)["y"]["prob"]) - np.log1p(
        -fitted.predict(data)["y"]["prob"]
    )
    assert np.abs(att.delta).max() < 0.05 * np.ptp(logits)  # completeness, within the integral
    assert np.corrcoef(total, logits)[0, 1] > 0.99
    table = feature_table(att, fitted).set_index("feature")
    assert list(table.index[:2]) == ["a0", "b1"]  # the two that carry the label, in order
    assert table.loc["a0", "mean_abs"] > 3 * table.loc[["a1", "a2", "a3", "b0"], "mean_abs"].max()
    absent = ~data.sources["b"].present
    assert (att.values["b"][absent] == 0).all()  # an absent modality has nothing to attribute


def test_contributions_have_intervals_and_pages_say_what_the_predictor_says(fitted, tmp_path):
    from polyfuse.explain.report import explain
    from polyfuse.inference.predictor import Predictor

    data = _cohort(60, seed=2)
    files = explain(fitted, data, tmp_path, patients=["p0", "p1"])
    contrib = pd.read_csv(tmp_path / "contributions.csv").set_index("modality")
    assert (contrib["ci_low"] <= contrib["mean"]).all()
    assert (contrib["mean"] <= contrib["ci_high"]).all()
    assert contrib.loc["a", "mean"] > contrib.loc["b", "mean"]
    assert contrib.loc["b", "n"] == data.sources["b"].present.sum()
    assert {"features_y.png", "features_y.csv", "p0.html", "p1.html"} <= {f.name for f in files}
    page = (tmp_path / "patients" / "p0.html").read_text()
    predicted = Predictor(fitted).predict(data).loc["p0"]
    assert f"{predicted['y.prob']:.3f}" in page and f"<td>{predicted['y.set']}</td>" in page
    assert "Absent for this patient: b." in page  # p0 has no b
    assert "a0" in page and ("raises" in page or "lowers" in page)
    with pytest.raises(ConfigError, match="did you mean 'p1'"):
        explain(fitted, data, tmp_path, patients=["p1x"])


def test_the_command_explains_the_held_out_patients_by_default(tmp_path):
    """`polyfuse explain RUN` reads the run's data and explains its validation part, the
    patients the weights were not fitted on; `--patient` picks the pages."""
    import json

    import yaml
    from helpers import run, write_cohort

    config = tmp_path / "exp.yaml"
    cfg = {
        "name": "ex",
        "data": write_cohort(tmp_path),
        "training": {"epochs": 3, "progress": False},
    }
    config.write_text(yaml.safe_dump(cfg))
    assert run("fit", config).exit_code == 0
    fit_dir = tmp_path / "runs" / "ex" / "fit"
    held_out = json.loads((fit_dir / "model.json").read_text())["validation_ids"]
    assert len(held_out) == 24  # 20% of 120
    result = run("explain", fit_dir, "--patient", held_out[0])
    assert result.exit_code == 0, result.output
    contrib = pd.read_csv(fit_dir / "explain" / "contributions.csv")
    assert (contrib["n"] == len(held_out)).all()
    pages = list((fit_dir / "explain" / "patients").glob("*.html"))
    assert [p.stem for p in pages] == [held_out[0]]
