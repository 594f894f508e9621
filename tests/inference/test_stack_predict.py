"""A fitted stacked ensemble for new patients: `polyfuse fit` saves it (members, meta-learner,
input contract), `polyfuse predict`, `Predictor` and `polyfuse serve` score with it exactly as
its members and weights say; each floor scores new patients as it scores a CV test fold, also
after a save and load; a saved floor holding foreign types is refused."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import run, survival_cohort, write_cohort

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.specs import TaskSpec
from polyfuse.data.splits import kfold
from polyfuse.errors import ConfigError, DataError
from polyfuse.inference.predictor import Predictor

pytest.importorskip("sksurv")
pytest.importorskip("skops")

MEMBERS = ["late", "logreg[a]", "hgb[all]"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, Path]:
    """`polyfuse fit` of a stack over a network and two floors: (data folder, run directory)."""
    root = tmp_path_factory.mktemp("stack")
    config = {
        "name": "st",
        "data": write_cohort(root),
        "model": {
            "name": "stack",
            "params": {"members": MEMBERS, "member_hparams": {"late": {"dim": 8}}},
        },
        "training": {"epochs": 3, "progress": False},
        "output": str(root / "runs"),
    }
    (root / "exp.yaml").write_text(yaml.safe_dump(config))
    result = run("fit", root / "exp.yaml")
    assert result.exit_code == 0, result.output
    assert "fitted stack" in result.output
    return root, root / "runs" / "st" / "fit"


def _by_hand(run_dir: Path, data: MultimodalDataset) -> np.ndarray:
    """The stack's probability from its saved members and `stack.json`, computed here."""
    from polyfuse.training.fit import FittedModel
    from polyfuse.training.floors import FittedFloor

    meta = json.loads((run_dir / "stack.json").read_text())
    columns = []
    for entry in meta["members"]:
        fits = []  # a member is its inner-fold fits; their probabilities are averaged
        for path in entry["paths"]:
            if entry["name"] in ("logreg[a]", "hgb[all]"):
                fits.append(FittedFloor.load(run_dir / path).predict(data))
            else:
                fits.append(FittedModel.load(run_dir / path).predict(data)["y"]["prob"])
        p = np.clip(np.mean(fits, 0, dtype=np.float64), 1e-6, 1 - 1e-6)
        columns.append(np.log(p / (1 - p)))
    z = (np.stack(columns, 1) - meta["centre"]) / meta["scale"]
    return 1 / (1 + np.exp(-(meta["intercept"] + z @ np.asarray(meta["weights"]))))


def test_a_fitted_stack_predicts_as_its_members_and_weights_say(fitted):
    root, run_dir = fitted
    meta = json.loads((run_dir / "stack.json").read_text())
    assert [m["name"] for m in meta["members"]] == MEMBERS
    assert all(len(m["paths"]) == meta["plan"]["inner_folds"] for m in meta["members"])
    assert all(w >= 0 for w in meta["weights"]) and sum(meta["weights"]) > 0.5
    predictor = Predictor.load(run_dir)
    assert predictor.fitted.model_name == "stack"
    data = predictor.read(root / "cohort.csv")
    frame = predictor.predict(data)
    assert list(frame.columns) == ["y.prob"] and list(frame.index[:2]) == ["p0", "p1"]
    np.testing.assert_allclose(frame["y.prob"], _by_hand(run_dir, data), rtol=1e-6)
    auroc = predictor.score(data).set_index("metric").loc["auroc", "value"]
    assert auroc > 0.85  # y is driven by a and b, and the stack has seen these patients


def test_polyfuse_predict_writes_the_stacks_scores_and_metrics(fitted, tmp_path):
    root, run_dir = fitted
    new = pd.read_csv(root / "cohort.csv").iloc[[5, 1, 9]]
    new.to_csv(tmp_path / "new.csv", index=False)
    result = run("predict", run_dir, tmp_path / "new.csv", "-o", tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "out.csv", index_col=0)
    assert list(out.index) == ["p5", "p1", "p9"]
    data = Predictor.load(run_dir).read(tmp_path / "new.csv")
    np.testing.assert_allclose(out["y.prob"], _by_hand(run_dir, data), rtol=1e-6)


