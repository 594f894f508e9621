"""Fuzzed configurations: dictionaries fed to `parse_config`, bytes fed to `load_config`, and
whole experiment files taken through to a dataset and its splits.

Property: a config either validates into settings the engine can use (finite numbers, usable
seeds) or raises a `ConfigError` whose message names the key at fault.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from fuzzlib import (
    ENCODINGS,
    assert_names,
    assert_valid,
    budget,
    column_names,
    workdir,
    write_table,
)
from hypothesis import given
from hypothesis import strategies as st

from polyfuse.config import ExperimentConfig, load_config, parse_config
from polyfuse.data.splits import holdout, kfold, strata
from polyfuse.datasets import from_config
from polyfuse.errors import ConfigError, PolyfuseError

VALID: dict[str, Any] = {
    "name": "fuzz",
    "seed": 0,
    "data": {
        "table": "m.csv",
        "id_column": "id",
        "modalities": {
            "x": {"kind": "tabular", "columns": ["a", "b"], "vocab_size": 64},
            "n": {"kind": "text", "text_column": "note"},
        },
        "tasks": {
            "y": {"type": "regression", "column": "y", "weight": 1.0},
            "c": {"type": "binary", "column": "c", "classes": ["0", "1"]},
            "os": {"type": "survival", "time_column": "t", "event_column": "e", "n_bins": 3},
        },
    },
    "preprocess": {"impute": "mean", "scale": True, "missing_indicator": False},
    "model": {"name": "early", "params": {"dim": 8}},
    "training": {
        "epochs": 2,
        "batch_size": 4,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "l1": 0.0,
        "val_fraction": 0.2,
        "patience": 3,
        "alpha": 0.4,
        "focal_gamma": 0.0,
        "checkpoint_every": 5,
        "balancing": "static",
        "progress": False,
    },
    "cv": {"folds": 2, "repeats": 1},
    "tune": {"trials": 2, "inner_folds": 2, "space": {"lr": {"low": 1e-4, "high": 1e-2}}},
    "output": "runs",
}
"""A valid experiment using every section; mutations start from here."""

SECTIONS = [
    (),
    ("data",),
    ("data", "modalities", "x"),
    ("data", "tasks", "y"),
    ("data", "tasks", "os"),
    ("preprocess",),
    ("model",),
    ("training",),
    ("cv",),
    ("tune",),
]
"""Paths of pydantic sections (unknown keys are refused there)."""

NUMBERS = [
    ("seed",),
    ("data", "modalities", "x", "vocab_size"),
    ("data", "tasks", "y", "weight"),
    ("data", "tasks", "os", "n_bins"),
    *(("training", k) for k in ("epochs", "batch_size", "lr", "weight_decay", "l1")),
    *(("training", k) for k in ("val_fraction", "patience", "alpha", "focal_gamma")),
    ("training", "checkpoint_every"),
    ("cv", "folds"),
    ("cv", "repeats"),
    ("tune", "trials"),
    ("tune", "timeout"),
    ("tune", "inner_folds"),
]
"""Paths of numeric settings."""

ODD_NUMBERS = [
    -1,
    0,
    1,
    -0.5,
    0.5,
    1.5,
    2**31,
    2**63,
    -(2**63),
    10**30,
    1e300,
    -1e300,
    float("nan"),
    float("inf"),
    float("-inf"),
    "3",
    "abc",
    "",
    True,
    None,
    [],
    {},
]

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=8),
        st.sampled_from(ODD_NUMBERS),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=3),
    ),
    max_leaves=8,
)
"""Anything YAML can hold."""


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested dict."""
    if not isinstance(tree, dict):
        return []
    out = []
    for k, v in tree.items():
        out.append((*prefix, k))
        out += _paths(v, (*prefix, k))
    return out


def _at(tree: dict, path: tuple) -> Any:
    for k in path:
        tree = tree[k]
    return tree


