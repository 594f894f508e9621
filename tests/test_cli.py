"""The CLI end to end: bad input → one short message, exit code 2, no traceback."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import run


def assert_clean_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


def test_help_lists_every_command():
    import re

    from polyfuse.cli import app

    registered = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]
    expected = "fit cv tune predict serve export benchmark profile explain models datasets"
    assert set(expected.split()) <= set(registered), registered  # none went missing
    result = run("--help")
    assert result.exit_code == 0, result.output
    panel = result.output.split("Commands", 1)[1]  # the command names that head their rows
    listed = re.findall(r"^[│ ] ?([a-z][\w-]*)\s{2,}\S", panel, re.M)
    assert listed == registered, listed
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for command in registered:
        help_ = run(command, "--help")
        assert help_.exit_code == 0, (command, help_.output)
        assert f"Usage: polyfuse {command} " in help_.output, help_.output
        assert re.search(rf"polyfuse {command}\b", readme), (
            f"README never shows `polyfuse {command}`"
        )


def test_models_and_datasets_listings():
    assert "early" in run("models").output
    listing = run("datasets").output
    assert "tcga-acc" in listing and "rppa" in listing and "50% missing" in listing
    marked = [line for line in listing.splitlines() if "train only" in line]
    assert len(marked) == 2 and "perimetry" in marked[0] and "fundus" in marked[1]


def test_models_shows_a_search_space():
    result = run("models", "--space", "healnet")
    assert result.exit_code == 0, result.output
    assert "depth" in result.output and "log-uniform" in result.output
    assert_clean_error(run("models", "--space", "helnet"), "did you mean 'healnet'")


def test_fit_predict_round_trip_and_no_clobbering(own_data: Path):
    config = own_data / "experiment.yaml"
    assert run("fit", config).exit_code == 0
    run_dir = own_data / "runs" / "own-data" / "fit"
    assert {"config.yaml", "model.safetensors", "model.json", "contract.json"} <= {
        p.name for p in run_dir.iterdir()
    }
    assert_clean_error(run("fit", config), "already exists", "--overwrite")
    out = own_data / "pred.csv"
    assert run("predict", run_dir, own_data / "patients.csv", "-o", out).exit_code == 0
    pred = pd.read_csv(out, index_col="patient_id")
    assert len(pred) == 40 and pred["response.prob"].between(0, 1).all()
    assert_clean_error(run("predict", run_dir, own_data / "patients.csv", "-o", out), "exists")
    assert run("fit", config, "--overwrite").exit_code == 0


def test_cv_prints_a_summary(own_data: Path):
    result = run("cv", own_data / "experiment.yaml")
    assert result.exit_code == 0, result.output
    assert "auroc" in result.output and "±" in result.output
    folds = pd.read_csv(own_data / "runs" / "own-data" / "cv" / "folds.csv")
    assert len(folds.query("metric == 'auroc'")) == 4


def test_hardware_options_override_the_config_and_are_checked(own_data: Path):
    cfg = own_data / "experiment.yaml"
    assert_clean_error(run("fit", cfg, "--precision", "16-mixed"), "16-mixed needs a GPU")
    assert_clean_error(run("cv", cfg, "--strategy", "fsdp2"), "invalid hardware option")
    result = run("fit", cfg, "--workers", "1", "--devices", "1")
    assert result.exit_code == 0, result.output
    saved = (own_data / "runs" / "own-data" / "fit" / "config.yaml").read_text()
    assert "workers: 1" in saved  # the run directory records what actually ran


def _break(own: Path, old: str, new: str, file: str = "patients.csv") -> Path:
    path = own / file
    path.write_text(path.read_text().replace(old, new, 1))
    return own / "experiment.yaml"


@pytest.mark.parametrize(
    ("old", "new", "file", "fragments"),
    [
        ("scans/P001.png", "scans/gone.png", "patients.csv", ["P001", "gone.png"]),
        ("scans/P001.png", "../../etc/passwd", "patients.csv", ["P001", "outside the data root"]),
        ("P001,80", "P000,80", "patients.csv", ["duplicate", "P000"]),
        (",4.33,", ",high,", "patients.csv", ["lab_crp", "P001", "high"]),
        (",4.33,", ",inf,", "patients.csv", ["lab_crp", "P001"]),
        ("png,1\n", "png,maybe\n", "patients.csv", ["response", "maybe"]),
        ("epochs: 2", "epoch: 2", "experiment.yaml", ["training.epoch", "did you mean 'epochs'"]),
        ("name: early", "name: eraly", "experiment.yaml", ["eraly", "did you mean 'early'"]),
        ("column: response", "column: respons", "experiment.yaml", ["respons", "response"]),
    ],
)
def test_bad_input_is_one_clear_message(own_data, old, new, file, fragments):
    config = _break(own_data, old, new, file)
    assert_clean_error(run("fit", config), *fragments)
    assert not (own_data / "runs").exists()  # nothing is created for a failed fit


def test_corrupt_image_and_missing_config(own_data):
    (own_data / "scans" / "P002.png").write_bytes(b"not a png at all")
    assert_clean_error(run("fit", own_data / "experiment.yaml"), "P002.png")
    assert_clean_error(run("fit", own_data / "nope.yaml"), "not found")


def test_the_installed_entry_point_exits_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "polyfuse", "fit", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "config file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_profile_prints_a_row_per_model():
    result = run("profile", "-m", "early", "-m", "late")
    assert result.exit_code == 0, result.output
    assert "early" in result.output and "late" in result.output and "params" in result.output


def test_benchmark_command_prints_the_leaderboard(tmp_path):
    out = tmp_path / "bench"
    args = ["benchmark", "-m", "early", "--folds", "2", "--repeats", "1", "--no-classical"]
    result = run(*args, "--workers", "1", "--out", out)
    assert result.exit_code == 0, result.output
    assert "c_index" in result.output and "early" in result.output
    assert (out / "report.html").is_file() and (out / "leaderboard.md").is_file()
    levels = pd.read_csv(out / "subgroups.csv")  # the bundled cohort's own subgroups
    assert set(levels["subgroup"]) == {
        "clinical:gender", "clinical:pathologic_stage", "clinical:years_to_birth"
    }  # fmt: skip
    assert "Forest plot of c_index per subgroup level" in (out / "report.html").read_text()
    assert_clean_error(run(*args, "--out", out), "already exists")


def test_version_is_the_installed_package_metadata():
    from importlib import metadata

    result = run("--version")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"polyfuse {metadata.version('polyfuse')}"


@pytest.mark.parametrize(("flags", "level"), [((), None), (("-v",), "INFO"), (("-vv",), "DEBUG")])
def test_verbose_routes_the_package_log_to_stderr(flags, level):
    import logging

    logger = logging.getLogger("polyfuse")
    before = list(logger.handlers), logger.level
    try:
        result = run(*flags, "models")
        assert result.exit_code == 0, result.output
        added = [h for h in logger.handlers if h not in before[0]]
        if level is None:
            assert added == [] and logger.level == before[1]  # silent unless asked
        else:
            assert len(added) == 1 and logging.getLevelName(logger.level) == level
    finally:
        logger.handlers[:] = before[0]
        logger.setLevel(before[1])
