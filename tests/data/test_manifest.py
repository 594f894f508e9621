"""Manifest/MuData loading: the happy paths with known values, and every validation case.

Each bad-input test builds a tiny real file in tmp_path and checks that the error names what a
user must fix (file, column, sample id, modality or value).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest

from polyfuse.config import DataConfig, ModalityConfig, parse_config
from polyfuse.data.checks import check_dataset
from polyfuse.data.dataset import (
    ArraySource,
    FileSource,
    ListSource,
    MultimodalDataset,
)
from polyfuse.data.manifest import load_data, load_frame, read_table
from polyfuse.data.omics import _omics_modality
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError, DataError, DataWarning

# ------------------------------------------------------------------------------ helpers


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _config(table: Path, modalities: dict[str, Any], tasks: dict[str, Any] | None = None, **kw):
    tasks = tasks if tasks is not None else {"y": {"type": "regression", "column": "y"}}
    return DataConfig.model_validate(dict(table=table, modalities=modalities, tasks=tasks, **kw))


def _simple(tmp_path: Path, **columns: list[Any]) -> Path:
    """A manifest with ids s1.. and the given columns (plus y = 0.5 when not given)."""
    n = len(next(iter(columns.values())))
    frame = pd.DataFrame({"id": [f"s{i + 1}" for i in range(n)], **columns})
    if "y" not in frame:
        frame["y"] = 0.5
    return _write(frame, tmp_path / "m.csv")


def _load_simple(tmp_path: Path, modalities=None, tasks=None, **columns: list[Any]):
    table = _simple(tmp_path, **columns)
    modalities = modalities or {"x": {"kind": "tabular", "columns": ["a"]}}
    return load_data(_config(table, modalities, tasks))


def _png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


def _bag(path: Path, features: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f["features"] = features
        f["coords"] = np.zeros((len(features), 2))


# ------------------------------------------------------------------------------ happy paths


@pytest.fixture
def cohort(tmp_path: Path) -> DataConfig:
    """Five samples with every kind of modality and task, some missing blocks."""
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    (root / "bags").mkdir()
    (root / "reports").mkdir()
    rng = np.random.default_rng(0)
    np.save(root / "img" / "s1.npy", np.full((1, 4, 5), 7.0, np.float32))
    _png(root / "img" / "s2.png", np.arange(20, dtype=np.uint8).reshape(4, 5))
    np.save(root / "img" / "s4.npy", rng.random((1, 4, 5)).astype(np.float32))
    _bag(root / "bags" / "s1.h5", np.arange(6, dtype=np.float32).reshape(3, 2))
    _bag(root / "bags" / "s3.h5", rng.random((5, 2)).astype(np.float32))
    (root / "reports" / "s1.txt").write_text("Tumour in the left adrenal gland.")
    manifest = pd.DataFrame(
        {
            "patient": ["001", "002", "003", "004", "005"],
            "age": [50.5, np.nan, 61.0, 40.0, 70.0],
            "stage": ["II", "I", None, "III", "I"],
            "rna_a": [1.0, 2.0, np.nan, 4.0, 5.0],
            "rna_b": [0.5, np.nan, np.nan, 1.5, 2.5],
            "image": ["img/s1.npy", "img/s2.png", None, "img/s4.npy", ""],
            "bag": ["bags/s1.h5", None, "bags/s3.h5", None, None],
            "report": ["reports/s1.txt", None, None, None, None],
            "note": ["fever", None, "cough and fever", None, None],
            "response": ["yes", "no", "no", None, "yes"],
            "grade": ["G2", "G1", "G3", "G1", None],
            "os_time": [10.0, 20.5, np.nan, 5.0, 12.0],
            "os_event": [1, 0, 1, 0, np.nan],
            "lab_a": [1, 0, 1, None, 0],
            "lab_b": [0, 0, 1, 1, 1],
            "score": [0.1, 0.2, 0.3, 0.4, np.nan],
        }
    )
    table = _write(manifest, root / "manifest.csv")
    long = pd.DataFrame(
        {
            "patient": ["002", "001", "001", "002", "001"],
            "day": [3.0, 5.0, 1.0, 1.0, 2.0],
            "hr": [80.0, 90.0, 70.0, np.nan, 75.0],
            "temp": [37.0, 38.5, 36.6, 36.9, 37.2],
            "unit": ["a", "b", "c", "d", "e"],  # a text column: not a channel
        }
    )
    _write(long, root / "vitals.csv")
    return DataConfig.model_validate(
        dict(
            table=table,
            id_column="patient",
            modalities={
                "clinical": {
                    "kind": "tabular",
                    "columns": ["age", "stage"],
                    "categorical": ["stage"],
                },
                "rna": {"kind": "tabular", "prefix": "rna_"},
                "ct": {"kind": "image", "path_column": "image"},
                "wsi": {"kind": "bag", "path_column": "bag"},
                "report": {"kind": "text", "path_column": "report", "vocab_size": 64},
                "note": {"kind": "text", "text_column": "note"},
                "vitals": {"kind": "sequence", "table": root / "vitals.csv", "time_column": "day"},
            },
            tasks={
                "response": {"type": "binary", "column": "response"},
                "grade": {"type": "multiclass", "column": "grade"},
                "os": {"type": "survival", "time_column": "os_time", "event_column": "os_event"},
                "labels": {"type": "multilabel", "columns": ["lab_a", "lab_b"]},
                "score": {"type": "regression", "column": "score"},
            },
        )
    )


def test_manifest_loads_every_kind_with_known_values(cohort: DataConfig) -> None:
    data = load_data(cohort)
    assert data.ids == ["001", "002", "003", "004", "005"]  # leading zeros kept
    assert list(data.specs) == ["clinical", "rna", "ct", "wsi", "report", "note", "vitals"]

    clinical = data.specs["clinical"]
    assert clinical.shape == (4,)
    assert clinical.feature_names == ("age", "stage=I", "stage=II", "stage=III")
    src = data.sources["clinical"]
    assert isinstance(src, ArraySource)
    np.testing.assert_array_equal(src.values[0], [50.5, 0, 1, 0])
    assert np.isnan(src.values[1, 0])  # NaN age stays (imputed later)
    np.testing.assert_array_equal(src.values[1, 1:], [1, 0, 0])
    assert np.isnan(src.values[2, 1:]).all()  # missing category → NaN in all its dummies
    assert src.present.all()

    rna = data.sources["rna"]
    assert data.specs["rna"].feature_names == ("rna_a", "rna_b")
    assert rna.present.tolist() == [True, True, False, True, True]  # all-NaN row → absent
    np.testing.assert_array_equal(rna.values[3], [4.0, 1.5])

    ct = data.sources["ct"]
    assert isinstance(ct, FileSource)
    assert data.specs["ct"].shape == (1, 4, 5)
    assert ct.present.tolist() == [True, True, False, True, False]
    png = ct.items(np.array([1]))[0]
    np.testing.assert_array_equal(png[0], np.arange(20).reshape(4, 5))
    assert data.batch(np.arange(5)).inputs["ct"].data.shape == (5, 1, 4, 5)

    assert data.specs["wsi"].shape == (2,)
    assert data.sources["wsi"].present.tolist() == [True, False, True, False, False]
    np.testing.assert_array_equal(data.sources["wsi"].items(np.array([0]))[0][2], [4, 5])

    assert data.specs["report"].shape == () and data.specs["report"].vocab_size == 64
    assert data.sources["report"].items(np.array([0]))[0].startswith("Tumour")
    note = data.sources["note"]
    assert isinstance(note, ListSource)
    assert note.values == ["fever", None, "cough and fever", None, None]

    vitals = data.sources["vitals"]
    assert data.specs["vitals"].shape == (2,)
    assert data.specs["vitals"].feature_names == ("hr", "temp")
    values, times = vitals.values[0]
    np.testing.assert_array_equal(times, [1, 2, 5])  # sorted by time
    np.testing.assert_allclose(values, [[70, 36.6], [75, 37.2], [90, 38.5]])
    assert np.isnan(vitals.values[1][0][0, 0]) and vitals.values[1][1].tolist() == [1, 3]
    assert vitals.present.tolist() == [True, True, False, False, False]

    assert data.tasks["response"].classes == ("no", "yes")
    np.testing.assert_array_equal(data.targets["response"][[0, 1, 4]], [1, 0, 1])
    assert np.isnan(data.targets["response"][3])
    assert data.tasks["grade"].classes == ("G1", "G2", "G3")
    np.testing.assert_array_equal(data.targets["grade"][:4], [1, 0, 2, 0])
    os_ = data.targets["os"]
    assert os_.shape == (5, 2)
    np.testing.assert_array_equal(os_[0], [10, 1])
    assert np.isnan(os_[2]).all() and np.isnan(os_[4]).all()  # either unknown → both unknown
    assert data.tasks["labels"].classes == ("lab_a", "lab_b")
    np.testing.assert_array_equal(data.targets["labels"][2], [1, 1])
    assert np.isnan(data.targets["labels"][3, 0])
    assert data.targets["score"][2] == pytest.approx(0.3)
    assert data.targets["score"].dtype == np.float32


def test_parquet_manifest_with_numeric_ids_and_config_classes(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "id": [7, 8, 9],
            "f1": [1.0, 2.0, 3.0],
            "dead": [True, False, None],
            "kind": [2, 0, 1],  # integer codes into the configured classes
        }
    )
    table = _write(frame, tmp_path / "m.parquet")
    data = load_data(
        _config(
            table,
            {"x": {"kind": "tabular", "columns": ["f1"]}},
            {
                "dead": {"type": "binary", "column": "dead"},
                "kind": {"type": "multiclass", "column": "kind", "classes": ["a", "b", "c"]},
            },
        )
    )
    assert data.ids == ["7", "8", "9"]
    assert data.tasks["dead"].classes == ("False", "True")
    np.testing.assert_array_equal(data.targets["dead"][:2], [1, 0])
    assert data.tasks["kind"].classes == ("a", "b", "c")
    np.testing.assert_array_equal(data.targets["kind"], [2, 0, 1])
    np.testing.assert_array_equal(data.sources["x"].values[:, 0], [1, 2, 3])


def test_binary_classes_from_config_fix_order(tmp_path: Path) -> None:
    data = _load_simple(
        tmp_path,
        tasks={"r": {"type": "binary", "column": "r", "classes": ["yes", "no"]}},
        a=[1.0, 2.0],
        r=["no", "yes"],
    )
    np.testing.assert_array_equal(data.targets["r"], [1, 0])


def test_categorical_numbers_sort_numerically(tmp_path: Path) -> None:
    data = _load_simple(
        tmp_path,
        modalities={
            "x": {"kind": "tabular", "columns": ["c"], "categorical": ["c"]},
            "z": {"kind": "tabular", "columns": ["a"]},
        },
        c=[10, 2, 2, np.nan],
        a=[1.0, 2.0, 3.0, 4.0],
    )
    assert data.specs["x"].feature_names == ("c=2", "c=10")
    assert not data.sources["x"].present[3]  # its only feature is missing → absent


def test_tsv_manifest(tmp_path: Path) -> None:
    path = tmp_path / "m.tsv"
    path.write_text("id\ta\ty\ns1\t1.5\t0.1\ns2\t2.5\t0.2\n")
    data = load_data(_config(path, {"x": {"kind": "tabular", "columns": ["a"]}}))
    np.testing.assert_array_equal(data.sources["x"].values[:, 0], [1.5, 2.5])


def test_root_defaults_to_table_folder_and_can_be_set(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    np.save(tmp_path / "elsewhere" / "v.npy", np.array([1.0, np.nan, 3.0]))
    table = _simple(tmp_path, p=["v.npy", None], a=[1.0, 2.0])
    mods = {
        "v": {"kind": "tabular", "path_column": "p"},
        "x": {"kind": "tabular", "columns": ["a"]},
    }
    data = load_data(_config(table, mods, root=tmp_path / "elsewhere"))
    assert isinstance(data.sources["v"], ArraySource)  # .npy vectors are kept in memory
    assert data.specs["v"].shape == (3,)
    np.testing.assert_array_equal(data.sources["v"].values[0], [1, np.nan, 3])
    with pytest.raises(DataError, match=r"sample 's1', column 'p'.*v\.npy"):
        load_data(_config(table, mods))  # root = the table's folder, where v.npy is not


def test_sequence_columns_select_channels(tmp_path: Path) -> None:
    table = _simple(tmp_path, a=[1.0, 2.0])
    _write(pd.DataFrame({"id": ["s2"], "time": [1.0], "hr": [60], "bp": [120]}), tmp_path / "l.csv")
    # the validator allows one source per modality; a channel list needs model_construct today
    mod = ModalityConfig.model_construct(kind="sequence", table=tmp_path / "l.csv", columns=["bp"])
    config = _config(table, {"a": {"kind": "tabular", "columns": ["a"]}})
    config = config.model_copy(update={"modalities": {**config.modalities, "seq": mod}})
    data = load_data(config)
    assert data.specs["seq"].feature_names == ("bp",)
    np.testing.assert_array_equal(data.sources["seq"].values[1][0], [[120]])


@pytest.fixture
def omics_file(tmp_path: Path) -> Path:
    anndata = pytest.importorskip("anndata")
    mudata = pytest.importorskip("mudata")
    import scipy.sparse as sp

    rna = anndata.AnnData(
        X=sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0], [4, 0, 0]], dtype=np.float32)),
        obs=pd.DataFrame(index=["p1", "p2", "p3"]),
        var=pd.DataFrame(index=["TP53", "EGFR", "KRAS"]),
    )
    prot = anndata.AnnData(
        X=np.array([[0.5], [1.5]], dtype=np.float32),
        obs=pd.DataFrame(index=["p3", "p1"]),
        var=pd.DataFrame(index=["p53_protein"]),
    )
    with mudata.set_options(pull_on_update=False):
        mdata = mudata.MuData({"rna": rna, "prot": prot})
        mdata.obs["subtype"] = ["A", "B", "A"]
        mdata.obs["os_time"] = [3.0, 4.0, 5.0]
        mdata.obs["os_event"] = [1, 0, 1]
        path = tmp_path / "cohort.h5mu"
        mdata.write(path)
    return path


def test_mudata_loads_mods_as_tabular(omics_file: Path) -> None:
    config = DataConfig.model_validate(
        dict(
            mudata=omics_file,
            tasks={
                "subtype": {"type": "binary", "column": "subtype"},
                "os": {"type": "survival", "time_column": "os_time", "event_column": "os_event"},
            },
        )
    )
    data = load_data(config)
    assert data.ids == ["p1", "p2", "p3"]
    assert data.specs["rna"].shape == (3,)
    assert data.specs["rna"].feature_names == ("TP53", "EGFR", "KRAS")
    np.testing.assert_array_equal(data.sources["rna"].values[1], [0, 3, 0])  # sparse → dense
    assert data.sources["prot"].present.tolist() == [True, False, True]
    np.testing.assert_array_equal(data.sources["prot"].values[:, 0], [1.5, 0, 0.5])
    np.testing.assert_array_equal(data.targets["subtype"], [0, 1, 0])
    np.testing.assert_array_equal(data.targets["os"][1], [4, 0])


def test_mudata_modalities_select_mods_and_features(omics_file: Path) -> None:
    config = DataConfig.model_validate(
        dict(mudata=omics_file, modalities={"rna": {"kind": "tabular", "columns": ["KRAS"]}})
    )
    data = load_data(config)
    assert list(data.specs) == ["rna"]
    np.testing.assert_array_equal(data.sources["rna"].values[:, 0], [2, 0, 0])
    bad = DataConfig.model_validate(
        dict(mudata=omics_file, modalities={"rnaa": {"kind": "tabular", "prefix": "T"}})
    )
    with pytest.raises(ConfigError, match=r"'rnaa'.*did you mean 'rna'"):
        load_data(bad)


def test_anndata_is_one_modality_named_by_file(tmp_path: Path) -> None:
    anndata = pytest.importorskip("anndata")
    adata = anndata.AnnData(
        X=np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32),
        obs=pd.DataFrame({"age": [30.0, 40.0]}, index=["a", "b"]),
        var=pd.DataFrame(index=["g1", "g2"]),
    )
    path = tmp_path / "expr.h5ad"
    adata.write_h5ad(path)
    config = DataConfig.model_validate(
        dict(mudata=path, tasks={"age": {"type": "regression", "column": "age"}})
    )
    data = load_data(config)
    assert list(data.specs) == ["expr"]
    np.testing.assert_array_equal(data.sources["expr"].values, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(data.targets["age"], [30, 40])


# ------------------------------------------------------------------------------ files


def test_missing_file_names_sample_and_column(tmp_path: Path) -> None:
    table = _simple(tmp_path, a=[1.0, 2.0], p=["x.npy", None])
    with pytest.raises(DataError, match=r"sample 's1', column 'p'.*'x\.npy' does not exist"):
        load_data(_config(table, {"im": {"kind": "image", "path_column": "p"}}))


def test_corrupt_file_names_modality_sample_and_file(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    table = _simple(tmp_path, p=["bad.png", None], a=[1.0, 2.0])
    mods = {"im": {"kind": "image", "path_column": "p"}, "x": {"kind": "tabular", "columns": ["a"]}}
    with pytest.raises(DataError, match=r"modality 'im', sample 's1': .*bad\.png.*not a readable"):
        load_data(_config(table, mods))


def test_path_escaping_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    np.save(tmp_path / "secret.npy", np.zeros((1, 2, 2)))
    table = _write(pd.DataFrame({"id": ["s1"], "p": ["../secret.npy"], "y": [1.0]}), root / "m.csv")
    with pytest.raises(DataError, match=r"sample 's1', column 'p'.*outside the data root"):
        load_data(_config(table, {"im": {"kind": "image", "path_column": "p"}}))


def test_image_shape_mismatch_names_sample_and_majority(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        np.save(tmp_path / f"{name}.npy", np.zeros((1, 4, 4), np.float32))
    _png(tmp_path / "d.png", np.zeros((4, 4, 3), np.uint8))  # RGB: 3 channels, not 1
    table = _simple(tmp_path, p=["a.npy", "b.npy", "d.png", "c.npy"])
    with pytest.raises(
        DataError, match=r"'im': sample 's3' \(.*d\.png\).*\(3, 4, 4\).*3 of 4 have \(1, 4, 4\)"
    ):
        load_data(_config(table, {"im": {"kind": "image", "path_column": "p"}}))


def test_bag_width_mismatch(tmp_path: Path) -> None:
    _bag(tmp_path / "a.h5", np.zeros((3, 8), np.float32))
    _bag(tmp_path / "b.h5", np.zeros((2, 8), np.float32))
    _bag(tmp_path / "c.h5", np.zeros((5, 6), np.float32))
    table = _simple(tmp_path, p=["a.h5", "c.h5", "b.h5"])
    with pytest.raises(DataError, match=r"'wsi': sample 's2'.*instance width \(6,\).*\(8,\)"):
        load_data(_config(table, {"wsi": {"kind": "bag", "path_column": "p"}}))


def test_wrong_kind_for_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "r.txt").write_text("hello")
    table = _simple(tmp_path, p=["r.txt"])
    with pytest.raises(DataError, match=r"sample 's1'.*r\.txt.*cannot hold image"):
        load_data(_config(table, {"im": {"kind": "image", "path_column": "p"}}))


# ------------------------------------------------------------------------------ cells


def test_non_numeric_value_is_shown(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"m\.csv: column 'a' \(modality 'x'\).*'abc'.*'s2'"):
        _load_simple(tmp_path, a=["1.5", "abc", "2"])


@pytest.mark.parametrize("value", ["inf", "-inf"])
def test_infinite_feature_names_column_and_sample(tmp_path: Path, value: str) -> None:
    with pytest.raises(DataError, match=r"column 'a' \(modality 'x'\) is [+-]inf for sample 's2'"):
        _load_simple(tmp_path, a=["1.5", value])


def test_all_nan_row_is_absent_but_partial_nan_stays(tmp_path: Path) -> None:
    data = _load_simple(
        tmp_path,
        modalities={
            "x": {"kind": "tabular", "columns": ["a", "b"]},
            "z": {"kind": "tabular", "columns": ["c"]},
        },
        a=[1.0, np.nan, np.nan],
        b=[np.nan, 2.0, np.nan],
        c=[1.0, 1.0, 1.0],
    )
    assert data.sources["x"].present.tolist() == [True, True, False]
    assert np.isnan(data.sources["x"].values[0, 1])


def test_duplicate_ids(tmp_path: Path) -> None:
    table = _write(
        pd.DataFrame({"id": ["a", "b", "a"], "x": [1, 2, 3], "y": [1, 2, 3]}), tmp_path / "m.csv"
    )
    with pytest.raises(DataError, match=r"duplicate sample id.*'a' ×2"):
        load_data(_config(table, {"x": {"kind": "tabular", "columns": ["x"]}}))


def test_missing_id(tmp_path: Path) -> None:
    table = _write(pd.DataFrame({"id": ["a", None], "x": [1, 2], "y": [1, 2]}), tmp_path / "m.csv")
    with pytest.raises(DataError, match=r"1 row\(s\) have no id in column 'id' \(data rows 2\)"):
        load_data(_config(table, {"x": {"kind": "tabular", "columns": ["x"]}}))


def test_modality_absent_everywhere(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"modality 'x' is absent in every sample"):
        _load_simple(
            tmp_path,
            modalities={
                "x": {"kind": "tabular", "columns": ["a"]},
                "z": {"kind": "tabular", "columns": ["c"]},
            },
            a=[np.nan, np.nan],
            c=[1.0, 2.0],
        )


def test_sample_without_any_modality(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"1 sample\(s\) have no modality at all: 's2'"):
        _load_simple(tmp_path, a=[1.0, np.nan, 3.0])


# ------------------------------------------------------------------------------ targets


def test_unknown_class_names_sample_value_and_classes(tmp_path: Path) -> None:
    tasks = {"g": {"type": "multiclass", "column": "g", "classes": ["G1", "G2"]}}
    with pytest.raises(DataError, match=r"'g': sample 's2' has class 'G9'.*\['G1', 'G2'\]"):
        _load_simple(tmp_path, tasks=tasks, a=[1.0, 2.0], g=["G1", "G9"])


def test_binary_with_three_classes(tmp_path: Path) -> None:
    tasks = {"r": {"type": "binary", "column": "r"}}
    with pytest.raises(DataError, match=r"column 'r' has 3 classes.*use type multiclass"):
        _load_simple(tmp_path, tasks=tasks, a=[1.0, 2.0, 3.0], r=["a", "b", "c"])


def test_single_class_needs_classes_in_config(tmp_path: Path) -> None:
    tasks = {"r": {"type": "multiclass", "column": "r"}}
    with pytest.raises(DataError, match=r"column 'r' has 1 class\(es\).*set classes"):
        _load_simple(tmp_path, tasks=tasks, a=[1.0, 2.0], r=["a", "a"])


@pytest.mark.parametrize("time", [0.0, -3.0])
def test_survival_time_not_positive(tmp_path: Path, time: float) -> None:
    tasks = {"os": {"type": "survival", "time_column": "t", "event_column": "e"}}
    with pytest.raises(DataError, match=r"task 'os'.*time ≤ 0 in column 't': 's2="):
        _load_simple(tmp_path, tasks=tasks, a=[1.0, 2.0], t=[5.0, time], e=[1, 0])


def test_survival_event_not_binary(tmp_path: Path) -> None:
    tasks = {"os": {"type": "survival", "time_column": "t", "event_column": "e"}}
    with pytest.raises(DataError, match=r"sample 's1' has event '2' in column 'e'"):
        _load_simple(tmp_path, tasks=tasks, a=[1.0, 2.0], t=[5.0, 6.0], e=[2, 0])


def test_multilabel_value_not_binary(tmp_path: Path) -> None:
    tasks = {"l": {"type": "multilabel", "columns": ["l1", "l2"]}}
    with pytest.raises(DataError, match=r"task 'l': sample 's1' has label 'yes' in column 'l2'"):
        _load_simple(tmp_path, tasks=tasks, a=[1.0, 2.0], l1=[0, 1], l2=["yes", "0"])


def test_regression_target_non_numeric(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"column 'y' \(task 'y'\).*'n/a!'.*'s2'"):
        _load_simple(tmp_path, a=[1.0, 2.0], y=["1", "n/a!"])


# ------------------------------------------------------------------------------ sequences


def _seq(tmp_path: Path, long: pd.DataFrame) -> DataConfig:
    table = _simple(tmp_path, a=[1.0, 2.0])
    _write(long, tmp_path / "long.csv")
    mods = {
        "x": {"kind": "tabular", "columns": ["a"]},
        "seq": {"kind": "sequence", "table": tmp_path / "long.csv"},
    }
    return _config(table, mods)


def test_sequence_rows_of_other_patients_are_skipped_with_a_warning(tmp_path: Path) -> None:
    """A lab export holds more patients than one study (issue #15, finding 4)."""
    long = pd.DataFrame({"id": ["s1", "x9", "x8", "x9"], "time": [1, 2, 3, 4], "hr": [1, 2, 3, 4]})
    with pytest.warns(DataWarning, match=r"long\.csv: skipped the rows of 2 patient.*'x8', 'x9'"):
        data = load_data(_seq(tmp_path, long))
    values, times = data.sources["seq"].values[data.ids.index("s1")]
    assert values.tolist() == [[1.0]] and times.tolist() == [1.0]


def test_sequence_non_numeric_channel(tmp_path: Path) -> None:
    long = pd.DataFrame({"id": ["s1", "s1"], "time": [1, 2], "hr": ["60", "high"]})
    with pytest.raises(DataError, match=r"long\.csv: column 'hr' \(modality 'seq'\).*'high'.*'s1'"):
        load_data(_seq(tmp_path, long))


def test_sequence_missing_time_column(tmp_path: Path) -> None:
    long = pd.DataFrame({"id": ["s1"], "tme": [1], "hr": [60]})
    with pytest.raises(ConfigError, match=r"modality 'seq': column 'time'.*did you mean 'tme'"):
        load_data(_seq(tmp_path, long))


# ------------------------------------------------------------------------------ config vs data


def test_unknown_column_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"modality 'x': column 'agee'.*did you mean 'age'"):
        _load_simple(tmp_path, modalities={"x": {"kind": "tabular", "columns": ["agee"]}}, age=[1])
    with pytest.raises(ConfigError, match=r"task 't': column 'scor'.*did you mean 'score'"):
        _load_simple(
            tmp_path, tasks={"t": {"type": "regression", "column": "scor"}}, a=[1], score=[1]
        )


