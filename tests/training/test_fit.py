import numpy as np
import pandas as pd
import pytest
import torch

from polyfuse.config import TrainingConfig
from polyfuse.data.splits import holdout, strata
from polyfuse.errors import ConfigError
from polyfuse.training.fit import FittedModel, check_hardware, train_model
from polyfuse.training.module import FusionModule

FAST = TrainingConfig(epochs=40, batch_size=32, lr=3e-3, patience=40, progress=False)


def test_model_learns_the_signal(signal_data):
    train, test = signal_data.subset(range(0, 120)), signal_data.subset(range(120, 160))
    fitted = train_model("early", train, training=FAST, hparams={"dim": 16}, seed=0)
    metrics = fitted.evaluate(test, train.targets)
    assert metrics["y"]["auroc"] > 0.8
    assert metrics["os"]["c_index"] > 0.7


def test_best_weights_are_restored(signal_data, tmp_path):
    # a high learning rate and no early stop: the validation loss bottoms out, then rises
    cfg = FAST.model_copy(update={"epochs": 30, "lr": 0.05, "patience": 100})
    fitted = train_model("early", signal_data, training=cfg, seed=3, log_dir=tmp_path)
    log = pd.read_csv(tmp_path / "version_0" / "metrics.csv").dropna(subset=["val_loss"])
    best = log["val_loss"].idxmin()
    assert fitted.best_epoch == int(log.loc[best, "epoch"])
    assert fitted.best_epoch < 29  # otherwise the test proves nothing
    # recompute the validation loss of the returned model on the same validation part
    _, val_idx = holdout(np.arange(len(signal_data)), strata(signal_data), cfg.val_fraction, 3)
    val = fitted.preprocessor.transform(signal_data).subset(val_idx)
    module = FusionModule(fitted.model, fitted.objectives).eval()
    with torch.no_grad():
        loss = float(module.loss(val.batch(np.arange(len(val)))))
    assert loss == pytest.approx(log.loc[best, "val_loss"], rel=1e-4)
    assert loss < log["val_loss"].iloc[-1]


def test_same_seed_same_numbers_other_seed_other_numbers(signal_data):
    cfg = FAST.model_copy(update={"epochs": 5})
    runs = [train_model("late", signal_data, training=cfg, seed=s) for s in (1, 1, 2)]
    preds = [r.predict(signal_data)["os"]["risk"] for r in runs]
    np.testing.assert_array_equal(preds[0], preds[1])
    assert not np.allclose(preds[0], preds[2])


def test_save_load_predict_gives_the_same_numbers(signal_data, tmp_path):
    cfg = FAST.model_copy(update={"epochs": 3})
    fitted = train_model("early", signal_data, training=cfg, hparams={"dim": 8}, seed=0)
    fitted.save(tmp_path)
    again = FittedModel.load(tmp_path)
    assert again.hparams == {"dim": 8} and again.raw_specs == signal_data.specs
    a, b = fitted.predict(signal_data), again.predict(signal_data)
    for task in a:
        for key in a[task]:
            np.testing.assert_array_equal(a[task][key], b[task][key])
    np.testing.assert_array_equal(again.objectives["os"].cuts, fitted.objectives["os"].cuts)


def _weights(fitted: FittedModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in fitted.model.state_dict().items()}


