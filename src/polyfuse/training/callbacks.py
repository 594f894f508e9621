"""Callbacks: keep the best weights in memory and restore them at the end of training."""

from __future__ import annotations

import copy
import math
from typing import Any

import lightning as L


class BestWeights(L.Callback):
    """Remember the model's weights at the best validation loss; restore them when fit ends.

    Kept in memory (no checkpoint file rewritten each epoch); part of a Lightning checkpoint,
    so a resumed fit still knows its best weights.
    """

    def __init__(self, monitor: str = "val_loss") -> None:
        self.monitor = monitor
        self.best = math.inf
        self.best_epoch = -1
        self.state: dict[str, Any] | None = None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        if value < self.best:
            self.best, self.best_epoch = value, trainer.current_epoch
            self.state = copy.deepcopy(module.state_dict())

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.state is not None:
            module.load_state_dict(self.state)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "state": self.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.state = state["best"], state["best_epoch"], state["state"]