def test_unknown_id_column(tmp_path: Path) -> None:
    table = _simple(tmp_path, a=[1.0])
    config = _config(table, {"x": {"kind": "tabular", "columns": ["a"]}}, id_column="ids")
    with pytest.raises(ConfigError, match=r"m\.csv: id column 'ids' not found \(did you mean 'id'"):
        load_data(config)


def test_prefix_matching_nothing(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"modality 'x': no column of m\.csv starts with prefix 'zz_'"
    ):
        _load_simple(tmp_path, modalities={"x": {"kind": "tabular", "prefix": "zz_"}}, a=[1.0])


def test_kind_that_cannot_come_from_columns(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"modality 'x': kind 'image' cannot come from columns"):
        _load_simple(tmp_path, modalities={"x": {"kind": "image", "columns": ["a"]}}, a=[1.0])


def test_categorical_on_a_non_tabular_modality_is_refused(tmp_path: Path) -> None:
    """A sequence's categorical columns were once ignored without a word (issue #16)."""
    long = pd.DataFrame({"id": ["s1"], "time": [1], "hr": [60]})
    config = _seq(tmp_path, long)
    config.modalities["seq"].categorical = ["hr"]
    with pytest.raises(ConfigError, match=r"modality 'seq': categorical applies to tabular"):
        load_data(config)
    mods = {"x": {"kind": "text", "text_column": "a", "categorical": ["a"]}}
    with pytest.raises(ConfigError, match=r"modality 'x': categorical applies to tabular"):
        _load_simple(tmp_path, modalities=mods, a=["report"])


