"""The command answers before torch is imported: every config and data error, and `models`.

Each case runs `polyfuse` in a fresh interpreter (as the installed script does: the current
directory is not put on sys.path by Python, `-P`) with an `atexit` probe that reports whether
torch was imported by the time the command ended. The command stops at its error, so "not
imported at exit" means "not imported before the error was reported". The built-in model table
that makes this possible (`registry.BUILTIN`) is compared with the classes themselves.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
OWN_DATA = ROOT / "examples" / "own_data"

PROBE = """
import atexit, sys
atexit.register(lambda: print("torch imported:", "torch" in sys.modules, file=sys.stderr))
sys.argv = ["polyfuse", *sys.argv[1:]]
from polyfuse.cli import main
main()
"""


def polyfuse(*args: object, cwd: Path) -> tuple[int, str, bool]:
    """(exit code, stdout + stderr, whether torch was imported) of `polyfuse ARGS` in a fresh
    process; PYTHONPATH passes on (a copy of the sources under test wins over the install)."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-P", "-c", PROBE, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert "torch imported:" in output, output
    return done.returncode, output, "torch imported: True" in output


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    """A copy of the own-data example (a manifest table and PNG scans)."""
    dest = tmp_path / "own"
    shutil.copytree(OWN_DATA, dest)
    return dest


def write_config(folder: Path, *, model: str = "{name: early}", **data: str) -> Path:
    """An experiment reading `folder`'s patients.csv: clinical columns and scans, one task."""
    sections = {
        "columns": "[age, lab_crp, lab_albumin]",
        "table": "patients.csv",
        "folds": "4",
    } | data
    text = f"""\
name: startup
data:
  table: {sections["table"]}
  id_column: patient_id
  modalities:
    clinical: {{kind: tabular, columns: {sections["columns"]}}}
    scan: {{kind: image, path_column: scan}}
  tasks:
    response: {{type: binary, column: response}}
model: {model}
training: {{epochs: 1}}
cv: {{folds: {sections["folds"]}, repeats: 1}}
output: runs
"""
    path = folder / "experiment.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def assert_answered_without_torch(
    args: tuple[object, ...], cwd: Path, code: int, *fragments: str
) -> None:
    returncode, output, torch_imported = polyfuse(*args, cwd=cwd)
    assert returncode == code, output
    for fragment in fragments:
        assert fragment in output, output
    assert "Traceback" not in output, output
    assert not torch_imported, f"torch was imported before polyfuse answered:\n{output}"


def test_the_probe_sees_torch_when_a_command_imports_it(data: Path) -> None:
    """The check can fail: a fit that reaches training has imported torch."""
    config = write_config(data)
    returncode, output, torch_imported = polyfuse("fit", config, cwd=data)
    assert returncode == 0, output
    assert torch_imported


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--help",), ("Usage: polyfuse",)),
        (("--version",), ("polyfuse ",)),
        (("models",), ("healnet", "num_latents=16", "dropout=0.1", "early")),
    ],
)
def test_listings_answer_without_torch(tmp_path: Path, args, fragments) -> None:
    assert_answered_without_torch(args, tmp_path, 0, *fragments)


