"""Search spaces as plain data: declared per model, narrowed or overridden by a config."""

from __future__ import annotations

import subprocess
import sys
from typing import ClassVar

import pytest

from polyfuse.config import parse_config
from polyfuse.errors import ConfigError
from polyfuse.models.model import MultimodalModel
from polyfuse.models.registry import _check_declared, register_model
from polyfuse.search_space import Categorical, Fixed, Float, Int, corner, describe, parse_override
from polyfuse.tuning.space import SHARED_SPACE, apply_overrides, model_space, split_params


def test_dimensions_validate_their_ranges():
    with pytest.raises(ConfigError, match=r"low <= high"):
        Float(1.0, 0.5)
    with pytest.raises(ConfigError, match=r"low > 0"):
        Float(0.0, 1.0, log=True)
    with pytest.raises(ConfigError, match=r"both log scale and a step"):
        Int(1, 8, log=True, step=2)
    with pytest.raises(ConfigError, match=r"integers"):
        Int(1, 2.5)
    with pytest.raises(ConfigError, match=r"at least one choice"):
        Categorical(())
    assert Categorical(([64], [64, 64])).choices == ((64,), (64, 64))  # frozen, hashable
    assert str(Float(1e-5, 1e-2, log=True)) == "log-uniform 1e-05..0.01"


def test_overrides_narrow_fix_remove_or_replace():
    lr = SHARED_SPACE["lr"]
    assert parse_override("lr", {"high": 1e-3}, lr) == Float(1e-5, 1e-3, log=True)
    assert parse_override("lr", {"low": 1e-4, "high": 1e-3, "log": False}, lr) == Float(1e-4, 1e-3)
    assert parse_override("epochs", {"high": 60}, SHARED_SPACE["epochs"]) == Int(20, 60, step=20)
    assert parse_override("dim", [16, 32], Int(8, 64)) == Categorical((16, 32))
    assert parse_override("dim", {"choices": [16]}, None) == Categorical((16,))
    assert parse_override("dim", 32, Int(8, 64)) == Fixed(32)
    assert parse_override("depth", {"low": 1, "high": 3}, None) == Int(1, 3)
    assert parse_override("rate", {"low": 0, "high": 0.5}, None) == Float(0, 0.5)
    assert parse_override("dim", None, Int(8, 64)) is None
    with pytest.raises(ConfigError, match=r"give both low and high"):
        parse_override("new", {"high": 3}, None)
    with pytest.raises(ConfigError, match=r"unknown key 'hihg' \(did you mean 'high'"):
        parse_override("lr", {"hihg": 3}, lr)


def test_model_space_joins_shared_and_declared_and_config_overrides():
    early = model_space("early")
    assert {"lr", "weight_decay", "epochs", "patience", "dropout", "dim", "hidden"} <= set(early)
    healnet = model_space("healnet")
    assert "dropout" not in healnet  # HEALNet has no `dropout` keyword
    assert {"depth", "attn_dropout", "ff_dropout", "l1"} <= set(healnet)
    space = apply_overrides("early", early, {"dim": [16], "tabular": None, "lr": {"high": 1e-3}})
    assert space["dim"] == Categorical((16,)) and "tabular" not in space
    assert space["lr"].high == 1e-3 and space["lr"].log
    with pytest.raises(ConfigError, match=r"no hyper-parameter 'dimm'.*did you mean 'dim'"):
        apply_overrides("early", early, {"dimm": 3})
    assert describe({"lr": Float(1e-4, 1e-2, log=True)}) == {"lr": "log-uniform 0.0001..0.01"}


def test_sampled_values_split_into_model_and_training():
    space = model_space("early")
    model, training = split_params("early", corner(space, "high"))
    assert model["hidden"] == [64, 64] and model["dim"] == 128 and model["dropout"] == 0.5
    assert training == {"lr": 1e-2, "weight_decay": 1e-2, "epochs": 100, "patience": 20}


def test_registry_refuses_a_space_naming_an_unknown_parameter():
    class Bad(MultimodalModel):
        search_space: ClassVar[dict] = {"widht": Int(1, 4)}

        def __init__(self, specs, tasks, *, width: int = 2) -> None:
            super().__init__(specs, tasks)

    with pytest.raises(ConfigError, match=r"'widht'.*did you mean 'width'"):
        register_model("bad-space")(Bad)
    Bad.search_space = {"width": Int(1, 4), "lr": Float(1e-4, 1e-2, log=True)}
    _check_declared(Bad, "bad-space")  # a keyword and a training setting: fine


def test_config_tune_section_is_validated_before_any_model_or_torch():
    raw = {"data": {"dataset": "tcga-acc"}, "tune": {"trials": 5, "space": {"lr": {"hihg": 1}}}}
    with pytest.raises(ConfigError, match=r"tune.space.lr: unknown key 'hihg'"):
        parse_config(raw)
    with pytest.raises(ConfigError, match=r"tune.trails: unknown key \(did you mean 'trials'"):
        parse_config({"data": {"dataset": "tcga-acc"}, "tune": {"trails": 5}})
    ok = parse_config({"data": {"dataset": "tcga-acc"}, "tune": {"space": {"dim": [16, 32]}}})
    assert ok.tune.trials == 20 and ok.tune.inner_folds == 3


def test_declaring_spaces_imports_no_optuna():
    code = (
        "import sys; from polyfuse.models.registry import list_models; list_models(); "
        "from polyfuse.tuning.space import model_space; model_space('healnet'); "
        "import polyfuse.config; print('optuna' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