def test_serve_answers_as_the_predictor_for_a_stack(fitted):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from polyfuse.inference.serve import create_app

    root, run_dir = fitted
    predictor = Predictor.load(run_dir)
    rows = pd.read_csv(root / "cohort.csv").iloc[:4].drop(columns="y")
    with TestClient(create_app(predictor)) as client:
        assert client.get("/health").json()["model"] == "stack"
        answer = client.post("/predict", json={"patients": rows.to_dict(orient="records")})
    assert answer.status_code == 200, answer.text
    got = pd.DataFrame(answer.json()["predictions"]).set_index("id")
    want = predictor.predict(rows)
    np.testing.assert_allclose(got["y.prob"], want["y.prob"], atol=1e-9)


def test_explain_and_export_of_a_stack_name_its_members(fitted):
    from polyfuse.training.fit import FittedModel

    _, run_dir = fitted
    with pytest.raises(ConfigError, match=r"stacked ensemble.*members/"):
        FittedModel.load(run_dir)
    result = run("explain", run_dir)
    assert result.exit_code == 2 and "members/" in result.output


def test_a_corrupt_or_escaping_stack_json_is_refused(fitted, tmp_path):
    import shutil

    _, run_dir = fitted
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    meta = json.loads((copy / "stack.json").read_text())
    del meta["centre"]
    (copy / "stack.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"stack\.json is corrupt or incomplete.*centre"):
        Predictor.load(copy)
    meta = json.loads((run_dir / "stack.json").read_text())
    meta["members"][1]["paths"][-1] = "../../elsewhere.skops"
    (copy / "stack.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="'logreg\\[a\\]' lies outside the run directory"):
        Predictor.load(copy)


def _labelled(kind: str) -> MultimodalDataset:
    data = survival_cohort(task="y", without_b=0.3)
    if kind == "survival":
        return data
    a, b = data.sources["a"].values, data.sources["b"].values
    signal = a[:, 0] + b[:, 0] + np.random.default_rng(1).normal(0, 0.5, len(data))
    y = (signal > 0).astype(np.float32) if kind == "binary" else signal.astype(np.float32)
    return data.replace(tasks={"y": TaskSpec("y", kind)}, targets={"y": y})


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("survival", "coxnet[b]"),
        ("survival", "coxnet[all]"),
        ("survival", "late-cox"),
        ("survival", "rsf[all]"),
        ("binary", "logreg[all]"),
        ("binary", "hgb[all]"),
        ("regression", "ridge[all]"),
        ("regression", "hgb[a]"),
    ],
)
def test_a_fitted_floor_scores_new_patients_as_it_scores_a_test_fold(kind, name, tmp_path):
    """Fitted on a fold's training part, saved and loaded, a floor gives the fold's test
    patients (read raw, as new patients are) the scores the CV gives them."""
    from polyfuse.training.floors import FittedFloor, make_fold, resolve_floor

    data = _labelled(kind)
    split = kfold(data, 3, 1, seed=0)[0]
    fold = make_fold(data, split, "y", seed=0)
    floor, modalities, _ = resolve_floor(name, data)
    in_cv = floor(fold, modalities)
    fitted = FittedFloor.fit(name, fold)
    fitted.save(tmp_path / "floor.skops")
    loaded = FittedFloor.load(tmp_path / "floor.skops")
    new = data.subset(split.test)
    np.testing.assert_allclose(fitted.predict(new), in_cv, rtol=1e-12)
    np.testing.assert_array_equal(loaded.predict(new), fitted.predict(new))
    assert np.ptp(in_cv) > 0  # a fitted model, not a constant


def test_a_saved_floor_with_a_foreign_type_is_refused(tmp_path):
    import skops.io as sio

    from polyfuse.training.floors import FittedFloor

    sio.dump({"floor": "ridge", "state": {"when": datetime.date(2020, 1, 1)}}, tmp_path / "f.skops")
    with pytest.raises(DataError, match=r"f\.skops holds types .*datetime\.date"):
        FittedFloor.load(tmp_path / "f.skops")
    (tmp_path / "g.skops").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable skops file"):
        FittedFloor.load(tmp_path / "g.skops")