def _usable(config: ExperimentConfig) -> None:
    """What an accepted config guarantees to the engine: finite numbers and usable seeds."""
    dumped = config.model_dump(mode="python")
    for path in _paths(dumped):
        if path[0] in ("model",) or path[:2] in (
            ("tune", "space"),
            ("training", "balancing_options"),
        ):
            continue  # free-form: checked by the model and the balancer
        value = _at(dumped, path)
        if isinstance(value, float):
            assert math.isfinite(value), f"{'.'.join(map(str, path))} = {value} accepted"
    # the seeds the engine derives: per repeat (kfold), per fold (training), the holdout
    rng = np.random.default_rng(0)
    n = 8
    data = _tiny_dataset(rng, n)
    splits = kfold(data, min(config.cv.folds, 4), min(config.cv.repeats, 2), config.seed)
    holdout(splits[0].train, strata(data), config.training.val_fraction, config.seed + 1)


def _tiny_dataset(rng, n):
    from polyfuse.data.dataset import ArraySource, MultimodalDataset
    from polyfuse.data.specs import ModalitySpec, TaskSpec

    x = rng.normal(size=(n, 2)).astype(np.float32)
    y = np.arange(n, dtype=np.float32) % 2
    return MultimodalDataset(
        [f"s{i}" for i in range(n)],
        {"x": ModalitySpec("x", "tabular", (2,))},
        {"x": ArraySource(x, np.ones(n, bool))},
        {"c": TaskSpec("c", "binary", ("0", "1"))},
        {"c": y},
    )


def _check(raw: Any, culprits: list[tuple]) -> ExperimentConfig | None:
    """Parse `raw`: a ConfigError must locate an error line at one of the `culprits` key paths
    (or inside one, or at a parent section); an accepted config must be usable."""
    try:
        config = parse_config(raw, "fuzz.yaml")
    except PolyfuseError as exc:
        assert isinstance(exc, ConfigError), exc
        assert str(exc).startswith("invalid configuration in fuzz.yaml"), exc
        assert_names(exc, keys=culprits)
        return None
    _usable(config)
    return config


# ------------------------------------------------------------------------------ properties


def test_the_skeleton_is_valid() -> None:
    config = _check(copy.deepcopy(VALID), [])
    assert config is not None and config.tune.trials == 2


@budget(200)
@given(
    raw=st.dictionaries(
        st.one_of(st.sampled_from([*VALID, "dat", "trainig", "model_"]), st.text(max_size=6)),
        json_values,
        max_size=5,
    )
)
def test_random_top_level_trees(raw: dict[Any, Any]) -> None:
    _check(raw, [(key,) for key in raw] + [("data",)])  # data is required


@budget(300)
@given(data=st.data(), op=st.sampled_from(["replace", "delete", "unknown", "wrap"]))
def test_mutated_config_names_the_key(data, op: str) -> None:
    raw = copy.deepcopy(VALID)
    if op == "unknown":
        section = data.draw(st.sampled_from(SECTIONS))
        fields = _at(raw, section)
        key = data.draw(column_names.filter(lambda k: k not in fields and k not in VALID))
        _at(raw, section)[key] = data.draw(json_values)
        where = ".".join((*section, key))
        try:
            parse_config(raw, "fuzz.yaml")
        except ConfigError as exc:
            assert f"{where}: unknown key" in str(exc), exc
        else:
            raise AssertionError(f"unknown key {where} accepted")
        return
    path = data.draw(st.sampled_from(_paths(raw)))
    parent = _at(raw, path[:-1])
    if op == "delete":
        del parent[path[-1]]
    elif op == "wrap":
        parent[path[-1]] = [parent[path[-1]]]
    else:
        parent[path[-1]] = data.draw(json_values)
    _check(raw, [path])


@pytest.mark.parametrize("value", ODD_NUMBERS, ids=repr)
@pytest.mark.parametrize("path", NUMBERS, ids=".".join)
def test_every_odd_number_in_every_numeric_setting(path: tuple, value: Any) -> None:
    """The whole grid (cheap), so no corner depends on what the generator happens to pick."""
    test_out_of_range_numbers_name_the_key.hypothesis.inner_test(path, value)


@budget(150)
@given(path=st.sampled_from(NUMBERS), value=st.floats() | st.integers())
def test_out_of_range_numbers_name_the_key(path: tuple, value: Any) -> None:
    raw = copy.deepcopy(VALID)
    _at(raw, path[:-1])[path[-1]] = value
    config = _check(raw, [path])
    if config is not None:  # accepted: the value made it through as a usable number
        assert _at(config.model_dump(), path) is not None or path[-1] == "timeout"


