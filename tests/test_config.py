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


@pytest.mark.parametrize("name", ["../../elsewhere", "..", ".", "a/b", "/tmp/x", "a\\b", ""])
def test_a_run_name_cannot_leave_the_output_folder(name):
    with pytest.raises(ConfigError, match=r"(?m)^  name: "):
        parse_config({"name": name, "data": {"dataset": "tcga-acc"}})


def test_ordinary_run_names_are_accepted():
    for name in ("own-data", "acc_v2.1", "tcga acc"):
        assert parse_config({"name": name, "data": {"dataset": "tcga-acc"}}).name == name


BOMB = """\
name: bomb
data: {dataset: tcga-acc}
model:
  name: early
  params:
    a: &a [x, x, x, x, x, x, x, x, x, x]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
    i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)  # under 1 KB; 10^9 strings once expanded
    with pytest.raises(ConfigError, match=r"bomb\.yaml.*alias"):
        load_config(path)


def test_a_self_referencing_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("data: {dataset: tcga-acc}\nmodel: {params: {a: &a [1, *a]}}\n")
    with pytest.raises(ConfigError, match=r"loop\.yaml.*alias"):
        load_config(path)


def test_a_few_small_aliases_still_work(tmp_path):
    path = tmp_path / "reuse.yaml"
    path.write_text(
        "data: {dataset: tcga-acc}\n"
        "model: {name: early, params: {encoder: &enc {hidden: [8]}, fusion: *enc}}\n"
    )
    config = load_config(path)
    assert config.model.params["fusion"] == {"hidden": [8]}


def test_dtp_without_a_validation_part_is_refused_before_any_data():
    """DTP weighs tasks by a validation KPI: with val_fraction 0 it would silently stay static."""
    raw = {"data": {"dataset": "tcga-acc"}, "training": {"balancing": "dtp", "val_fraction": 0}}
    with pytest.raises(ConfigError, match=r"training.*balancing dtp.*val_fraction > 0"):
        parse_config(raw)
    raw["training"]["val_fraction"] = 0.2
    assert parse_config(raw).training.balancing == "dtp"


def test_a_saved_config_reads_back_with_the_models_own_training_settings(tmp_path):
    """A run's config.yaml (and `embed`'s experiment.yaml) holds what was given, not every
    default: re-read, a model's recommended settings apply again where the user set none."""
    from polyfuse.training.fit import with_model_defaults

    config = parse_config(
        {"data": {"dataset": "tcga-acc"}, "model": {"name": "late"}, "training": {"epochs": 7}}
    )
    saved = tmp_path / "config.yaml"
    saved.write_text(dump_config(config))
    again = load_config(saved)
    assert again.model == config.model and again.training == config.training
    training = with_model_defaults("late", {}, again.training)
    assert (training.epochs, training.ensemble, training.ensemble_validation) == (7, 3, "folds")
