"""A model of the user's own, named in a config as `module:Class` or through an entry point.

The example `examples/custom_model/` (a `MultimodalModel` subclass in `my_models.py` and a config
naming it) trains through the command; a missing module or class is a ConfigError naming it.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run

from polyfuse.errors import ConfigError
from polyfuse.models import registry

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "custom_model"

TOY = '''
import torch
from torch import nn

from polyfuse.models.model import MultimodalModel, build_heads


class MeanFusion(MultimodalModel):
    """Each tabular modality projected to `dim`; the embedding is their mean."""

    def __init__(self, specs, tasks, *, dim: int = 8, scale: float = 1.0) -> None:
        super().__init__(specs, tasks)
        self.proj = nn.ModuleDict({m: nn.Linear(s.shape[0], dim) for m, s in specs.items()})
        self.scale = scale
        self.heads = build_heads(tasks, dim)

    def fuse(self, inputs):
        parts = [self.proj[m](b.data) * b.present[:, None] for m, b in inputs.items()]
        return self.scale * torch.stack(parts).mean(0), {}


NOT_A_MODEL = 3
'''


@pytest.fixture()
def isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names resolved in a test are forgotten after it."""
    monkeypatch.setattr(registry, "_REFERENCED", {})


@pytest.fixture()
def toy_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated) -> str:
    """A module of the user's own on sys.path (a fresh name per test); its name."""
    name = f"toy_models_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def write_config(folder: Path, model: str, params: str = "{}") -> Path:
    path = folder / "experiment.yaml"
    path.write_text(
        f"""\
name: custom
data: {{dataset: tcga-acc}}
model: {{name: '{model}', params: {params}}}
training: {{epochs: 2, batch_size: 32, val_fraction: 0.2, progress: false}}
output: {folder / "runs"}
""",
        encoding="utf-8",
    )
    return path


def test_the_example_model_named_in_a_config_trains_and_predicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`polyfuse fit` on a config naming `my_models:GatedSum`, then `polyfuse predict` with
    the fitted run: the saved run names the class, which is imported again."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    config = write_config(tmp_path, "my_models:GatedSum", "{dim: 16, dropout: 0.2}")
    fitted = run("fit", config)
    assert fitted.exit_code == 0, fitted.output
    assert "fitted my_models:GatedSum" in fitted.output
    run_dir = tmp_path / "runs" / "custom" / "fit"
    assert (run_dir / "model.safetensors").is_file()
    predicted = run("predict", run_dir, "tcga-acc", "-o", tmp_path / "p.csv")
    assert predicted.exit_code == 0, predicted.output
    assert (tmp_path / "p.csv").read_text().count("\n") == 93  # header + 92 patients


def test_the_example_config_names_the_example_model() -> None:
    from polyfuse.config import load_config

    config = load_config(EXAMPLE / "experiment.yaml")
    module, _, name = config.model.name.partition(":")
    assert (EXAMPLE / f"{module}.py").is_file()
    assert f"class {name}(MultimodalModel)" in (EXAMPLE / f"{module}.py").read_text()


def test_a_custom_model_trains_through_run_fit(tmp_path: Path, toy_module: str) -> None:
    from polyfuse.config import load_config
    from polyfuse.training.experiment import run_fit

    name = f"{toy_module}:MeanFusion"
    _, fitted = run_fit(load_config(write_config(tmp_path, name, "{dim: 4}")))
    assert fitted.model_name == name and fitted.hparams == {"dim": 4}
    assert type(fitted.model).__name__ == "MeanFusion"
    assert registry.model_hparams(name) == {"dim": 8, "scale": 1.0}


