"""Fuzzed but loadable numeric data, trained for a couple of steps: training either ends with
finite losses and predictions, or raises a `PolyfuseError` naming the task. A NaN or infinite
loss is never reported as a successful fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from fuzzlib import assert_names, budget, workdir, write_table
from hypothesis import event, given
from hypothesis import strategies as st

from polyfuse.config import DataConfig, PreprocessConfig, TrainingConfig
from polyfuse.data.manifest import load_data
from polyfuse.data.preprocess import Preprocessor
from polyfuse.errors import PolyfuseError

F32_MAX = float(np.finfo(np.float32).max)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")


@st.composite
def numeric_cohorts(draw) -> dict[str, Any]:
    """A small table of numbers that pass every load check, some of them huge."""
    n = draw(st.integers(2, 10))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from([1.0, 1e10, 1e30, F32_MAX]))
    x = np.clip(rng.normal(size=(n, 3)) * scale, -F32_MAX, F32_MAX)
    if scale == F32_MAX:  # both extremes in one column: x - mean overflows float32
        x[0, 0], x[-1, 0] = F32_MAX, -F32_MAX
    x[rng.uniform(size=x.shape) < draw(st.sampled_from([0.0, 0.2]))] = np.nan
    x[:, 1] = np.where(np.isnan(x).all(1), 1.0, x[:, 1])  # every sample keeps a feature
    y_scale = draw(st.sampled_from([1.0, 1e10, 1e30]))
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    frame.insert(0, "id", [f"s{i}" for i in range(n)])
    frame["y"] = rng.normal(size=n) * y_scale
    frame["k"] = np.arange(n) % 2
    frame["t"] = rng.uniform(1, 100, size=n) * min(y_scale, 1e30)
    frame["e"] = (np.arange(n) + 1) % 2
    task = draw(st.sampled_from(["regression", "binary", "survival"]))
    tasks = {
        "regression": {"reg": {"type": "regression", "column": "y"}},
        "binary": {"cls": {"type": "binary", "column": "k"}},
        "survival": {"os": {"type": "survival", "time_column": "t", "event_column": "e"}},
    }[task]
    return {
        "frame": frame,
        "tasks": tasks,
        "preprocess": PreprocessConfig(
            impute=draw(st.sampled_from(["mean", "median", "zero"])),
            scale=draw(st.booleans()),
            missing_indicator=draw(st.booleans()),
        ),
        "training": TrainingConfig(
            epochs=draw(st.integers(1, 2)),
            batch_size=draw(st.sampled_from([2, 4, 32])),
            lr=draw(st.sampled_from([1e-3, 1e-1])),  # a diverging lr: see test_regressions
            val_fraction=draw(st.sampled_from([0.0, 0.3])),
            balancing=draw(st.sampled_from(["static", "uncertainty"])),
            progress=False,
        ),
        "model": draw(st.sampled_from(["early", "late"])),
    }


def _columns(task: dict[str, Any]) -> list[str]:
    return [v for k, v in task.items() if k.endswith("column")]


@budget(40)
@given(case=numeric_cohorts())
def test_training_never_reports_a_nan_loss_as_success(case: dict[str, Any]) -> None:
    from polyfuse.training.fit import train_model

    with workdir() as folder:
        path = write_table(case["frame"], folder / "m.csv")
        config = DataConfig.model_validate(
            dict(
                table=path,
                modalities={"x": {"kind": "tabular", "columns": ["a", "b", "c"]}},
                tasks=case["tasks"],
            )
        )
        try:
            data = load_data(config)
        except PolyfuseError as exc:  # e.g. a binary task whose column has one class
            event("refused at load")
            task_columns = [c for task in case["tasks"].values() for c in _columns(task)]
            assert_names(exc, [*case["tasks"], *task_columns])
            return
        try:
            fitted = train_model(
                case["model"],
                data,
                hparams={"dim": 8},
                training=case["training"],
                preprocess=case["preprocess"],
            )
        except PolyfuseError as exc:  # a non-finite loss names the task, a huge value its cell
            event("refused: " + ("non-finite loss" if "loss became" in str(exc) else "huge value"))
            assert_names(exc, [*case["tasks"], "a", "b", "c"])  # the task, or the feature
            return
    event("trained")
    scores = fitted.predict(data)
    for t, parts in scores.items():
        for name, values in parts.items():
            assert np.isfinite(values).all(), (
                f"task {t}: non-finite {name} after a 'successful' fit"
            )


@budget(60)
@given(
    n=st.integers(1, 8),
    data=st.data(),
    impute=st.sampled_from(["mean", "median", "zero"]),
    indicator=st.booleans(),
)
def test_preprocessing_keeps_loadable_values_finite(n, data, impute, indicator) -> None:
    """Anything `load_data` accepts (finite float32 or NaN) is finite after preprocessing."""
    from polyfuse.data.dataset import ArraySource, MultimodalDataset
    from polyfuse.data.specs import ModalitySpec, TaskSpec

    cells = st.one_of(
        st.floats(width=32, allow_infinity=False),
        st.sampled_from([F32_MAX, -F32_MAX, 1e30, -1e30, np.nan]),
    )
    x = np.array(data.draw(st.lists(cells, min_size=3 * n, max_size=3 * n)), np.float32)
    x = x.reshape(n, 3)
    present = ~np.isnan(x).all(1)
    dataset = MultimodalDataset(
        [f"s{i}" for i in range(n)],
        {"x": ModalitySpec("x", "tabular", (3,))},
        {"x": ArraySource(x, present)},
        {"y": TaskSpec("y", "regression")},
        {"y": np.zeros(n, np.float32)},
    )
    out = Preprocessor(impute, True, indicator).fit_transform(dataset).sources["x"]
    assert out.values.dtype == np.float32
    assert np.isfinite(out.values[present]).all(), out.values
