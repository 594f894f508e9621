"""The engine's epoch-level logging and its own optimiser step (issue #17 item 2): the logged
losses are the weighted means Lightning's per-step `self.log` gave, every batch takes an
optimiser step, and what nobody reads is neither logged nor kept."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from polyfuse.config import TrainingConfig
from polyfuse.data import sampling
from polyfuse.training import fit as fit_module
from polyfuse.training.callbacks import NoProfiler, RandomState, ResumableEarlyStopping
from polyfuse.training.fit import _callbacks, train_model
from polyfuse.training.module import EpochMean, FusionModule

CFG = TrainingConfig(epochs=3, batch_size=48, lr=3e-3, patience=3, progress=False)


def test_epoch_mean_weights_each_step_by_its_batch_size():
    mean = EpochMean()
    assert mean.count == 0 and float(mean.value()) == 0.0
    for loss, n in [(1.0, 4), (2.0, 4), (4.0, 2)]:
        mean.add(torch.tensor(loss, requires_grad=True), n)
    assert mean.count == 10
    value = mean.value()
    assert float(value) == pytest.approx((4 + 8 + 8) / 10)  # 2.0; the plain mean is 2.33
    assert not value.requires_grad
    mean.reset()
    assert mean.count == 0 and float(mean.value()) == 0.0


def test_epoch_mean_sums_in_float32_like_lightning():
    mean = EpochMean()
    mean.add(torch.tensor(0.1, dtype=torch.float16), 3)
    assert mean.value().dtype == torch.float32
    wide = EpochMean()
    wide.add(torch.tensor(0.1, dtype=torch.float64), 3)
    assert wide.value().dtype == torch.float64


def _steps(monkeypatch) -> list[tuple[int, float, int]]:
    """(epoch, training loss, batch size) of every training step of the fits in the test."""
    seen: list[tuple[int, float, int]] = []
    original = FusionModule.training_step

    def record(self, batch, batch_idx):
        loss = original(self, batch, batch_idx)
        seen.append((self.current_epoch, float(loss.detach()), len(batch)))
        return loss

    monkeypatch.setattr(FusionModule, "training_step", record)
    return seen


def test_logged_training_loss_is_the_batch_weighted_mean_of_the_steps(
    signal_data, tmp_path, monkeypatch
):
    steps = _steps(monkeypatch)
    train_model("early", signal_data, training=CFG, hparams={"dim": 8}, seed=0, log_dir=tmp_path)
    log = pd.read_csv(tmp_path / "version_0" / "metrics.csv")
    logged = log.dropna(subset=["train_loss"]).set_index("epoch")["train_loss"]
    assert list(logged.index) == [0, 1, 2]
    for epoch, value in logged.items():
        mine = [(loss, n) for e, loss, n in steps if e == epoch]
        assert [n for _, n in mine] == [48, 48, 32]  # 128 training samples: unequal batches
        weighted = sum(loss * n for loss, n in mine) / sum(n for _, n in mine)
        assert value == pytest.approx(weighted, rel=1e-6)
        assert value != pytest.approx(np.mean([loss for loss, _ in mine]), rel=1e-6)
    assert {"val_loss", "weight/y", "weight/os"} <= set(log.columns)


def test_logged_validation_loss_is_the_loss_of_the_whole_validation_part(
    signal_data, tmp_path, monkeypatch
):
    """Validation in batches of 10 (10, 10, 10, 2): the logged loss is still the loss over all
    32 samples, which an unweighted mean of the four batches is not."""
    from polyfuse.data.splits import holdout, strata

    monkeypatch.setattr(fit_module, "PREDICT_BATCH", 10)
    cfg = CFG.model_copy(update={"epochs": 1})
    fitted = train_model("early", signal_data, training=cfg, seed=0, log_dir=tmp_path)
    logged = pd.read_csv(tmp_path / "version_0" / "metrics.csv")["val_loss"].dropna()
    _, val_idx = holdout(np.arange(len(signal_data)), strata(signal_data), cfg.val_fraction, 0)
    val = fitted.preprocessor.transform(signal_data).subset(val_idx)
    module = FusionModule(fitted.model, fitted.objectives).eval()
    with torch.no_grad():
        whole = float(module.loss(val.batch(np.arange(len(val)))))
        parts = [
            float(module.loss(val.batch(np.arange(s, min(s + 10, 32))))) for s in (0, 10, 20, 30)
        ]
    assert logged.tolist() == [pytest.approx(whole, rel=1e-5)]
    assert whole != pytest.approx(np.mean(parts), rel=1e-5)


def test_without_a_logger_only_what_early_stopping_watches_is_logged(signal_data, monkeypatch):
    names: list[str] = []
    original = FusionModule.log

    def record(self, name, *args, **kwargs):
        names.append(name)
        return original(self, name, *args, **kwargs)

    kept: list[int] = []  # the steps' losses still held once an epoch ends
    end_epoch = FusionModule.end_epoch

    def ended(self):
        end_epoch(self)
        kept.append(self._train_loss.count)

    monkeypatch.setattr(FusionModule, "log", record)
    monkeypatch.setattr(FusionModule, "end_epoch", ended)
    fitted = train_model("early", signal_data, training=CFG, hparams={"dim": 8}, seed=0)
    assert names == ["val_loss"] * 3
    assert kept == [0, 0, 0]
    assert len(fitted.weight_history) == 3  # still recorded, for balancing.csv


class _Trainer:
    def __init__(self, world_size: int) -> None:
        self.world_size = world_size


@pytest.mark.parametrize(("world_size", "weight"), [(1, 1), (2, 10)])
def test_an_epoch_mean_is_logged_for_lightning_to_average_over_processes(
    signal_data, monkeypatch, world_size, weight
):
    """One process: the mean itself, weight 1 (exactly what Lightning's sum / count gave).
    Several: weighted by the process's sample count and synced, so that Lightning's reduction
    is the mean over every process's samples."""
    from polyfuse.models.registry import create_model
    from polyfuse.tasks.objective import TaskObjective

    objectives = torch.nn.ModuleDict(
        {t: TaskObjective(s).fit(signal_data.targets[t]) for t, s in signal_data.tasks.items()}
    )
    module = FusionModule(create_model("early", signal_data.specs, signal_data.tasks), objectives)
    calls: list[tuple[str, float, dict]] = []
    monkeypatch.setattr(
        FusionModule, "log", lambda self, name, value, **kw: calls.append((name, float(value), kw))
    )
    module._trainer = _Trainer(world_size)
    mean = EpochMean()
    mean.add(torch.tensor(1.0), 6)
    mean.add(torch.tensor(3.0), 4)
    module._log_mean("val_loss", mean)
    assert calls == [
        (
            "val_loss",
            pytest.approx(1.8),
            {"on_step": False, "on_epoch": True, "batch_size": weight, "sync_dist": True},
        )
    ]
    assert mean.count == 0  # reset for the next epoch
    calls.clear()
    module._log_mean("val_loss", mean)  # nothing this epoch: only a distributed run logs
    assert len(calls) == (world_size > 1)


def test_every_batch_takes_an_optimiser_step_even_without_a_known_target(signal_data, monkeypatch):
    """As Lightning's automatic step did for a training_step returning None: the step count
    and a per-step schedule advance, the weights do not move for that batch."""
    y = signal_data.targets["y"].copy()
    y[: len(y) // 2] = np.nan  # with a sequential order, whole batches have no known target
    data = signal_data.replace(tasks={"y": signal_data.tasks["y"]}, targets={"y": y})
    steps: list[tuple[int, float]] = []
    still: list[bool] = []  # a batch without a target leaves the weights as they were
    original = FusionModule.optimizer_step

    def record(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        steps.append((batch_idx, optimizer.param_groups[0]["lr"]))
        before = [p.detach().clone() for p in self.parameters()]
        out = original(self, epoch, batch_idx, optimizer, optimizer_closure)
        if batch_idx < 10:
            still.append(
                all(torch.equal(a, p) for a, p in zip(before, self.parameters(), strict=True))
            )
        return out

    monkeypatch.setattr(FusionModule, "optimizer_step", record)
    monkeypatch.setattr(  # batches in row order: the first ten hold no known target
        sampling.ShuffledBatches,
        "__iter__",
        lambda self: iter([list(range(s, min(s + 8, self.n))) for s in range(0, self.n, 8)]),
    )
    cfg = TrainingConfig(
        epochs=2, batch_size=8, val_fraction=0.0, lr=1e-2, lr_schedule="onecycle", progress=False
    )
    train_model("early", data, training=cfg, hparams={"dim": 8}, seed=0)
    assert [b for b, _ in steps] == list(range(20)) * 2  # 160 samples, 20 batches, 2 epochs
    lrs = [lr for _, lr in steps]  # the one-cycle schedule moved at every step
    assert all(a != b for a, b in itertools.pairwise(lrs))
    assert still == [True] * 20


def test_only_a_checkpointing_fit_carries_the_random_state():
    def kinds(checkpoint_dir):
        return {type(c) for c in _callbacks(CFG, True, checkpoint_dir)[0]}

    assert RandomState not in kinds(None)
    assert RandomState in kinds("somewhere")


def test_the_early_stopping_key_is_lightnings_and_made_once():
    from lightning.pytorch.callbacks import EarlyStopping

    stopping = ResumableEarlyStopping("val_metric", mode="max")
    key = EarlyStopping.state_key.fget(stopping)  # as Lightning makes it: checkpoints keep it
    assert (
        stopping.state_key
        == key
        == "ResumableEarlyStopping{'monitor': 'val_metric', 'mode': 'max'}"
    )
    assert stopping.state_key is stopping.state_key


def test_the_profiler_hands_back_one_context_that_does_nothing():
    profiler = NoProfiler()
    with profiler.profile("a") as entered:
        assert entered is None
    assert profiler.profile("a") is profiler.profile("b")
    assert profiler.summary() == ""


def test_the_l1_penalty_is_trained_on(signal_data):
    """`extra` (auxiliary losses + L1) joins the optimised loss when there is any."""

    def l1_norm(l1: float) -> float:
        cfg = CFG.model_copy(update={"epochs": 5, "batch_size": 16, "l1": l1, "patience": 5})
        fitted = train_model("early", signal_data, training=cfg, hparams={"dim": 8}, seed=0)
        return float(sum(p.detach().abs().sum() for p in fitted.model.parameters()))

    assert l1_norm(0.1) < 0.9 * l1_norm(0.0)
