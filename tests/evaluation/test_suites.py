"""Which cohorts a suite benchmarks: a cohort left out is said, never silently dropped."""

import pytest

import polyfuse.datasets as datasets_module
from polyfuse.errors import FallbackWarning, MissingDependencyError
from polyfuse.evaluation.suites import suite_datasets


def test_full_suite_warns_for_each_cohort_whose_extra_is_missing(monkeypatch):
    class Missing:
        extra = "omics"

        def load(self):
            raise MissingDependencyError("the cohort 'gse-x' needs pip install 'polyfuse[omics]'")

    acc = datasets_module.DATASETS["tcga-acc"]
    monkeypatch.setattr(datasets_module, "DATASETS", {"tcga-acc": acc, "gse-x": Missing()})
    with pytest.warns(FallbackWarning, match=r"skips cohort 'gse-x'.*polyfuse\[omics\]"):
        chosen, training, preprocess = suite_datasets("full", None, None)
    assert [d.name for d in chosen] == ["tcga-acc"]
    assert training is None and preprocess is None
