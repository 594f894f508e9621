"""Cost curves (issue #17, item 5): step time, peak memory and parameters against the number of
modalities and tokens per modality; failed sizes as rows; the `profile --curves` command."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from helpers import clean_error, run

from polyfuse.errors import ConfigError
from polyfuse.evaluation import cost_curves
from polyfuse.evaluation.cost_curves import (
    COLUMNS,
    bag_cohort,
    cost_curve,
    measure_size,
    plot_cost_curves,
    sizes,
)

TINY = dict(repeats=1, warmup=0, batch=2, width=4)


def test_sizes_are_both_sweeps_with_the_shared_point_once():
    assert sizes((2, 4, 8), (16, 64, 256)) == [
        (2, 64),
        (4, 64),
        (8, 64),
        (4, 16),
        (4, 256),
    ]
    assert sizes((2, 4), (8,), at_modalities=2, at_tokens=8) == [(2, 8), (4, 8)]
    with pytest.raises(ConfigError, match=">= 1"):
        sizes((0, 2), (8,))
    with pytest.raises(ConfigError, match="at least one"):
        sizes((), (8,))


def test_the_cohort_has_m_bags_of_t_instances_every_sample():
    data = bag_cohort(3, 5, batch=4, width=6)
    assert list(data.specs) == ["b0", "b1", "b2"]
    assert all(s.kind == "bag" and s.shape == (6,) for s in data.specs.values())
    inputs = data.batch(np.arange(4)).inputs
    for b in inputs.values():
        assert tuple(b.data.shape) == (4, 5, 6)
        assert bool(b.present.all()) and bool(b.token_mask.all())


def test_rows_columns_and_values_of_a_curve():
    frame = cost_curve(["early"], modalities=(2, 4), tokens=(4, 8), **TINY)
    assert list(frame.columns) == COLUMNS
    assert list(zip(frame.modalities, frame.tokens, strict=True)) == [(2, 8), (4, 8), (4, 4)]
    assert (frame.status == "ok").all()
    assert (frame.step_ms > 0).all() and (frame.peak_mb > 0).all()
    by_m = frame[frame.tokens == 8].set_index("modalities")
    # early has one encoder per modality: twice the modalities, more parameters and memory
    assert by_m.params[4] > by_m.params[2]
    assert by_m.peak_mb[4] > by_m.peak_mb[2]
    # parameters do not depend on the number of tokens
    by_t = frame[frame.modalities == 4].set_index("tokens")
    assert by_t.params[4] == by_t.params[8]


@pytest.mark.parametrize("name", ["perceiver", "healnet"])
def test_peak_memory_grows_with_tokens_for_a_token_model(name):
    frame = cost_curve([name], modalities=(2,), tokens=(4, 64), **TINY)
    assert (frame.status == "ok").all(), frame.status.tolist()
    peak = frame.set_index("tokens").peak_mb
    assert peak[64] > peak[4]


def test_a_failing_size_is_a_nan_row_with_its_reason(monkeypatch):
    real = cost_curves.measure_peak_memory

    def fails_on_many_tokens(model, inputs):
        if next(iter(inputs.values())).data.shape[1] > 4:
            raise MemoryError("pretend out of memory")
        return real(model, inputs)

    monkeypatch.setattr(cost_curves, "measure_peak_memory", fails_on_many_tokens)
    seen = []
    frame = cost_curve(
        ["late"],
        modalities=(2,),
        tokens=(4, 8),
        on_size=lambda *size: seen.append(size),
        **TINY,
    )
    assert seen == [("late", 2, 8), ("late", 2, 4)]  # the sweep went on after the failure
    failed, ok = frame.iloc[0], frame.iloc[1]
    assert ok.status == "ok" and ok.step_ms > 0
    assert failed.status == "MemoryError: pretend out of memory"
    assert math.isnan(failed.step_ms) and math.isnan(failed.peak_mb) and pd.isna(failed.params)
    assert frame.params.dtype == "Int64" and ok.params > 0


def test_an_unknown_model_is_a_failed_row_not_a_crash():
    row = measure_size("no_such_model", 2, 4, **TINY)
    assert row["status"].startswith("ConfigError") and math.isnan(row["step_ms"])


def test_plots_are_two_pngs_and_tolerate_failed_sizes(tmp_path):
    frame = pd.DataFrame(
        [
            ("a", 2, 8, 1.0, 1.0, 10, "ok"),
            ("a", 4, 8, 2.0, 2.0, 20, "ok"),
            ("a", 4, 4, 1.5, 1.5, 20, "ok"),
            ("b", 2, 8, math.nan, math.nan, math.nan, "MemoryError: x"),
            ("b", 4, 8, 3.0, 4.0, 30, "ok"),
            ("b", 4, 4, 2.5, 3.0, 30, "ok"),
        ],
        columns=COLUMNS,
    )
    paths = plot_cost_curves(frame, tmp_path / "curves.png")
    assert [p.name for p in paths] == ["curves.png", "curves_memory.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_fixed_point_of_each_panel_is_found_from_the_frame():
    frame = cost_curve(["unimodal"], modalities=(2, 4, 8), tokens=(4, 8), **TINY)
    assert cost_curves._fixed(frame, "tokens", "modalities") == 8
    assert cost_curves._fixed(frame, "modalities", "tokens") == 4


def test_profile_curves_writes_the_csv_and_figures(tmp_path):
    out = tmp_path / "prof"
    result = run(
        "profile", "--curves", "-m", "early,perceiver", "--modalities", "2,3", "--tokens", "2,4",
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "cost_curves.csv")
    assert list(frame.columns) == COLUMNS
    assert frame.model.tolist() == ["early"] * 3 + ["perceiver"] * 3
    assert (frame.status == "ok").all()
    assert (out / "cost_curves.png").is_file() and (out / "cost_curves_memory.png").is_file()
    assert "cost curves" in result.output and "perceiver" in result.output


def test_profile_curves_rejects_bad_counts_before_measuring(tmp_path):
    result = run("profile", "--curves", "-m", "early", "--tokens", "4,x", "--out", tmp_path)
    clean_error(result, "--tokens", "'4,x'")
    assert not (tmp_path / "cost_curves.csv").exists()