def test_unknown_table_format_and_missing_or_corrupt_table(tmp_path: Path) -> None:
    mods = {"x": {"kind": "tabular", "columns": ["a"]}}
    xlsx = tmp_path / "m.xlsx"
    xlsx.write_text("x")
    with pytest.raises(ConfigError, match=r"m\.xlsx: unknown table format '\.xlsx'"):
        load_data(_config(xlsx, mods))
    with pytest.raises(DataError, match=r"manifest table not found: .*nope\.csv"):
        load_data(_config(tmp_path / "nope.csv", mods))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"bad\.parquet: cannot read the manifest table"):
        load_data(_config(bad, mods))


def test_unknown_config_key_did_you_mean() -> None:
    raw = {"data": {"table": "m.csv", "modalities": {"x": {"kind": "tabular", "colums": ["a"]}}}}
    with pytest.raises(ConfigError, match=r"colums: unknown key \(did you mean 'columns'"):
        parse_config(raw)


def test_bundled_dataset_is_not_for_load_data() -> None:
    with pytest.raises(ConfigError, match=r"'tcga-acc' is a bundled cohort"):
        load_data(DataConfig(dataset="tcga-acc"))


def test_mod_samples_missing_from_obs() -> None:
    anndata = pytest.importorskip("anndata")
    adata = anndata.AnnData(X=np.ones((2, 1), np.float32), obs=pd.DataFrame(index=["a", "zz"]))
    with pytest.raises(
        DataError, match=r"1 sample\(s\) of mod 'rna' are not in the MuData obs: 'zz'"
    ):
        _omics_modality("rna", adata, None, ["a", "b"], "c.h5mu")


