"""`benchmark(tune=...)`: every model tuned inside each outer fold with the same budget."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import FAST, FAST_SPACE

from polyfuse.config import TuneConfig
from polyfuse.errors import ConfigError
from polyfuse.evaluation.benchmark import benchmark


def test_benchmark_tunes_every_model_in_every_outer_fold(cohort, tmp_path):
    tune = TuneConfig(trials=2, inner_folds=2, space=FAST_SPACE | {"dim": [8, 16]})
    kw = dict(models=["unimodal"], folds=2, repeats=1, training=FAST, progress=False)
    result = benchmark([cohort], out=tmp_path / "b", classical=False, tune=tune, **kw)
    tuning = result.tuning
    # unimodal[a], unimodal[b]: each searched with 2 trials in each of the 2 folds, its
    # modality kept fixed (the entry's hyper-parameters are the base of every trial)
    assert len(tuning) == 2 * 2 and (tuning["trials"] == 2).all()
    assert set(tuning["model"]) == {"unimodal[a]", "unimodal[b]"}
    for params in tuning["params"].map(json.loads):
        assert params["dim"] in (8, 16) and params["epochs"] == 2
    assert (tmp_path / "b" / "tuning.csv").is_file()
    parts = tmp_path / "b" / "parts" / "tiny"
    assert (parts / "unimodal[a]@tune2" / "r0f1.study.db").is_file()
    c = result.results.query("condition == 'all' and metric == 'c_index'")
    assert len(c) == 2 * 2
    # unimodal[a] never reads b, tuned or not
    ua = result.results.query("model == 'unimodal[a]' and metric == 'c_index'")
    assert list(ua[ua["condition"] == "all"]["value"]) == list(
        ua[ua["condition"] == "drop:b"]["value"]
    )

    # resumed with the same budget: nothing runs again, the same results come back
    again = benchmark([cohort], out=tmp_path / "b", classical=False, tune=tune, resume=True, **kw)
    pd.testing.assert_frame_equal(again.tuning, result.tuning)


def test_space_entries_no_benchmarked_model_takes_fail_early(cohort, tmp_path):
    tune = TuneConfig(trials=2, space={"depht": {"low": 1, "high": 2}})
    with pytest.raises(ConfigError, match=r"tune.space names \['depht'\]"):
        benchmark([cohort], models=["early"], out=tmp_path / "b", tune=tune, progress=False)
