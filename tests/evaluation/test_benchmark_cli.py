"""`polyfuse benchmark` and `polyfuse profile` as a user meets them (issue #15, finding 11):
names checked before any data are read, `-m a,b` lists, a config's model parameters honoured,
leaderboards titled by the experiment, and progress shown until the report is written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import clean_error, run, write_patients

from polyfuse.config import TrainingConfig


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    """A 40-patient manifest named `patients.csv`, in an experiment named `tiny-bench`."""
    cfg = {
        "name": "tiny-bench",
        "data": write_patients(tmp_path),
        "model": {"name": "early", "params": {"dim": 8, "hidden": [8]}},
        "training": {"epochs": 2, "progress": False},
        "output": "runs",
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["benchmark", "-m", "early,helnet"], ["unknown model 'helnet'", "'healnet'"]),
        (["benchmark", "-m", "early", "-m", "lat"], ["unknown model 'lat'"]),
        (["benchmark", "-m", "early,"], ["empty name"]),
        (["benchmark", "-d", "tcga-acc,tcga-ac"], ["unknown dataset 'tcga-ac'"]),
        (["benchmark", "--suite", "fulll"], ["unknown suite 'fulll'"]),
        (["profile", "-m", "early,eraly"], ["unknown model 'eraly'"]),
    ],
)
def test_names_are_checked_before_any_data_are_read(no_data, tmp_path, args, fragments):
    clean_error(
        run(*args, *(["--out", tmp_path / "b"] if args[0] == "benchmark" else [])), *fragments
    )
    assert not (tmp_path / "b").exists()


def test_a_config_with_a_bad_model_parameter_is_refused_before_its_data(no_data, config):
    text = config.read_text().replace("dim: 8", "dimm: 8")
    config.write_text(text)
    clean_error(run("benchmark", "--config", config), "'dimm'", "did you mean 'dim'")
    clean_error(run("profile", config), "'dimm'", "did you mean 'dim'")
    assert not (config.parent / "runs").exists()


def test_benchmark_on_a_config_uses_its_params_name_and_run_directory(config):
    args = ["benchmark", "--config", config, "-m", "early,late", "--folds", "2"]
    result = run(*args, "--repeats", "1", "--no-classical", "--workers", "1")
    assert result.exit_code == 0, result.output
    out = config.parent / "runs" / "tiny-bench" / "benchmark"  # not runs/benchmark
    results = pd.read_csv(out / "results.csv")
    assert set(results["model"]) == {"early", "late"}
    # the config's model.params reach its model (dim 8, hidden [8]), and only that model
    from polyfuse.config import load_config
    from polyfuse.datasets import from_config
    from polyfuse.evaluation.profile import profile_models

    data = from_config(load_config(config).data)
    small = profile_models(["early"], data, hparams={"early": {"dim": 8, "hidden": [8]}})
    default = profile_models(["early"], data)
    eff = pd.read_csv(out / "efficiency.csv").set_index("model")
    assert eff.loc["early", "params"] == small.loc["early", "params"]
    assert eff.loc["early", "params"] != default.loc["early", "params"]
    # titled by the experiment, not by the table's file name
    board = (out / "leaderboard.md").read_text()
    assert "tiny-bench" in board and "patients" not in board
    assert "tiny-bench" in result.output


def test_a_config_model_not_benchmarked_is_said(no_data, config):
    raw = yaml.safe_load(config.read_text())
    raw["model"] = {"name": "late", "params": {"dim": 8}}
    config.write_text(yaml.safe_dump(raw))
    (config.parent / "blocker").write_text("a file where the output folder would go")
    out = config.parent / "blocker" / "bench"
    result = run("benchmark", "--config", config, "-m", "early", "--out", out)
    clean_error(result, "not a folder")  # the output is checked before the data, too
    assert "model.params are for 'late'" in result.output


def test_progress_is_shown_for_profiling_and_the_report(config, tmp_path, monkeypatch):
    """After the last fold is trained, the bar names each following phase before it runs."""
    from polyfuse.config import load_config
    from polyfuse.datasets import from_config
    from polyfuse.evaluation import benchmark as bench
    from polyfuse.evaluation import profile, report

    events: list[str] = []

    class Recorder:
        def __init__(self, enabled: bool, **kw) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            events.append("bar closed")

        def add(self, name: str, total: int) -> None:
            events.append(f"add {name}")

        def describe(self, text: str) -> None:
            events.append(f"describe {text}")

        def advance(self, n: int = 1) -> None:
            pass

    def spy(module, name):
        original = getattr(module, name)

        def wrapped(*args, **kwargs):
            events.append(f"run {name}")
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapped)

    monkeypatch.setattr(bench, "Progress", Recorder)
    spy(profile, "profile_models")
    spy(report, "write_report")
    data = from_config(load_config(config).data)
    bench.benchmark(
        [data],
        models=["early", "late"],
        folds=2,
        repeats=1,
        training=TrainingConfig(epochs=1, progress=False),
        classical=False,
        out=tmp_path / "b",
    )
    last_trained = max(i for i, e in enumerate(events) if "trained" in e)
    after = events[last_trained + 1 :]
    profiled = [i for i, e in enumerate(after) if e == "run profile_models"]
    assert len(profiled) == 2
    for i in profiled:  # each profiling run is announced just before it
        assert after[i - 1].startswith("describe") and "profiling" in after[i - 1]
    reported = after.index("run write_report")
    assert any("report" in e for e in after[profiled[-1] + 1 : reported])
    assert after.index("bar closed") > reported  # no silent phase once the bar is gone


def test_a_unimodal_modality_in_the_config_is_benchmarked_once(config):
    from polyfuse.config import load_config
    from polyfuse.datasets import from_config
    from polyfuse.evaluation.benchmark import default_entries

    data = from_config(load_config(config).data)
    every = default_entries(data, ["unimodal", "early"])
    assert [e.name for e in every] == ["unimodal[clinical]", "unimodal[genes]", "early"]
    one = default_entries(data, ["unimodal"], {"unimodal": {"modality": "genes", "dim": 8}})
    assert [(e.name, e.hparams) for e in one] == [("unimodal[genes]", {"modality": "genes"})]
