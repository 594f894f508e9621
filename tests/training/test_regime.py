"""The small-data regime every model can train with: learning-rate schedules and modality
dropout (issue #21 item 2)."""

from __future__ import annotations

import math

import pytest
import torch

from polyfuse.config import TrainingConfig, parse_config
from polyfuse.data.dataset import ModalityBatch
from polyfuse.errors import ConfigError
from polyfuse.training.fit import train_model
from polyfuse.training.module import FusionModule, _WarmupCosine

BASE = TrainingConfig(epochs=5, batch_size=32, val_fraction=0.0, progress=False, lr=1e-2)


@pytest.fixture
def learning_rates(monkeypatch):
    """The learning rate of every optimiser step of the fits run in the test."""
    seen: list[float] = []
    original = FusionModule.optimizer_step

    def record(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        seen.append(optimizer.param_groups[0]["lr"])
        return original(self, epoch, batch_idx, optimizer, optimizer_closure)

    monkeypatch.setattr(FusionModule, "optimizer_step", record)
    return seen


def test_constant_schedule_keeps_the_learning_rate(signal_data, learning_rates):
    train_model("early", signal_data, training=BASE, hparams={"dim": 8})
    assert len(learning_rates) == 5 * 5  # 160 samples in batches of 32, 5 epochs
    assert set(learning_rates) == {1e-2}


def test_onecycle_rises_to_lr_and_falls_far_below_it(signal_data, learning_rates):
    cfg = BASE.model_copy(update={"lr_schedule": "onecycle"})
    train_model("early", signal_data, training=cfg, hparams={"dim": 8})
    steps = len(learning_rates)
    assert steps == 25
    peak = max(range(steps), key=learning_rates.__getitem__)
    assert learning_rates[0] == pytest.approx(1e-2 / 25)  # torch's div_factor
    assert learning_rates[peak] == pytest.approx(1e-2, rel=0.05)
    assert 0.2 * steps <= peak <= 0.4 * steps  # pct_start 0.3
    assert learning_rates[-1] < 1e-2 / 1000


def test_cosine_warms_up_then_decays_by_hand(signal_data, learning_rates):
    cfg = BASE.model_copy(update={"lr_schedule": "cosine", "warmup_epochs": 1})
    train_model("early", signal_data, training=cfg, hparams={"dim": 8})
    total, warmup = 25, 5  # one epoch of five steps
    want = [1e-2 * (k + 1) / warmup for k in range(warmup)]
    want += [
        1e-2 * 0.5 * (1 + math.cos(math.pi * (k - warmup) / (total - warmup)))
        for k in range(warmup, total)
    ]
    assert learning_rates == pytest.approx(want, rel=1e-6)


def test_a_scheduled_fit_resumes_from_its_checkpoint(signal_data, tmp_path):
    """The scheduler's state goes through the safetensors + JSON checkpoint and back."""
    cfg = BASE.model_copy(
        update={"lr_schedule": "cosine", "warmup_epochs": 1, "checkpoint_every": 1}
    )
    straight = train_model("early", signal_data, training=cfg, hparams={"dim": 8})
    ckpt = tmp_path / "ckpt"
    train_model("early", signal_data, training=cfg, hparams={"dim": 8}, checkpoint_dir=ckpt)
    resumed = train_model(
        "early", signal_data, training=cfg, hparams={"dim": 8}, checkpoint_dir=ckpt, resume=True
    )
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=0, atol=0, msg=k)


def test_warmup_cosine_factor():
    f = _WarmupCosine(warmup=2, total=6)
    assert [f(k) for k in range(7)] == pytest.approx(
        [
            0.5,
            1.0,
            1.0,
            0.5 * (1 + math.cos(math.pi / 4)),
            0.5,
            0.5 * (1 + math.cos(3 * math.pi / 4)),
            0.0,
        ]
    )


def _inputs(present: list[list[bool]]) -> dict[str, ModalityBatch]:
    return {
        m: ModalityBatch(torch.ones(len(p), 3), torch.tensor(p))
        for m, p in zip("abc", present, strict=True)
    }


def test_modality_dropout_drops_present_modalities_and_keeps_one_per_sample():
    module = FusionModule.__new__(FusionModule)
    module.modality_dropout = 0.5
    n = 4000
    torch.manual_seed(0)
    present = torch.rand(3, n) < 0.8
    present[0] |= ~present.any(0)  # a sample has at least one modality (the loader's rule)
    present[:, 0] = torch.tensor([True, False, False])  # one modality only: never dropped
    out = module._drop_modalities(_inputs(present.tolist()))
    kept = torch.stack([out[m].present for m in "abc"])
    assert not (kept & ~present).any()  # an absent modality never comes back
    assert kept.any(0).all()  # every sample keeps at least one
    assert kept[:, 0].tolist() == [True, False, False]
    # among samples with all three, each goes with p 0.5 and the all-gone draws (1/8) are
    # undone: E[dropped] = 3 · 0.5 − 3 · 1/8 = 1.125 of 3 modalities, a rate of 0.375
    full = present.all(0)
    rate = 1 - kept[:, full].float().mean()
    assert float(rate) == pytest.approx(0.375, abs=0.02)


def test_modality_dropout_changes_training_only(signal_data):
    plain = train_model("early", signal_data, training=BASE, hparams={"dim": 8})
    cfg = BASE.model_copy(update={"modality_dropout": 0.4})
    dropped = train_model("early", signal_data, training=cfg, hparams={"dim": 8})
    differ = any(
        not torch.equal(v, dropped.model.state_dict()[k])
        for k, v in plain.model.state_dict().items()
    )
    assert differ  # the training saw other inputs
    again = train_model("early", signal_data, training=cfg, hparams={"dim": 8})
    for k, v in dropped.model.state_dict().items():  # seeded: the same draws again
        torch.testing.assert_close(again.model.state_dict()[k], v, rtol=0, atol=0, msg=k)


@pytest.mark.parametrize(
    ("key", "value"), [("lr_schedule", "cosin"), ("modality_dropout", 1.0), ("warmup_epochs", -1)]
)
def test_bad_regime_settings_are_refused_naming_the_key(key, value):
    raw = {"data": {"dataset": "tcga-acc"}, "training": {key: value}}
    with pytest.raises(ConfigError, match=rf"training\.{key}"):
        parse_config(raw)


@pytest.mark.parametrize(
    ("monitor", "key", "pick"), [("loss", "val_loss", min), ("metric", "val_metric", max)]
)
def test_early_stopping_and_best_weights_watch_the_chosen_monitor(
    signal_data, monkeypatch, monitor, key, pick
):
    """`monitor: metric` keeps the epoch of the best mean primary validation metric (it did
    nothing before: the setting was read by no one)."""
    from polyfuse.training.callbacks import BestWeights

    seen: dict[int, dict[str, float]] = {}
    original = BestWeights.on_validation_end

    def record(self, trainer, module):
        seen[trainer.current_epoch] = {k: float(v) for k, v in trainer.callback_metrics.items()}
        return original(self, trainer, module)

    monkeypatch.setattr(BestWeights, "on_validation_end", record)
    cfg = TrainingConfig(
        epochs=12, batch_size=32, val_fraction=0.3, patience=12, progress=False, monitor=monitor
    )
    fitted = train_model("early", signal_data, training=cfg, hparams={"dim": 8})
    values = {epoch: m[key] for epoch, m in seen.items()}
    assert len(values) == 12
    assert fitted.best_epoch == pick(values, key=values.get)
    if monitor == "metric":
        assert all(0.0 <= v <= 1.0 for v in values.values())
        assert len(set(values.values())) > 1  # it moves with training