@budget(120)
@given(
    content=st.one_of(
        st.binary(max_size=80),
        st.text(max_size=80),
        json_values.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
        st.builds(
            lambda tweak, note: yaml.safe_dump(
                {**VALID, "name": note, "data": {"dataset": "tcga-acc"}, **tweak},
                allow_unicode=True,
            ),
            st.dictionaries(st.sampled_from(["seed", "cv", "output"]), json_values, max_size=1),
            st.text(max_size=6),
        ),
    ),
    encoding=st.sampled_from(ENCODINGS),
    crlf=st.booleans(),
)
def test_config_files_of_any_bytes_name_the_file(content, encoding: str, crlf: bool) -> None:
    if isinstance(content, str):
        content = content.replace("\n", "\r\n") if crlf else content
        content = content.encode(encoding, errors="replace")
    with workdir() as folder:
        path = folder / "exp.yaml"
        path.write_bytes(content)
        try:
            config = load_config(path)
        except PolyfuseError as exc:
            assert isinstance(exc, ConfigError), exc
            assert str(path) in str(exc), exc
            return
    _usable(config)
    assert config.output.is_absolute()


# ------------------------------------------------------------------------------ whole experiments


@st.composite
def experiments(draw) -> dict[str, Any]:
    """An experiment file and its table(s) (sometimes two cohorts), with fuzzed corners."""
    n = draw(st.integers(1, 6))
    rng = np.random.default_rng(n)
    frame = pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(n)],
            "a": rng.normal(size=n),
            "b": draw(
                st.lists(st.sampled_from([0.5, 1e30, float("nan"), 2]), min_size=n, max_size=n)
            ),
            "note": draw(st.lists(st.sampled_from(["ok", "", None, "é"]), min_size=n, max_size=n)),
            "y": rng.normal(size=n),
            "c": draw(st.lists(st.sampled_from([0, 1, 0, 1, None, "2"]), min_size=n, max_size=n)),
            "t": rng.uniform(1, 10, size=n),
            "e": rng.integers(0, 2, size=n),
        }
    )
    data = copy.deepcopy(VALID["data"])
    data["tasks"] = {k: v for k, v in data["tasks"].items() if draw(st.booleans())} or {
        "y": data["tasks"]["y"]
    }
    if draw(st.booleans()):
        data["table"] = draw(st.sampled_from(["m.parquet", "sub/../m.csv", "nope.csv", "m.xlsx"]))
    if draw(st.booleans()):
        data["root"] = draw(st.sampled_from([".", "missing_root", "m.csv"]))
    raw = {**copy.deepcopy(VALID), "data": data}
    if draw(st.booleans()):
        other = copy.deepcopy(data)
        other["table"] = "m2.csv"
        if draw(st.booleans()):
            other["modalities"] = {"x": {"kind": "tabular", "columns": ["a"]}}  # a clash
        raw["data"] = {"cohorts": {"one": data, "two": other}}
        raw["data"]["cohort_prefix"] = draw(st.booleans())
    return {"raw": raw, "frame": frame}


def _experiment_culprits(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    """What an experiment of `experiments()` may be refused for: its fuzzed columns (b, note,
    c), a declared modality or task, a table that is missing or of an unknown format, a root
    that is missing or a file (or the table path under such a root)."""
    cohorts = list(data["cohorts"].values()) if "cohorts" in data else [data]
    names = ["b", "note", "c"]
    files = []
    for cohort in cohorts:
        names += [*cohort["modalities"], *cohort["tasks"]]
        table, root = cohort["table"], cohort.get("root", ".")
        if table not in ("m.csv", "m2.csv", "m.parquet"):
            files.append(table)
        if root != ".":
            files += [root, table]
    return names, files


@budget(80)
@given(case=experiments())
def test_experiment_files_load_or_name_the_culprit(case: dict[str, Any]) -> None:
    with workdir() as folder:
        for name in ("m.csv", "m2.csv", "m.parquet"):
            write_table(case["frame"], folder / name)
        (folder / "exp.yaml").write_text(yaml.safe_dump(case["raw"], allow_unicode=True))
        try:
            config = load_config(folder / "exp.yaml")
            dataset = from_config(config.data)
        except PolyfuseError as exc:
            names, files = _experiment_culprits(case["raw"]["data"])
            assert_names(exc, names, files=files)
            return
    assert_valid(dataset)
