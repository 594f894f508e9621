"""docs/tuning.md: its example config is valid and its space overrides resolve for the model."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from polyfuse.config import parse_config
from polyfuse.search_space import Categorical, Fixed
from polyfuse.tuning.space import apply_overrides, model_space

DOC = Path(__file__).parents[2] / "docs" / "tuning.md"


def test_tuning_guide_config_is_valid_and_its_space_resolves():
    text = DOC.read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    config = parse_config(yaml.safe_load(block), "docs/tuning.md")
    assert config.tune.trials == 15 and config.tune.inner_folds == 3
    space = apply_overrides(config.model.name, model_space(config.model.name), config.tune.space)
    assert space["dim"] == Categorical((32, 64)) and space["tabular"] == Fixed("mlp")
    assert space["lr"].high == 3e-3 and space["lr"].log and "patience" not in space


def test_tuning_guide_is_linked_from_the_readme():
    readme = (DOC.parents[1] / "README.md").read_text()
    assert "docs/tuning.md" in readme and "--tune-trials" in readme
