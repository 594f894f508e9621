"""Run directories that never surprise (issue #15, findings 6 and 7): `fit`, `cv` and `tune`
write to `<output>/<name>/<command>/`, nothing is created before the config, the model, the
output location and the data have been checked, and a failed run leaves nothing in the way of
the corrected retry."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from helpers import clean_error, run


def edit(own_data: Path, old: str, new: str) -> Path:
    path = own_data / "experiment.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


def test_fit_and_cv_of_one_config_get_their_own_run_directories(own_data: Path):
    config = own_data / "experiment.yaml"
    assert run("fit", config).exit_code == 0
    result = run("cv", config)  # was: "already exists" (the fit's directory)
    assert result.exit_code == 0, result.output
    runs = own_data / "runs" / "own-data"
    assert (runs / "fit" / "model.safetensors").is_file()
    assert (runs / "cv" / "folds.csv").is_file()
    assert not (runs / "cv" / "model.safetensors").exists()
    assert run("cv", config, "--overwrite").exit_code == 0  # never touches the fitted model
    assert (runs / "fit" / "model.safetensors").is_file()


@pytest.mark.parametrize("command", ["fit", "cv", "tune"])
@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        ("name: early", "name: eraly", ["unknown model 'eraly'", "did you mean 'early'"]),
        ("params: {dim: 16", "params: {dimm: 16", ["'dimm'", "did you mean 'dim'"]),
        ("name: own-data", "name: ../../elsewhere", ["name:", "not a plain folder name"]),
    ],
)
def test_config_and_model_are_checked_before_the_data_are_read(
    own_data, no_data, command, old, new, fragments
):
    clean_error(run(command, edit(own_data, old, new)), *fragments)
    assert not (own_data / "runs").exists()
    assert not (own_data.parent / "elsewhere").exists()


def test_tune_model_option_is_checked_before_the_data_are_read(own_data, no_data):
    clean_error(run("tune", own_data / "experiment.yaml", "--model", "helnet"), "'healnet'")


@pytest.mark.parametrize("command", ["fit", "cv", "tune"])
def test_an_existing_run_directory_is_refused_before_the_data_are_read(own_data, no_data, command):
    (own_data / "runs" / "own-data" / command).mkdir(parents=True)
    (own_data / "runs" / "own-data" / command / "keep.txt").write_text("mine")
    clean_error(run(command, own_data / "experiment.yaml"), "already exists", "--overwrite")
    assert (own_data / "runs" / "own-data" / command / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("command", ["fit", "cv", "tune"])
def test_an_output_below_a_file_is_a_clear_error_before_the_data_are_read(
    own_data, no_data, command
):
    (own_data / "blocker").write_text("a file, not a folder")
    config = edit(own_data, "output: runs", "output: blocker/runs")
    clean_error(run(command, config), "blocker", "not a folder")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a read-only /proc")
def test_an_unwritable_output_folder_is_a_clear_error_before_the_data_are_read(own_data, no_data):
    config = edit(own_data, "output: runs", "output: /proc/polyfuse-runs")
    clean_error(run("fit", config), "/proc", "cannot write")


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_output_folder_is_a_clear_error(own_data, no_data):
    (own_data / "ro").mkdir()
    (own_data / "ro").chmod(0o555)
    try:
        clean_error(run("cv", edit(own_data, "output: runs", "output: ro/runs")), "cannot write")
    finally:
        (own_data / "ro").chmod(0o755)


@pytest.mark.parametrize("command", ["fit", "cv"])
def test_a_run_that_fails_after_reading_the_data_leaves_nothing_in_the_way(own_data, command):
    # the modality is known only once the data are read: the failure comes after the checks
    config = edit(
        own_data, "name: early\n  params: {dim: 16,", "name: unimodal\n  params: {dim: 16,"
    )
    config = edit(own_data, "encoder: {channels: [8, 16]}}", "modality: scna}")
    clean_error(run(command, config), "unknown modality 'scna'", "did you mean 'scan'")
    assert not (own_data / "runs").exists()  # nothing this call created is left
    edit(own_data, "modality: scna}", "modality: scan}")
    result = run(command, config)  # the corrected retry, without --overwrite
    assert result.exit_code == 0, result.output


def test_a_failure_never_removes_what_was_there_before(own_data):
    config = own_data / "experiment.yaml"
    assert run("fit", config).exit_code == 0
    fit_dir = own_data / "runs" / "own-data" / "fit"
    before = sorted(p.name for p in fit_dir.iterdir())
    edit(own_data, "name: early", "name: unimodal")
    edit(own_data, "encoder: {channels: [8, 16]}}", "modality: scna}")
    clean_error(run("fit", config, "--overwrite"), "unknown modality 'scna'")
    assert sorted(p.name for p in fit_dir.iterdir()) == before


@pytest.mark.parametrize(
    "data",
    [
        {"dataset": "tcga-ac"},
        {"cohorts": {"one": {"dataset": "tcga-acc"}, "two": {"dataset": "tcga-ac"}}},
    ],
)
def test_dataset_names_are_checked_before_any_cohort_is_read(tmp_path, no_data, data):
    import yaml

    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({"name": "x", "data": data, "output": "runs"}))
    clean_error(run("fit", config), "unknown dataset 'tcga-ac'", "did you mean 'tcga-acc'")
    assert not (tmp_path / "runs").exists()