@pytest.mark.parametrize("balancing", ["static", "dtp"])
def test_resume_ends_exactly_like_an_uninterrupted_fit(signal_data, tmp_path, balancing):
    from polyfuse.training.checkpoint import load_checkpoint

    cfg = FAST.model_copy(
        update={"epochs": 2, "checkpoint_every": 1, "balancing": balancing, "patience": 2}
    )
    more = cfg.model_copy(update={"epochs": 6})
    hp = {"dim": 16, "dropout": 0.3}  # dropout: the random state must be restored too
    straight = train_model("early", signal_data, training=more, hparams=hp, seed=0)
    ckpt = tmp_path / "ckpt"
    train_model("early", signal_data, training=cfg, hparams=hp, seed=0, checkpoint_dir=ckpt)
    assert load_checkpoint(ckpt / "last.ckpt")["epoch"] == 2  # epochs completed
    resumed = train_model(
        "early", signal_data, training=more, hparams=hp, seed=0, checkpoint_dir=ckpt, resume=True
    )
    state = load_checkpoint(ckpt / "last.ckpt")
    assert state["epoch"] == 6 and state["global_step"] == 6 * 4  # 6 epochs × 4 batches
    for k, v in _weights(straight).items():
        torch.testing.assert_close(_weights(resumed)[k], v, rtol=0, atol=0, msg=k)
    assert resumed.weight_history == straight.weight_history
    assert resumed.best_epoch == straight.best_epoch
    # nothing to resume yet: starts afresh, like a plain fit
    fresh = train_model(
        "early",
        signal_data,
        training=more,
        hparams=hp,
        seed=0,
        checkpoint_dir=tmp_path / "no",
        resume=True,
    )
    for k, v in _weights(straight).items():
        torch.testing.assert_close(_weights(fresh)[k], v, rtol=0, atol=0, msg=k)


def test_unknown_hyper_parameter_fails_before_training(signal_data):
    with pytest.raises(ConfigError, match="did you mean 'dropout'"):
        train_model("early", signal_data, training=FAST, hparams={"dropuot": 0.2})


def test_model_training_defaults_yield_to_user_settings():
    from polyfuse.models.healnet import HEALNET_TRAINING
    from polyfuse.training.fit import with_model_defaults

    assert with_model_defaults("healnet", {}, TrainingConfig()).lr == 3e-4
    assert with_model_defaults("healnet", {}, TrainingConfig(lr=0.01)).lr == 0.01
    blca = with_model_defaults("healnet", {"preset": "BLCA"}, TrainingConfig(epochs=3))
    assert blca.l1 == HEALNET_TRAINING["blca"]["l1"] and blca.batch_size == 4
    assert blca.epochs == 3  # set by the user
    assert with_model_defaults("early", {}, TrainingConfig()).lr == 1e-3
    synergies = with_model_defaults("synergies", {}, TrainingConfig())
    assert (synergies.lr, synergies.ensemble, synergies.modality_dropout) == (3e-4, 3, 0.2)
    assert with_model_defaults("synergies", {}, TrainingConfig(modality_dropout=0.0)) == (
        synergies.model_copy(update={"modality_dropout": 0.0})
    )
    assert (
        with_model_defaults("synergies", {"preset": "paper"}, TrainingConfig()).modality_dropout
        == 0
    )
    hierarchical = with_model_defaults("hierarchical", {}, TrainingConfig())
    assert (hierarchical.ensemble, hierarchical.batch_size, hierarchical.patience) == (5, 16, 20)
    assert hierarchical.ensemble_validation == "folds"
    assert with_model_defaults("hierarchical", {}, TrainingConfig(batch_size=32)).batch_size == 32
    assert with_model_defaults("hierarchical", {}, TrainingConfig(patience=5)).patience == 5


def test_auxiliary_losses_in_aux_are_added(signal_data):
    fitted = train_model("early", signal_data, training=FAST.model_copy(update={"epochs": 1}))
    module = FusionModule(fitted.model, fitted.objectives)
    batch = fitted.preprocessor.transform(signal_data).batch(np.arange(16))
    with torch.no_grad():
        base = float(module.loss(batch))
    forward = fitted.model.forward

    def with_aux(inputs):
        out = forward(inputs)
        out.aux["loss/extra"] = torch.tensor(2.5)
        return out

    fitted.model.forward = with_aux
    with torch.no_grad():
        assert float(module.loss(batch)) == pytest.approx(base + 2.5, rel=1e-5)


def test_the_optimiser_steps_fused_on_the_cpu(signal_data):
    """One kernel a step, not a Python loop over the parameter tensors (benchmarks/README.md)."""
    fitted = train_model("early", signal_data, training=FAST.model_copy(update={"epochs": 1}))
    optimizer = FusionModule(fitted.model, fitted.objectives).configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True


