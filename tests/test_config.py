import pytest

from polyfuse.config import dump_config, load_config, parse_config
from polyfuse.errors import ConfigError


def test_unknown_keys_name_the_path_with_a_suggestion():
    with pytest.raises(
        ConfigError, match=r"training\.epoch: unknown key \(did you mean 'epochs'\?\)"
    ):
        parse_config({"data": {"dataset": "tcga-acc"}, "training": {"epoch": 3}})
    with pytest.raises(ConfigError, match=r"data\.modalities\.rna\.prefx: .*'prefix'"):
        parse_config(
            {
                "data": {
                    "table": "t.csv",
                    "modalities": {"rna": {"kind": "tabular", "prefx": "r_"}},
                    "tasks": {"y": {"type": "binary", "column": "y"}},
                }
            }
        )


def test_values_are_validated():
    with pytest.raises(ConfigError, match=r"training\.epochs"):
        parse_config({"data": {"dataset": "tcga-acc"}, "training": {"epochs": 0}})
    with pytest.raises(ConfigError, match="survival task needs time_column"):
        parse_config(
            {
                "data": {
                    "table": "t.csv",
                    "modalities": {"a": {"kind": "tabular", "prefix": "a"}},
                    "tasks": {"os": {"type": "survival"}},
                }
            }
        )


def test_yaml_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    cfg = tmp_path / "sub" / "exp.yaml"
    cfg.write_text(
        "data:\n  table: t.csv\n  modalities: {a: {kind: tabular, prefix: a_}}\n"
        "  tasks: {y: {type: binary, column: y}}\noutput: out\n"
    )
    config = load_config(cfg)
    assert config.data.table == tmp_path / "sub" / "t.csv"
    assert config.output == tmp_path / "sub" / "out"
    assert parse_config(__import__("yaml").safe_load(dump_config(config))) == config


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