# ------------------------------------------------------------------------------ check_dataset


def _dataset(values: np.ndarray, survival: np.ndarray) -> MultimodalDataset:
    spec = ModalitySpec("omics", "tabular", (2,), feature_names=("g1", "g2"))
    return MultimodalDataset(
        ["a", "b"],
        {"omics": spec},
        {"omics": ArraySource(values, np.ones(2, bool))},
        {"os": TaskSpec("os", "survival")},
        {"os": survival},
    )


def test_check_dataset_inf_and_survival_targets() -> None:
    good = np.array([[10.0, 1.0], [5.0, 0.0]])
    check_dataset(_dataset(np.zeros((2, 2)), good), "cohort")
    with pytest.raises(
        DataError, match=r"cohort: modality 'omics', sample 'b', feature 'g2' is ±inf"
    ):
        check_dataset(_dataset(np.array([[0, 0], [0, -np.inf]]), good), "cohort")
    with pytest.raises(DataError, match=r"task 'os': 1 sample\(s\) have survival time ≤ 0: 'a'"):
        check_dataset(_dataset(np.zeros((2, 2)), np.array([[0.0, 1.0], [5.0, 0.0]])), "cohort")
    with pytest.raises(DataError, match=r"task 'os': sample 'b' has event 3"):
        check_dataset(_dataset(np.zeros((2, 2)), np.array([[1.0, 1.0], [5.0, 3.0]])), "cohort")


