"""FitSettings: the public keywords and a settings value fit the same model; a config and the
derived settings of a fold or trial carry exactly what they should."""

import numpy as np
import pytest

from polyfuse.config import PreprocessConfig, TrainingConfig, parse_config
from polyfuse.training.fit import fit_model, train_model
from polyfuse.training.settings import FitSettings

FAST = TrainingConfig(epochs=3, batch_size=32, lr=3e-3, progress=False)


def test_keywords_and_settings_fit_the_same_model(signal_data):
    keywords = dict(
        hparams={"dim": 8},
        training=FAST,
        preprocess=PreprocessConfig(missing_indicator=True),
        task_weights={"y": 2.0},
        seed=3,
    )
    a = train_model("early", signal_data, **keywords)
    b = fit_model("early", signal_data, FitSettings(**keywords))
    other = fit_model("early", signal_data, FitSettings(**{**keywords, "task_weights": None}))
    risk = [m.predict(signal_data)["os"]["risk"] for m in (a, b, other)]
    np.testing.assert_array_equal(risk[0], risk[1])
    assert not np.allclose(risk[0], risk[2])  # the task weights reached the fit
    assert a.hparams == b.hparams == {"dim": 8}


def test_defaults_are_the_keywords_defaults():
    settings = FitSettings.of()
    assert settings == FitSettings(
        hparams={}, training=TrainingConfig(), preprocess=PreprocessConfig(), seed=0
    )
    assert settings.task_weights is None


def test_from_config_reads_the_experiment():
    config = parse_config(
        {
            "data": {
                "dataset": "tcga-acc",
                "tasks": {
                    "os": {"type": "survival", "time_column": "t", "event_column": "e"},
                    "grade": {"type": "binary", "column": "g", "weight": 0.5},
                },
            },
            "model": {"name": "early", "params": {"dim": 8}},
            "training": {"epochs": 3},
            "preprocess": {"scale": False},
            "seed": 5,
        }
    )
    settings = FitSettings.from_config(config)
    assert settings.hparams == {"dim": 8}
    assert settings.training.epochs == 3 and not settings.preprocess.scale
    assert settings.task_weights == {"os": 1.0, "grade": 0.5}
    assert settings.seed == 5


def test_a_fold_derives_its_settings_without_changing_the_runs():
    run = FitSettings.of({"dim": 8}, FAST.model_copy(update={"progress": True}), seed=1)
    fold = run.quiet().replace(seed=run.seed + 2)
    assert (fold.seed, fold.training.progress, fold.hparams) == (3, False, {"dim": 8})
    assert (run.seed, run.training.progress) == (1, True)
    with pytest.raises(AttributeError):
        run.seed = 4  # type: ignore[misc]
