"""Applying a fitted run to new patients (issue #15): the run's input contract decides how a new
table is read, so a new site gets its own numbers or a clear refusal, never silent garbage."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from polyfuse.cli import app
from polyfuse.config import load_config
from polyfuse.data.contract import CONTRACT_FILE
from polyfuse.errors import ConfigError, DataError, DataWarning
from polyfuse.inference.predictor import Predictor
from polyfuse.training.experiment import run_fit

EXAMPLE = Path(__file__).parents[2] / "examples" / "own_data"


def fit(folder: Path, config: dict) -> Path:
    """Fit `config` (written to `folder/experiment.yaml`) and return the run directory."""
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    run, _ = run_fit(load_config(path))
    return run


TRAINING = {"epochs": 2, "batch_size": 16, "progress": False, "val_fraction": 0.25}


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> tuple[Path, Path]:
    """The own-data example (clinical table with a categorical column + PNG scans) fitted."""
    site = tmp_path_factory.mktemp("train") / "own"
    shutil.copytree(EXAMPLE, site)
    config = yaml.safe_load((site / "experiment.yaml").read_text())
    config |= {"training": TRAINING, "output": "runs"}
    return site, fit(site, config)


def new_site(
    tmp_path: Path, train_site: Path, rows: list[str], *, images: str = "new", labels: bool = True
) -> Path:
    """A new site's folder holding `rows` of the training table and its own scans:
    `images="new"` writes different images under the same names, "same" copies the training
    ones, "none" writes no scans folder at all."""
    frame = pd.read_csv(train_site / "patients.csv", dtype={"patient_id": str})
    frame = frame.set_index("patient_id").loc[rows].reset_index()
    site = tmp_path / "site2"
    site.mkdir(parents=True)
    if images != "none":
        (site / "scans").mkdir()
        for path in frame["scan"].dropna():
            if images == "same":
                shutil.copy(train_site / path, site / path)
            else:
                pixels = np.asarray(Image.open(train_site / path))
                Image.fromarray((255 - pixels).astype(np.uint8)).save(site / path)
    frame = frame if labels else frame.drop(columns="response")
    frame.to_csv(site / "patients.csv", index=False)
    return site / "patients.csv"


PATIENTS = ["P004", "P001", "P002"]  # not in file order: the output keeps the input order


# ------------------------------------------------------------------------- finding 1: paths


def test_paths_resolve_against_the_new_tables_folder(image_run, tmp_path):
    train_site, run = image_run
    predictor = Predictor.load(run)
    trained = predictor.predict(train_site / "patients.csv").loc[PATIENTS]
    same = predictor.predict(new_site(tmp_path / "a", train_site, PATIENTS, images="same"))
    new = predictor.predict(new_site(tmp_path / "b", train_site, PATIENTS, labels=False))
    assert list(new.index) == PATIENTS and new.index.name == "patient_id"
    np.testing.assert_allclose(same["response.prob"], trained["response.prob"], rtol=1e-6)
    # the new site's own (inverted) images give other numbers than the training images
    assert np.abs(new["response.prob"] - trained["response.prob"]).min() > 1e-4


def test_a_site_without_the_files_is_refused_naming_its_own_folder(image_run, tmp_path):
    train_site, run = image_run
    table = new_site(tmp_path, train_site, PATIENTS, images="none")
    with pytest.raises(DataError, match="P004") as err:
        Predictor.load(run).predict(table)
    assert str(table.parent) in str(err.value) and str(train_site) not in str(err.value)


def test_data_root_option_points_paths_elsewhere(image_run, tmp_path):
    train_site, run = image_run
    table = new_site(tmp_path, train_site, PATIENTS, images="new")
    elsewhere = tmp_path / "table_only"
    elsewhere.mkdir()
    moved = shutil.copy(table, elsewhere / "patients.csv")
    with pytest.raises(DataError, match="does not exist"):
        Predictor.load(run).predict(moved)
    by_root = Predictor.load(run).predict(moved, root=table.parent)
    pd.testing.assert_frame_equal(by_root, Predictor.load(run).predict(table))


# ------------------------------------------------------------------------- finding 2: levels


def test_a_frame_with_file_columns_needs_a_root(image_run):
    """A DataFrame has no folder of its own: guessing one could read another site's files."""
    train_site, run = image_run
    frame = pd.read_csv(train_site / "patients.csv")
    with pytest.raises(ConfigError, match="give root="):
        Predictor.load(run).predict(frame)


