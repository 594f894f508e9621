"""Performance in subgroups: levels read from one-hot groups and numeric bands, the metric per
level computed independently, intervals that cover it, small levels flagged, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polyfuse.data.dataset import ArraySource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError
from polyfuse.evaluation.subgroups import (
    harrell_c,
    level_metrics,
    subgroup_frame,
    subgroup_labels,
    subgroup_metrics,
)
from polyfuse.tasks.metrics import harrell_c_index


def _clinical(n: int = 12) -> MultimodalDataset:
    age = np.array([30, 40, 50, 60, 70, 80] * (n // 6), dtype=float)
    sex = np.zeros((n, 2))
    sex[np.arange(n) % 3 == 0, 0] = 1  # female
    sex[np.arange(n) % 3 == 1, 1] = 1  # male; every third: neither (unknown)
    present = np.ones(n, bool)
    present[-1] = False
    names = ("age", "sex=female", "sex=male")
    return MultimodalDataset(
        [f"p{i}" for i in range(n)],
        {"clinical": ModalitySpec("clinical", "tabular", (3,), feature_names=names)},
        {"clinical": ArraySource(np.column_stack([age, sex]), present)},
        {"y": TaskSpec("y", "binary")},
        {"y": (np.arange(n) % 2).astype(float)},
        name="toy",
    )


def test_levels_of_one_hot_groups_and_numeric_bands():
    data = _clinical()
    sex = subgroup_labels(data, "clinical:sex")
    assert list(sex[:4]) == ["female", "male", "missing", "female"]
    assert sex[-1] == "missing"  # the patient without the modality
    assert list(sex.categories) == ["female", "male", "missing"]
    age = subgroup_labels(data, "clinical:age@50,70")
    assert list(age[:6]) == ["< 50", "< 50", "50 to < 70", "50 to < 70", "≥ 70", "≥ 70"]
    assert list(age.categories) == ["< 50", "50 to < 70", "≥ 70", "missing"]
    tertiles = subgroup_labels(data, "clinical:0")  # by position; cut at the tertiles
    assert len(set(tertiles[:-1])) == 3
    frame = subgroup_frame(data, ["clinical:sex", "clinical:age@50"])
    assert len(frame) == 2 * len(data) and set(frame.columns) >= {"id", "level", "order"}


def test_subgroup_errors_name_what_is_wrong():
    data = _clinical()
    with pytest.raises(ConfigError, match="did you mean 'clinical'"):
        subgroup_labels(data, "clinicl:sex")
    with pytest.raises(ConfigError, match="no column 'gender'"):
        subgroup_labels(data, "clinical:gender")
    with pytest.raises(ConfigError, match="cut points are numbers"):
        subgroup_labels(data, "clinical:age@fifty")
    with pytest.raises(ConfigError, match="modality:column"):
        subgroup_labels(data, "age")


def test_harrell_c_equals_the_metric_of_the_leaderboard_with_ties():
    rng = np.random.default_rng(3)
    time = np.round(rng.exponential(5, 150))
    event = (rng.uniform(size=150) < 0.6).astype(float)
    risk = np.round(rng.normal(size=150) - 0.1 * time, 1)
    assert harrell_c(risk, time, event) == pytest.approx(harrell_c_index(risk, time, event))


def test_each_levels_metric_is_that_of_its_patients_alone():
    """Two levels, one where the risk ranks the events perfectly and one where it is noise."""
    rng = np.random.default_rng(0)
    n = 120
    time = rng.exponential(10, n) + 1
    event = (rng.uniform(size=n) < 0.7).astype(float)
    good = np.arange(n) < 60
    score = np.where(good, -time, rng.normal(size=n))
    pred = pd.DataFrame(
        dict(
            model="m",
            id=[f"p{i}" for i in range(n)],
            score=score,
            time=time,
            event=event,
            label=np.nan,
        )
    )
    groups = pd.DataFrame(
        dict(
            id=pred["id"],
            subgroup="clinical:site",
            level=np.where(good, "a", "b"),
            order=(~good).astype(int),
        )
    )
    table = subgroup_metrics(pred, groups, "survival", n_boot=200).set_index("level")
    assert table.loc["a", "value"] == pytest.approx(1.0)
    b = ~good
    assert table.loc["b", "value"] == pytest.approx(harrell_c_index(score[b], time[b], event[b]))
    assert (table["ci_low"] <= table["value"]).all() and (table["value"] <= table["ci_high"]).all()
    assert table.loc["b", "ci_high"] - table.loc["b", "ci_low"] > 0.1
    assert list(table.index) == ["a", "b"] and not table["small"].any()


def test_small_levels_are_flagged_and_the_bootstrap_is_seeded():
    rows = pd.DataFrame(
        dict(score=[0.9, 0.2, 0.8, 0.1] * 4, label=[1, 0, 1, 0] * 4, time=np.nan, event=np.nan)
    )
    out = level_metrics(rows, "binary", seed=1, n_boot=100)
    assert out["n"] == 16 and out["events"] == 8 and out["small"]
    assert out["value"] == 1.0
    assert out == level_metrics(rows, "binary", seed=1, n_boot=100)


def test_the_command_refuses_a_subgroup_it_cannot_read_before_training(tmp_path):
    import yaml
    from helpers import clean_error, run, write_cohort

    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({"name": "sg", "data": write_cohort(tmp_path)}))
    args = ["benchmark", "--config", config, "-m", "early", "--folds", "2", "--repeats", "1"]
    result = run(*args, "--workers", "1", "--subgroup", "a:f0@0", "--subgroup", "b:bogus")
    clean_error(result, "subgroup 'b:bogus'", "no column 'bogus'")
    assert not (tmp_path / "runs").exists()
