"""Callbacks: the best weights kept in memory, and what a resumed fit needs to continue exactly
as an uninterrupted one (random state, the early-stopping verdict); and a profiler that does
nothing, cheaply."""

from __future__ import annotations

import contextlib
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
            # a new dict (with its modules' versions) of detached tensors: cloning each is a
            # deep copy without deepcopy's per-object bookkeeping (a tenth of a small fit)
            state = _net(module).state_dict()
            for k, v in state.items():
                state[k] = v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
            self.state = state

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.state is not None:
            _net(module).load_state_dict(self.state)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "state": self.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.state = state["best"], state["best_epoch"], state["state"]


def _net(module: L.LightningModule) -> torch.nn.Module:
    return getattr(module, "model", module)


class AveragedWeights(L.Callback):
    """An average of the model's weights (EMA or SWA) that validation, the best weights and the
    fit's result see instead of the last step's.

    `torch.optim.swa_utils.AveragedModel` keeps the average of the parameters (buffers are
    fixed task state, not averaged). "ema" updates it after every optimiser step from epoch
    `start`; "swa" adds the weights at the end of every epoch from `start` with equal weight.
    For validation the average is swapped into the model and swapped back at
    `on_validation_end`, so a `BestWeights` listed *before* this callback keeps the averaged
    weights it scored. Lightning's own `WeightAveraging` swaps back at the end of the
    validation epoch, before `BestWeights` runs, which would keep raw weights scored as
    averaged ones. Until the first update there is no average, and the raw weights stand.
    """

    def __init__(self, kind: str, decay: float = 0.9, start: int = 0) -> None:
        if kind not in ("ema", "swa"):
            raise ValueError(f"weight averaging is 'ema' or 'swa', not {kind!r}")
        self.kind, self.decay, self.start = kind, decay, start
        self.average: Any = None
        self._pending: dict[str, Any] | None = None
        self._swapped = self._validated = False

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        if stage != "fit" or self.average is not None:
            return
        averaging = get_ema_multi_avg_fn(self.decay) if self.kind == "ema" else None
        self.average = AveragedModel(_net(module), multi_avg_fn=averaging, use_buffers=False)
        if self._pending is not None:
            self.load_state_dict(self._pending)

    @property
    def ready(self) -> bool:
        return self.average is not None and int(self.average.n_averaged) > 0

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *_: Any) -> None:
        if self.kind == "ema" and trainer.current_epoch >= self.start:
            self.average.update_parameters(_net(module))

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.kind == "swa" and trainer.current_epoch >= self.start:
            self.average.update_parameters(_net(module))

    def on_validation_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.ready and not trainer.sanity_checking:
            self._swap(module)
            self._validated = True

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self._swapped:
            self._swap(module)

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Without a validated average (so no best weights of it), the model ends as the
        average. Not at `on_train_end`: the last resume checkpoint, written then, must hold
        the raw weights training continues from."""
        if self.ready and not self._validated:
            for mine, theirs in zip(
                _params(self.average.module), _params(_net(module)), strict=True
            ):
                theirs.copy_(mine)

    def _swap(self, module: L.LightningModule) -> None:
        with torch.no_grad():
            for mine, theirs in zip(
                _params(self.average.module), _params(_net(module)), strict=True
            ):
                kept = theirs.clone()
                theirs.copy_(mine)
                mine.copy_(kept)
        self._swapped = not self._swapped

    def state_dict(self) -> dict[str, Any]:
        return {} if self.average is None else self.average.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.average is None:  # restored before setup: applied once the average exists
            self._pending = state
            return
        self.average.load_state_dict(state)


def _params(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.data for p in net.parameters()]


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

    @property
    def state_key(self) -> str:
        """Lightning's key (from `monitor` and `mode`, which never change), made once: Lightning
        formats it around every hook it calls on this callback, thousands of times a fit."""
        key = self.__dict__.get("_key")
        if key is None:
            key = self._key = super().state_key
        return key


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


class NoProfiler(L.pytorch.profilers.Profiler):
    """Lightning's default `PassThroughProfiler` records nothing either, but enters a
    generator-based context manager around every hook call and fetch (~45,000 in a 500-step
    fit, 3 % of its time); this one hands back one reusable no-op context."""

    _nothing = contextlib.nullcontext()

    def start(self, action_name: str) -> None:
        pass

    def stop(self, action_name: str) -> None:
        pass

    def summary(self) -> str:
        return ""

    def profile(self, action_name: str) -> contextlib.nullcontext:  # type: ignore[override]
        return self._nothing