def test_one_patient_is_scored_exactly_as_in_a_batch(image_run, tmp_path):
    train_site, run = image_run
    predictor = Predictor.load(run)
    batch = predictor.predict(train_site / "patients.csv")
    frame = pd.read_csv(train_site / "patients.csv", dtype={"patient_id": str})
    for pid in ("P003", "P006"):  # P003 has no scan; both have one sex level only
        one = predictor.predict(frame[frame.patient_id == pid], root=train_site)
        assert one.shape == (1, 2)  # the probability and the 90% prediction set
        assert one.loc[pid, "response.prob"] == pytest.approx(batch.loc[pid, "response.prob"])
        assert one.loc[pid, "response.set"] == batch.loc[pid, "response.set"]


STAGED = {
    "name": "staged",
    "data": {
        "table": "t.csv",
        "modalities": {"clinical": {"kind": "tabular", "columns": ["x"], "categorical": ["stage"]}},
        "tasks": {"y": {"type": "binary", "column": "y"}},
    },
    "training": TRAINING,
    "output": "runs",
}


def staged_table(n: int, levels: list[str], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    stage = rng.choice(levels, n)
    return pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(n)],
            "x": rng.normal(size=n),
            "stage": stage,
            "y": (stage == levels[-1]).astype(int),
        }
    )


@pytest.fixture(scope="module")
def staged_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("staged")
    staged_table(60, ["I", "II", "III"]).to_csv(folder / "t.csv", index=False)
    return fit(folder, STAGED)


def test_levels_are_the_training_levels_never_the_new_tables(staged_run):
    predictor = Predictor.load(staged_run)
    contract = json.loads((staged_run / CONTRACT_FILE).read_text())
    assert contract["modalities"]["clinical"]["read"]["categorical"] == {
        "stage": ["I", "II", "III"]
    }
    new = staged_table(3, ["I", "III"], seed=1).assign(stage=["I", "III", "III"])
    by_itself = predictor.predict(new)
    # stage III must land in the stage-III column: same numbers as inside a full-level table
    others = staged_table(6, ["I", "II", "III"], seed=2)
    full = pd.concat([new, others.assign(id=others.id + "b")], ignore_index=True)
    in_full = predictor.predict(full).loc[by_itself.index]
    np.testing.assert_allclose(by_itself["y.prob"], in_full["y.prob"], rtol=1e-6)


def test_an_unseen_level_is_refused_naming_sample_and_column(staged_run):
    new = staged_table(3, ["I"], seed=1).assign(stage=["I", "III", "IV"])
    with pytest.raises(DataError, match=r"column 'stage'.*s2=IV") as err:
        Predictor.load(staged_run).predict(new)
    assert "unknown_category" in str(err.value)


def test_an_unseen_level_may_be_imputed_with_a_warning(tmp_path):
    config = json.loads(json.dumps(STAGED))
    config["data"]["modalities"]["clinical"]["unknown_category"] = "missing"
    staged_table(60, ["I", "II", "III"]).to_csv(tmp_path / "t.csv", index=False)
    predictor = Predictor.load(fit(tmp_path, config))
    new = staged_table(2, ["I"], seed=1).assign(stage=["IV", None], x=0.5)
    with pytest.warns(DataWarning, match=r"'stage'.*s0=IV"):
        scores = predictor.predict(new)
    assert scores.loc["s0", "y.prob"] == pytest.approx(scores.loc["s1", "y.prob"])  # as missing


# ------------------------------------------------------------------------- finding 3: labels


def test_labels_are_optional_and_scored_when_given(image_run, tmp_path):
    train_site, run = image_run
    predictor = Predictor.load(run)
    table = pd.read_csv(train_site / "patients.csv", dtype={"patient_id": str})
    unlabelled = predictor.predict(table.drop(columns="response"), root=train_site)
    assert list(unlabelled.columns) == ["response.prob", "response.set"]
    assert len(unlabelled) == 40
    assert predictor.score(table.drop(columns="response"), root=train_site).empty
    metrics = predictor.score(table, root=train_site).set_index("metric")["value"]
    assert 0 <= metrics["auroc"] <= 1 and set(metrics.index) >= {"auroc", "f1"}


def test_a_missing_feature_column_is_refused_naming_it(image_run):
    train_site, run = image_run
    table = pd.read_csv(train_site / "patients.csv").drop(columns="lab_crp")
    with pytest.raises(DataError, match=r"'lab_crp' \(modality 'clinical'\)"):
        Predictor.load(run).predict(table, root=train_site)