CONFIG_ERRORS = {
    "unknown key": ("modle: {name: early}\n", "modle"),
    "unknown model": ("model: {name: earyl}\n", "did you mean 'early'"),
    "unknown hyper-parameter": (
        "model: {name: healnet, params: {num_latent: 4}}\n",
        "did you mean 'num_latents'",
    ),
    "missing custom module": (
        "model: {name: 'no_such_module_xyz:Fusion'}\n",
        "no module named 'no_such_module_xyz'",
    ),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
@pytest.mark.parametrize("command", ["fit", "cv"])
def test_config_errors_come_before_torch(data: Path, case: str, command: str) -> None:
    line, fragment = CONFIG_ERRORS[case]
    config = write_config(data)
    text = config.read_text().replace("model: {name: early}\n", line)
    config.write_text(text, encoding="utf-8")
    assert_answered_without_torch((command, config), data, 2, "error:", fragment)


def _missing_scan(folder: Path) -> dict[str, str]:
    table = folder / "patients.csv"
    table.write_text(table.read_text().replace("scans/P001.png", "scans/P999.png"))
    return {}


DATA_ERRORS = {
    "column missing from the table": (
        lambda folder: {"columns": "[age, lab_crp, no_such_column]"},
        ("no_such_column", "patients.csv"),
    ),
    "file missing": (_missing_scan, ("P999.png",)),
    "table missing": (lambda folder: {"table": "nowhere.csv"}, ("nowhere.csv",)),
    "fewer samples than folds": (lambda folder: {"folds": "50"}, ("fewer than 50 folds",)),
}


@pytest.mark.parametrize("case", sorted(DATA_ERRORS))
def test_data_errors_come_before_torch(data: Path, case: str) -> None:
    change, fragments = DATA_ERRORS[case]
    config = write_config(data, **change(data))
    assert_answered_without_torch(("cv", config), data, 2, "error:", *fragments)


@pytest.mark.parametrize(
    ("encoder", "broken", "fragments"),
    [
        ("{name: resnet18, weights: nowhere.safetensors}", False, ("nowhere.safetensors",)),
        ("{name: resnt18, weights: w.safetensors}", False, ("did you mean 'resnet18'",)),
        ("{name: resnet18, weights: w.safetensors}", True, ("P999.png",)),
    ],
)
def test_encoder_and_file_errors_come_before_any_encoder_loads(
    data: Path, encoder: str, broken: bool, fragments: tuple[str, ...]
) -> None:
    """A modality's encoder is checked with the config, and it runs only once every file of
    every modality was read: a bad scan is reported without torch (issue #20)."""
    (data / "w.safetensors").write_bytes(b"weights")
    if broken:
        _missing_scan(data)
    config = write_config(data)
    text = config.read_text().replace(
        "scan: {kind: image, path_column: scan}",
        f"scan: {{kind: image, path_column: scan, encoder: {encoder}}}",
    )
    config.write_text(text, encoding="utf-8")
    assert_answered_without_torch(("cv", config), data, 2, "error:", *fragments)


def cohort(columns: str) -> str:
    return (
        "{table: patients.csv, id_column: patient_id, modalities: {clinical: {kind: tabular, "
        f"columns: {columns}}}}}, tasks: {{response: {{type: binary, column: response}}}}}}"
    )


def test_a_cohort_error_comes_before_torch(data: Path) -> None:
    """Two cohorts that declare one modality differently (and no `cohort_prefix`): a DataError
    raised while the cohorts are combined (`data/cohorts.py`)."""
    config = data / "experiment.yaml"
    config.write_text(
        f"name: two\ndata:\n  cohorts:\n    a: {cohort('[age, lab_crp]')}\n"
        f"    b: {cohort('[age]')}\nmodel: {{name: early}}\noutput: runs\n",
        encoding="utf-8",
    )
    assert_answered_without_torch(("fit", config), data, 2, "error:", "differs between cohorts")


@pytest.mark.parametrize("command", ["benchmark", "profile"])
def test_benchmark_and_profile_read_their_data_before_torch(data: Path, command: str) -> None:
    config = write_config(data, columns="[age, no_such_column]")
    args = (
        ("benchmark", "--config", config, "-m", "early", "--no-classical")
        if command == "benchmark"
        else ("profile", config, "-m", "early")
    )
    assert_answered_without_torch(args, data, 2, "error:", "no_such_column")


def test_a_custom_model_module_is_found_in_the_current_directory(data: Path) -> None:
    """The `polyfuse` script puts the current directory on sys.path (Python does not: -P), so
    `module:Class` finds a module there; its class name is then checked (importing it)."""
    (data / "local_models.py").write_text("VALUE = 1\n")
    config = write_config(data, model="{name: 'local_models:Fusion'}")
    returncode, output, _ = polyfuse("fit", config, cwd=data)
    assert returncode == 2, output
    assert "local_models" in output and "has no 'Fusion'" in output, output


def test_the_builtin_table_is_the_registry() -> None:
    """`registry.BUILTIN` (what the command lists and checks without importing any model)
    names every registered built-in model with its class and hyper-parameters, defaults
    included; replace it with the printed table when a model or a keyword changes."""
    from polyfuse.models import registry

    expected = registry.builtin_table()  # imports every model
    table = ast.literal_eval(expected.partition(" = ")[2])
    assert table == registry.BUILTIN, f"replace BUILTIN in registry.py with:\n{expected}"
    for name, (reference, _) in registry.BUILTIN.items():
        cls = registry._MODELS[name]
        assert reference == f"{cls.__module__}:{cls.__qualname__}"
        assert list(registry.model_hparams(name).items()) == list(registry._keywords(cls).items())
        for value in registry._keywords(cls).values():  # the table round-trips every default
            assert ast.literal_eval(repr(value)) == value


def test_builtin_hparams_are_known_without_importing_the_model() -> None:
    """In a fresh process: listing, checking and reading defaults of a built-in model import
    neither the model's module nor torch."""
    code = (
        "import sys\n"
        "from polyfuse.models.registry import check_hparams, list_models, model_hparams\n"
        "assert 'healnet' in list_models()\n"
        "assert model_hparams('healnet')['num_latents'] == 16\n"
        "check_hparams('early', {'dim': 8})\n"
        "print(sorted(m for m in sys.modules if m.startswith(('torch', 'polyfuse.models.'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "['polyfuse.models.registry']", done.stdout


@pytest.mark.parametrize(
    ("storage", "fragment"),
    [
        ("ftp://host/studies", "give a database URL"),
        ("postgresql://me:secret@localhost:1/db", "cannot open postgresql+psycopg://me:***@"),
    ],
)
def test_a_shared_storage_error_comes_before_torch(data: Path, storage: str, fragment: str):
    """A worker with a wrong or unreachable `--storage` stops before any data or torch."""
    pytest.importorskip("optuna")
    config = write_config(data)
    args = ("tune", config, "--storage", storage)
    assert_answered_without_torch(args, data, 2, "error:", fragment)
