"""Callbacks: the best weights kept in memory, and what a resumed fit needs to continue exactly
as an uninterrupted one (random state, the early-stopping verdict)."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch


class BestWeights(L.Callback):
    """Remember the model's weights at the best value of `monitor` (the validation loss, or
    with `mode="max"` a validation metric); restore them when fit ends.

    Kept in memory (no checkpoint file rewritten each epoch); part of a Lightning checkpoint,
    so a resumed fit still knows its best weights. Only the model (`module.model` when the
    module wraps one) is restored: the training state around it keeps its full history.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min") -> None:
        self.monitor = monitor
        self.sign = 1.0 if mode == "min" else -1.0  # compare sign · value, smaller is better
        self.best = math.inf
        self.best_epoch = -1
        self.state: dict[str, Any] | None = None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = self.sign * float(value)
        if value < self.best:
            self.best, self.best_epoch = value, trainer.current_epoch
            self.state = copy.deepcopy(_net(module).state_dict())

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.state is not None:
            _net(module).load_state_dict(self.state)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "state": self.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.state = state["best"], state["best_epoch"], state["state"]


def _net(module: L.LightningModule) -> torch.nn.Module:
    return getattr(module, "model", module)


class RandomState(L.Callback):
    """Saves torch's global random state in each checkpoint and restores it on resume, so that
    dropout and every other random draw continue as in an uninterrupted fit."""

    def state_dict(self) -> dict[str, Any]:
        return {"torch": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])


class ResumableEarlyStopping(L.pytorch.callbacks.EarlyStopping):
    """Early stopping that also stops a resumed fit whose checkpoint had already run out of
    patience (Lightning's own would train at least one more epoch)."""

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.wait_count >= self.patience:
            trainer.should_stop = True


class EpochEnd(L.Callback):
    """Calls `module.end_epoch()` at the end of each training epoch, before any checkpoint of
    that epoch is written (Lightning runs checkpoint callbacks last, and a module's own
    `on_train_epoch_end` after every callback)."""

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        module.end_epoch()


class ResumeCheckpoint(L.pytorch.callbacks.Checkpoint):
    """The resume checkpoint `dirpath/last.ckpt`: written at the end of every `every`-th
    training epoch, and once more when the fit ends (then it holds the finished fit).

    Lightning's `ModelCheckpoint(save_top_k=0, save_last=True, every_n_epochs=k)` cannot say
    this: before 2.6 it wrote `last` after every epoch whatever `every_n_epochs` was; from 2.6
    it writes `last` only on a step where it also saved a top-k checkpoint, so with
    `save_top_k=0` only when the fit ends, and a killed fit restarted from scratch. Being a
    `Checkpoint`, this callback runs after every other callback and after the module's own
    `on_train_epoch_end` (and after that epoch's validation), so the checkpoint holds the
    epoch's balancer update, best weights and early-stopping verdict.
    """

    def __init__(self, dirpath: Path, every: int) -> None:
        if every < 1:
            raise ValueError(f"checkpoint interval must be at least 1 epoch, got {every}")
        self.path = Path(dirpath) / "last.ckpt"
        self.every = every

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every == 0:  # current_epoch: the one just trained
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        trainer.save_checkpoint(self.path)  # every process calls it; rank 0 writes
