"""The configuration examples in the docs and examples/ are valid configs."""

import re
from pathlib import Path

import yaml

from polyfuse.config import load_config, parse_config

ROOT = Path(__file__).parents[1]


def test_data_guide_yaml_example_is_a_valid_config():
    text = (ROOT / "docs" / "data.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    config = parse_config(yaml.safe_load(block), "docs/data.md")
    assert set(config.data.modalities) == {"clinical", "rna", "ct", "wsi", "report", "labs"}


def test_example_configs_load():
    for path in (ROOT / "examples").rglob("*.yaml"):
        assert load_config(path).name