def test_read_table_keeps_id_text(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,v\n007,1\n010,2\n")
    assert read_table(path, id_column="id")["id"].tolist() == ["007", "010"]


# ------------------------------------------------------------------------ issue #15, finding 9


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_duplicate_column_names_are_refused_naming_them(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"m{suffix}"
    if suffix == ".csv":  # pandas would silently rename the second 'a' to 'a.1'
        path.write_text("id,a,a,y\ns1,1,2,0.5\ns2,3,4,0.5\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = [pa.array(["s1", "s2"]), pa.array([1, 3]), pa.array([2, 4]), pa.array([0.5] * 2)]
        pq.write_table(pa.Table.from_arrays(columns, names=["id", "a", "a", "y"]), path)
    with pytest.raises(DataError, match=rf"m{suffix}: duplicate column name\(s\) 'a'"):
        load_data(_config(path, {"x": {"kind": "tabular", "columns": ["a"]}}))
    frame = pd.DataFrame([[1, 2, 3]], columns=["id", "b", "b"])
    with pytest.raises(DataError, match=r"here: duplicate column name\(s\) 'b'"):
        load_frame(frame, {}, {}, id_column="id", root=tmp_path, where="here")


def test_a_column_named_like_a_one_hot_level_is_refused(tmp_path: Path) -> None:
    """'stage=I' next to categorical 'stage' would be ambiguous in the saved input contract."""
    table = _simple(tmp_path, **{"stage": ["I", "II"], "stage=I": [1.0, 0.0]})
    mods = {"x": {"kind": "tabular", "columns": ["stage=I"], "categorical": ["stage"]}}
    with pytest.raises(ConfigError, match=r"column 'stage=I' looks like a one-hot column of"):
        load_data(_config(table, mods))