@pytest.mark.parametrize("balancing", ["dwa", "dtp", "uncertainty", "gradnorm"])
def test_dynamic_balancing_trains_and_logs_task_weights(signal_data, tmp_path, balancing):
    cfg = FAST.model_copy(update={"epochs": 4, "balancing": balancing, "patience": 10})
    fitted = train_model("early", signal_data, training=cfg, seed=0, log_dir=tmp_path)
    log = pd.read_csv(tmp_path / "version_0" / "metrics.csv")
    weights = log[["weight/y", "weight/os"]].dropna()
    assert len(weights) == 4 and np.isfinite(weights.to_numpy()).all()
    assert len(fitted.weight_history) == 4 and set(fitted.weight_history[0]) == {"y", "os"}
    if balancing in ("dwa", "gradnorm"):  # K·softmax: always summing to K = 2
        np.testing.assert_allclose(weights.sum(1), 2.0, rtol=1e-5)
    if balancing == "dwa":  # equal for two epochs, then K·softmax
        assert (weights.iloc[:2] == 1.0).all().all() and not (weights.iloc[2:] == 1.0).all().all()
    else:  # learned log-variances or KPI-driven weights move away from the start
        assert not np.allclose(weights.iloc[-1], weights.iloc[0])
    assert fitted.evaluate(signal_data, signal_data.targets)["y"]["auroc"] > 0.5


def test_multilabel_labels_are_balanced_as_tasks_and_weights_saved(signal_data, tmp_path):
    from polyfuse.data.dataset import MultimodalDataset
    from polyfuse.data.specs import TaskSpec
    from polyfuse.training.weight_history import weight_frame, write_task_weights

    y = signal_data.targets["y"]
    labels = np.stack([y, 1 - y, np.where(np.arange(len(y)) % 3 == 0, np.nan, y)], 1)
    spec = TaskSpec("ph", "multilabel", classes=("pos", "neg", "some"))
    data = MultimodalDataset(
        signal_data.ids,
        signal_data.specs,
        signal_data.sources,
        {"ph": spec},
        {"ph": labels.astype(np.float32)},
    )
    cfg = FAST.model_copy(
        update={"epochs": 3, "balancing": "dtp", "focal_gamma": 2.0, "class_weights": "inverse"}
    )
    fitted = train_model("early", data, training=cfg, seed=0)
    history = fitted.weight_history
    assert [set(h) for h in history] == [{"ph/pos", "ph/neg", "ph/some"}] * 3
    assert history[0] == {"ph/pos": 1.0, "ph/neg": 1.0, "ph/some": 1.0}  # before any KPI
    assert history[-1] != history[0]  # DTP moved them from the validation AUROC per label
    fitted.save(tmp_path)
    loaded = FittedModel.load(tmp_path)
    assert loaded.objectives["ph"].focal_gamma == 2.0
    assert loaded.weight_history == history
    paths = write_task_weights(weight_frame(history), tmp_path)
    assert [p.name for p in paths] == ["balancing.csv", "balancing.png"]
    table = pd.read_csv(tmp_path / "balancing.csv")
    assert list(table.columns) == ["epoch", "term", "weight"] and len(table) == 9
    assert (tmp_path / "balancing.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_a_gpu_fit_without_a_gpu_is_refused_naming_the_key(signal_data, tmp_path):
    cfg = FAST.model_copy(update={"accelerator": "gpu"})
    with pytest.raises(ConfigError, match=r"training\.accelerator is 'gpu'.*sees no CUDA GPU"):
        train_model("early", signal_data, training=cfg, checkpoint_dir=tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()  # refused before the fit began


def test_more_gpus_than_torch_sees_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_hardware(TrainingConfig(accelerator="gpu", devices=1))  # fine
    with pytest.raises(ConfigError, match=r"training\.devices is 2, but torch sees 1 GPU"):
        check_hardware(TrainingConfig(accelerator="gpu", devices=2))
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match="accelerator is 'mps'"):
            check_hardware(TrainingConfig(accelerator="mps"))
