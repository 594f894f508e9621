import numpy as np
import pytest

import polyfuse as pf
from polyfuse.config import TrainingConfig
from polyfuse.datasets.tcga_acc_files import read_tcga_acc_tables
from polyfuse.errors import ConfigError


@pytest.fixture(scope="module")
def acc():
    return pf.datasets.load("tcga-acc")


def test_tcga_acc_modalities_presence_and_target(acc):
    widths = {m: s.shape[0] for m, s in acc.specs.items()}
    assert widths == {
        "clinical": 19,
        "rna": 198,
        "cnv": 198,
        "mirna": 471,
        "mutation": 97,
        "rppa": 33,
    }
    present = acc.presence.sum().to_dict()
    assert present == {
        "clinical": 92,
        "rna": 79,
        "cnv": 90,
        "mirna": 80,
        "mutation": 90,
        "rppa": 46,
    }
    y = acc.targets["os"]
    usable = ~np.isnan(y).any(1)
    assert usable.sum() == 91 and y[usable, 1].sum() == 33 and (y[usable, 0] > 0).all()


def test_tcga_acc_has_no_leakage_columns_and_log_counts(acc):
    names = " ".join(acc.specs["clinical"].feature_names)
    for leak in ("C1A", "mRNA_K4", "COC", "OncoSign", "purity", "ploidy", "cluster"):
        assert leak not in names
    raw, _ = read_tcga_acc_tables()
    i = acc.ids.index(raw["rna"].index[0])
    np.testing.assert_allclose(
        acc.sources["rna"].values[i], np.log2(raw["rna"].iloc[0].to_numpy() + 1), rtol=1e-5
    )


def test_unknown_dataset_suggests_a_name():
    with pytest.raises(ConfigError, match="did you mean 'tcga-acc'"):
        pf.datasets.load("tcga_acc")


def test_gse7390_from_scikit_survival():
    pytest.importorskip("sksurv")
    data = pf.datasets.load("gse7390")
    assert len(data) == 198 and data.specs["genes"].shape == (76,)
    assert data.specs["clinical"].shape == (8,) and data.targets["dmfs"][:, 1].sum() == 51


def test_early_fusion_learns_on_real_patients(acc):
    training = TrainingConfig(epochs=30, progress=False)
    result = pf.cross_validate("early", acc, folds=3, training=training, progress=False, dim=16)
    assert result.summary().loc[("os", "c_index"), "mean"] > 0.65


def test_tcga_acc_multitask_adds_subtype_targets_not_inputs(acc):
    multi = pf.datasets.load("tcga-acc-multitask")
    assert multi.specs == acc.specs  # the subtype calls are never inputs
    assert multi.tasks["c1a_c1b"].type == "binary"
    assert multi.tasks["oncosign"].classes[:2] == ("CN1", "CN2")
    y = multi.targets["protein_cluster"]
    assert np.isnan(y).sum() == 47 and set(np.unique(y[~np.isnan(y)])) == {0.0, 1.0, 2.0}
    np.testing.assert_array_equal(multi.targets["os"], acc.targets["os"])