def test_missing_module_and_class_are_config_errors_naming_them(toy_module: str) -> None:
    with pytest.raises(ConfigError, match="no module named 'no_such_package_xyz'"):
        registry.model_class("no_such_package_xyz.models:Fusion")
    with pytest.raises(ConfigError, match=f"{toy_module} .*has no 'MeanFusoin'.*'MeanFusion'"):
        registry.model_class(f"{toy_module}:MeanFusoin")
    with pytest.raises(ConfigError, match=r"not a subclass of .*MultimodalModel"):
        registry.model_class(f"{toy_module}:NOT_A_MODEL")
    with pytest.raises(ConfigError, match="write it as module:Class"):
        registry.model_class(f"{toy_module}:")
    with pytest.raises(ConfigError, match=r"has no hyper-parameter 'dims'.*did you mean 'dim'"):
        registry.check_hparams(f"{toy_module}:MeanFusion", {"dims": 3})


def test_an_import_error_inside_the_users_module_is_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated
) -> None:
    """A missing dependency of the user's module is that module's problem: its own error
    (with the traceback), not 'no module named <the user's module>'."""
    (tmp_path / "needs_missing_dep.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as caught:
        registry.model_class("needs_missing_dep:Fusion")
    assert caught.value.name == "no_such_dependency_xyz"
    sys.modules.pop("needs_missing_dep", None)


def entry_points_with(*entries: importlib.metadata.EntryPoint):
    """`importlib.metadata.entry_points` that also declares `entries` in their groups."""
    real = importlib.metadata.entry_points

    def fake(**params):
        found = [e for e in entries if e.group == params.get("group")]
        return importlib.metadata.EntryPoints([*real(**params), *found])

    return fake


def test_a_model_declared_as_an_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toy_module: str
) -> None:
    """An installed package's `[project.entry-points."polyfuse.models"]` names a model: it is
    listed (not imported), checked, built and trained by its entry-point name."""
    from polyfuse.config import load_config
    from polyfuse.training.experiment import run_fit

    entry = importlib.metadata.EntryPoint(
        "mean_fusion", f"{toy_module}:MeanFusion", registry.ENTRY_POINTS
    )
    broken = importlib.metadata.EntryPoint("broken", "gone_pkg_xyz:Model", registry.ENTRY_POINTS)
    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points_with(entry, broken))
    assert {"mean_fusion", "broken", "early"} <= set(registry.list_models())
    assert toy_module not in sys.modules  # listing imports nothing
    assert registry.model_hparams("mean_fusion") == {"dim": 8, "scale": 1.0}
    with pytest.raises(ConfigError, match="has no hyper-parameter 'dims'"):
        registry.check_hparams("mean_fusion", {"dims": 3})
    with pytest.raises(ConfigError, match=r"model 'broken'.*gone_pkg_xyz:Model.*no module"):
        registry.model_class("broken")
    _, fitted = run_fit(load_config(write_config(tmp_path, "mean_fusion", "{scale: 0.5}")))
    assert type(fitted.model).__name__ == "MeanFusion" and fitted.model.scale == 0.5
    listing = run("models")
    assert listing.exit_code == 0, listing.output
    assert "mean_fusion" in listing.output and "scale=1.0" in listing.output
    assert "cannot be imported: ConfigError" in listing.output  # a broken plugin hides no other


def test_a_builtin_name_wins_over_an_entry_point_and_cannot_be_taken(
    monkeypatch: pytest.MonkeyPatch, toy_module: str
) -> None:
    entry = importlib.metadata.EntryPoint("early", f"{toy_module}:MeanFusion", "polyfuse.models")
    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points_with(entry))
    assert registry.model_class("early").__name__ == "EarlyFusion"
    cls = registry.model_class(f"{toy_module}:MeanFusion")
    with pytest.raises(ConfigError, match="built-in"):
        registry.register_model("late")(cls)


def test_the_registry_wide_checks_pass_on_the_example_model_as_documented() -> None:
    """docs/custom_models.md's command: `pytest -p my_models` registers the example's model
    before collection, so the registry-wide tests run on it too (and pass)."""
    path = os.pathsep.join(p for p in (str(EXAMPLE), os.environ.get("PYTHONPATH")) if p)
    tests = ["tests/models/test_registry_models.py", "tests/tuning/test_registry_spaces.py"]
    options = ["-p", "my_models", "-p", "no:cacheprovider", "-k", "gated_sum"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *options, *tests],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) >= 14, done.stdout