def test_a_wrong_image_shape_is_refused_naming_the_sample(image_run, tmp_path):
    train_site, run = image_run
    table = new_site(tmp_path, train_site, ["P001"], images="new")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(table.parent / "scans" / "P001.png")
    with pytest.raises(DataError, match=r"sample 'P001'.*\(1, 8, 8\).*\(1, 16, 16\)"):
        Predictor.load(run).predict(table)


# ------------------------------------------------------------------------- finding 4: long tables


SEQ = {
    "name": "labs",
    "data": {
        "table": "m.csv",
        "modalities": {
            "clin": {"kind": "tabular", "columns": ["x"]},
            "labs": {"kind": "sequence", "table": "labs.csv", "columns": ["crp"]},
        },
        "tasks": {"y": {"type": "binary", "column": "y"}},
    },
    "training": TRAINING,
    "output": "runs",
}


def lab_tables(folder: Path, ids: list[str], others: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    pd.DataFrame(
        {"id": ids, "x": rng.normal(size=len(ids)), "y": rng.integers(0, 2, len(ids))}
    ).to_csv(folder / "m.csv", index=False)
    every = ids + [f"other{i}" for i in range(others)]  # a lab export holds more patients
    rows = [(p, t, rng.normal()) for p in every for t in range(3)]
    pd.DataFrame(rows, columns=["id", "time", "crp"]).to_csv(folder / "labs.csv", index=False)


def test_a_long_table_is_given_per_call_and_may_hold_other_patients(tmp_path):
    lab_tables(tmp_path, [f"p{i}" for i in range(30)], others=5, seed=0)
    with pytest.warns(DataWarning, match="5 patient"):
        run = fit(tmp_path, SEQ)
    predictor = Predictor.load(run)
    site = tmp_path / "site2"
    lab_tables(site, ["n0", "n1"], others=4, seed=1)
    with pytest.raises(ConfigError, match="--table labs=PATH"):
        predictor.predict(site / "m.csv")
    with pytest.warns(DataWarning):
        scores = predictor.predict(site / "m.csv", tables={"labs": site / "labs.csv"})
    alone = site / "alone.csv"
    pd.read_csv(site / "labs.csv").query("id == 'n1'").to_csv(alone, index=False)
    pd.read_csv(site / "m.csv").query("id == 'n1'").to_csv(site / "one.csv", index=False)
    one = predictor.predict(site / "one.csv", tables={"labs": alone})
    assert one.loc["n1", "y.prob"] == pytest.approx(scores.loc["n1", "y.prob"])


# ------------------------------------------------------------------------- finding 5: survival times


def test_survival_columns_are_named_by_time_with_a_risk_column(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    x = rng.normal(size=n)
    pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(n)],
            "x": x,
            "time": np.round(rng.exponential(300 * np.exp(-x)) + 1),
            "event": rng.integers(0, 2, n),
        }
    ).to_csv(tmp_path / "s.csv", index=False)
    config = {
        "name": "surv",
        "data": {
            "table": "s.csv",
            "modalities": {"clin": {"kind": "tabular", "columns": ["x"]}},
            "tasks": {
                "os": {
                    "type": "survival",
                    "time_column": "time",
                    "event_column": "event",
                    "time_unit": "days",
                }
            },
        },
        "training": TRAINING,
        "output": "runs",
    }
    predictor = Predictor.load(fit(tmp_path, config))
    times = predictor.contract.tasks["os"]["times"]
    cuts = predictor.fitted.objectives["os"].cuts[1:].tolist()
    assert times == cuts and len(times) == 4
    scores = predictor.predict(tmp_path / "s.csv")
    named = ["os.risk", *[f"os.survival@{t:.6g}d" for t in times]]
    assert list(scores.columns) == named + (
        ["os.time_lower_days"] * ("os" in predictor.fitted.conformal)
    )
    curves = scores.filter(like="survival@").to_numpy()
    assert (np.diff(curves, axis=1) <= 1e-7).all()  # survival falls with time


# ------------------------------------------------------------------------- the CLI


def test_cli_predicts_a_new_site_with_data_root_and_prints_metrics(image_run, tmp_path):
    train_site, run = image_run
    table = new_site(tmp_path, train_site, PATIENTS, images="new")
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(app, ["predict", str(run), str(table), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "auroc" in result.output
    pred = pd.read_csv(out, index_col=0, dtype={"patient_id": str})
    assert list(pred.index) == PATIENTS
    result = CliRunner().invoke(app, ["predict", str(run), str(table), "--table", "x"])
    assert result.exit_code == 2 and "MODALITY=PATH" in result.output
