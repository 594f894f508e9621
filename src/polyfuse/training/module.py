"""The LightningModule: owns losses, loss balancing, the L1 penalty and the optimiser; the model
stays plain."""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from polyfuse.data.dataset import Batch, ModalityBatch
from polyfuse.models.model import ModelOutput, MultimodalModel
from polyfuse.tasks.balancing import BALANCERS, LossBalancer, build_balancer


class FusionModule(L.LightningModule):
    """Trains any `MultimodalModel` on its balanced task losses, plus the model's auxiliary
    losses (scalars in `aux` under keys "loss/<name>") and an optional L1 penalty.

    Loss balancing sees one *term* per task, and one per label of a multilabel task
    (`TaskObjective.terms`); a task's static weight is shared equally by its terms.

    Args:
        model: the plain PyTorch model.
        objectives: one `TaskObjective` per task, already fitted on the training targets.
        task_weights: static weight of each task's loss (1 when absent).
        lr, weight_decay: AdamW settings.
        l1: strength of an L1 penalty on all model parameters (HEALNet uses one).
        balancing: how the terms are combined in training: "static" (`task_weights`),
            "uncertainty", "dwa", "dtp" or "gradnorm" (`tasks/balancing.py`), with
            `balancing_options` passed to the balancer (e.g. DTP's `gamma`, DWA's
            `temperature`, GradNorm's `alpha`). DTP's KPI per term is its validation primary
            metric (c-index, AUROC, R² clipped to [0, 1]); GradNorm's shared parameters are
            all model parameters outside the task heads. The validation loss that early
            stopping watches always uses the static weights, so its scale does not drift.
        lr_schedule: "constant"; "onecycle" (`torch.optim.lr_scheduler.OneCycleLR` up to `lr`
            and down over every step the fit may take, as HEALNet's reference trains); or
            "cosine" (linear warm-up over `warmup_epochs`, then cosine decay to 0 by the last
            epoch). The schedule spans `training.epochs`: early stopping may end it sooner.
        monitor: what early stopping and the best weights watch: "loss" (the static
            validation loss, `val_loss`) or "metric" (`val_metric`: the mean over terms of each
            task's primary validation metric as a KPI in [0, 1], higher is better; c-index,
            AUROC, R² clipped), for small cohorts whose validation loss is too noisy to stop on.
        modality_dropout: in training only, the probability that each present modality of a
            sample is made absent for a step; a sample keeps every modality on a step where
            all of them would go. It trains the model for the missing inputs of real cohorts
            and acts as a regulariser on small ones.
    """

    def __init__(
        self,
        model: MultimodalModel,
        objectives: nn.ModuleDict,
        *,
        task_weights: dict[str, float] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        l1: float = 0.0,
        balancing: str = "static",
        balancing_options: dict[str, Any] | None = None,
        lr_schedule: str = "constant",
        warmup_epochs: int = 0,
        modality_dropout: float = 0.0,
        monitor: str = "loss",
    ) -> None:
        super().__init__()
        self.model = model
        self.lr_schedule, self.warmup_epochs = lr_schedule, warmup_epochs
        self.modality_dropout = modality_dropout
        self.monitor = monitor
        self._last_kpis: dict[str, float] | None = None
        self.objectives = objectives
        weights = {t: (task_weights or {}).get(t, 1.0) for t in objectives}
        self.term_weights = {
            term: weights[t] / len(obj.terms) for t, obj in objectives.items() for term in obj.terms
        }
        self.lr, self.weight_decay, self.l1 = lr, weight_decay, l1
        options = dict(balancing_options or {})
        if balancing == "static":
            options.setdefault("weights", self.term_weights)
        if BALANCERS.get(balancing, LossBalancer).needs_shared:
            heads = {id(p) for p in model.heads.parameters()}
            options["shared"] = [p for p in model.parameters() if id(p) not in heads]
        self.balancer = build_balancer(balancing, list(self.term_weights), **options)
        self.weight_history: list[dict[str, float]] = []
        self._epoch_losses: dict[str, list[Tensor]] = {}
        self._train_loss, self._val_loss = EpochMean(), EpochMean()
        self._val_outputs: list[tuple[dict[str, Tensor], dict[str, Tensor]]] = []
        self.automatic_optimization = False  # `training_step` takes the optimiser step

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets `_current_fx_name` twice around every hook it calls (~15,000 times in
        # a 500-step fit); a string needs none of nn.Module's checks for parameters and modules
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, batch: Batch) -> ModelOutput:
        return self.model(batch.inputs)

    def task_losses(self, batch: Batch) -> tuple[dict[str, Tensor], Tensor, ModelOutput]:
        """The loss of every term with a known target in the batch, and the model's auxiliary
        losses plus L1 (task-independent)."""
        losses, extra, out = self._task_losses(batch)
        return losses, torch.as_tensor(extra), out

    def _task_losses(self, batch: Batch) -> tuple[dict[str, Tensor], Tensor | int, ModelOutput]:
        """`task_losses` with `extra` the number 0 when there is nothing to add."""
        out = self.model(batch.inputs)
        losses: dict[str, Tensor] = {}
        for t, obj in self.objectives.items():
            losses |= obj.loss_terms(out.logits[t], batch.targets[t])
        extra = sum(v for k, v in out.aux.items() if k.startswith("loss/"))
        if self.l1:
            extra = extra + self.l1 * sum(p.abs().sum() for p in self.model.parameters())
        return losses, extra, out

    def _static(self, losses: dict[str, Tensor], extra: Tensor) -> Tensor:
        return sum((self.term_weights[k] * v for k, v in losses.items()), extra)

    def loss(self, batch: Batch) -> Tensor:
        """The static objective: Σ term_weight · loss + auxiliary losses + L1."""
        losses, extra, _ = self.task_losses(batch)
        return self._static(losses, extra)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        """One optimiser step, in the order of Lightning's automatic optimisation (loss,
        zero_grad, backward, step, then a per-step learning-rate schedule) without its
        per-step closure and hooks. A batch with no known target steps on no gradient (the
        step count and the schedule still advance), as an automatic step that returns None."""
        if self.modality_dropout:
            batch = dataclasses.replace(batch, inputs=self._drop_modalities(batch.inputs))
        losses, extra, _ = self._task_losses(batch)
        loss = None
        if losses:
            for t, v in losses.items():
                self._epoch_losses.setdefault(t, []).append(v.detach())
            loss = self.balancer(losses)
            if isinstance(extra, Tensor):  # adding the number 0 would change nothing but time
                loss = loss + extra
            self._check_finite(loss, losses, extra, batch_idx)
            self._train_loss.add(loss, len(batch))  # logged once, at the end of the epoch
        optimizer, epoch = self.optimizers(), self.current_epoch
        self.optimizer_zero_grad(epoch, batch_idx, optimizer)  # the hooks a subclass may override
        if loss is not None:
            self.manual_backward(loss)
        self.optimizer_step(epoch, batch_idx, optimizer)
        scheduler = self.lr_schedulers()
        if scheduler is not None:  # "onecycle" and "cosine" step every optimiser step
            scheduler.step()
        return loss

    def _drop_modalities(self, inputs: dict[str, ModalityBatch]) -> dict[str, ModalityBatch]:
        """Each present modality of each sample absent with probability `modality_dropout`,
        unless that would leave the sample with none (then it keeps them all)."""
        present = torch.stack([b.present for b in inputs.values()])  # (M, B)
        drop = present & (torch.rand(present.shape, device=present.device) < self.modality_dropout)
        kept = present & ~drop
        kept = torch.where(kept.any(0, keepdim=True), kept, present)
        return {
            m: dataclasses.replace(b, present=kept[i]) for i, (m, b) in enumerate(inputs.items())
        }

    def _check_finite(
        self, loss: Tensor, losses: dict[str, Tensor], extra: Tensor | int, batch_idx: int
    ) -> None:
        """Stop on a non-finite training loss, naming its source. Under DDP every process
        learns that one of them failed and stops too (none is left waiting). fp16 mixed
        precision is exempt: its loss scaler skips such steps by design."""
        trainer = self._trainer
        if trainer is not None and trainer.precision == "16-mixed":
            return
        local = not bool(torch.isfinite(loss))
        failed = local
        if trainer is not None and trainer.world_size > 1:
            failed = trainer.strategy.reduce_boolean_decision(local, all=False)
        if not failed:
            return
        from polyfuse.errors import DataError

        bad = [t for t, v in losses.items() if not torch.isfinite(v)]
        what = (
            "another process's batch"
            if not local
            else f"task(s) {', '.join(repr(t) for t in bad)}"
            if bad
            else "the auxiliary losses or L1 penalty"
            if not torch.isfinite(torch.as_tensor(extra))
            else f"the '{type(self.balancer).__name__}' loss balancing"
        )
        raise DataError(
            f"the training loss became {float(loss.detach())} at epoch {self.current_epoch}, "
            f"batch {batch_idx}, from {what}: values too large for float32 (rescale the "
            "feature or target columns, keep preprocess.scale on) or a diverging optimiser "
            "(lower training.lr)"
        )

    def on_train_epoch_end(self) -> None:
        self.end_epoch()

    def end_epoch(self) -> None:
        """Log this epoch's training loss and task weights and let the balancer update them.
        Lightning runs this hook after the other callbacks' and before the checkpoint's, so a
        checkpoint of this epoch holds the updated state. Without a logger nobody reads the
        training loss or the weights (early stopping watches validation values): not logged."""
        logged = self._trainer is not None and self._trainer.logger is not None
        if logged:
            self._log_mean("train_loss", self._train_loss)
        self._train_loss.reset()
        means = {t: float(torch.stack(v).mean()) for t, v in self._epoch_losses.items()}
        self._epoch_losses = {}
        weights = self.balancer.weights()  # the weights this epoch trained with
        self.weight_history.append(weights)
        for t, w in weights.items() if logged else ():
            self.log(f"weight/{t}", w, on_step=False, on_epoch=True, sync_dist=True)
        kpis = self._last_kpis if self.balancer.needs_kpis else None  # None: DTP waits
        self._last_kpis = None
        if kpis is not None or len(means) == len(self.term_weights):  # DWA needs every loss
            self.balancer.epoch_end(kpis, means)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        losses, extra, out = self.task_losses(batch)
        self._val_loss.add(self._static(losses, extra), len(batch))
        if self.balancer.needs_kpis or self.monitor == "metric":
            logits = {t: v.detach() for t, v in out.logits.items()}
            self._val_outputs.append((logits, {t: v.detach() for t, v in batch.targets.items()}))

    def on_validation_epoch_end(self) -> None:
        """The epoch's validation loss; its KPIs, for DTP and for `monitor: metric`."""
        self._log_mean("val_loss", self._val_loss)
        self._last_kpis = self._kpis()
        if self.monitor == "metric" and self._last_kpis is not None:
            value = sum(self._last_kpis.values()) / len(self._last_kpis)
            self.log("val_metric", value, on_step=False, on_epoch=True, sync_dist=True)

    def _log_mean(self, name: str, mean: EpochMean) -> None:
        """Log an epoch's batch-size-weighted mean loss once, as `self.log(name, loss,
        on_epoch=True, batch_size=len(batch), sync_dist=True)` at every step gave it, without
        Lightning's per-call cost (a quarter of a small fit). One process: exactly Σ loss·n / Σ n
        (weight 1, nothing to sync). Under DDP, weighted by the count so that Lightning's sync
        averages over every process's samples; every process logs, so none waits."""
        distributed = self._trainer is not None and self._trainer.world_size > 1
        if mean.count or distributed:
            self.log(
                name,
                mean.value(self.device),
                on_step=False,
                on_epoch=True,
                batch_size=mean.count if distributed else 1,
                sync_dist=True,
            )
        mean.reset()

    def _kpis(self) -> dict[str, float] | None:
        """The validation KPI of every term in [0, 1] (balancers that need one)."""
        if not self._val_outputs:
            return None
        kpis: dict[str, float] = {}
        for t, obj in self.objectives.items():
            logits = torch.cat([o[0][t] for o in self._val_outputs])
            target = torch.cat([o[1][t] for o in self._val_outputs]).cpu().numpy()
            kpis |= obj.kpis(logits, target)
        self._val_outputs = []
        return kpis

    def get_extra_state(self) -> dict[str, Any]:
        return {"weight_history": self.weight_history}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.weight_history = list(state["weight_history"])

    def configure_optimizers(self) -> Any:
        params = [*self.model.parameters(), *self.balancer.parameters()]
        # fused: one kernel per step, not a Python loop over the parameter tensors (a fifth of
        # a small fit's CPU time); the same update up to float rounding
        fused = all(p.device.type in ("cpu", "cuda") for p in params) or None
        optimizer = torch.optim.AdamW(
            params, lr=self.lr, weight_decay=self.weight_decay, fused=fused
        )
        if self.lr_schedule == "constant":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if self.lr_schedule == "onecycle":
            scheduler: Any = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=self.lr, total_steps=total
            )
        else:
            warmup = round(total * self.warmup_epochs / max(1, self.trainer.max_epochs or 1))
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _WarmupCosine(warmup, total))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def transfer_batch_to_device(
        self, batch: Batch, device: torch.device, dataloader_idx: int
    ) -> Batch:
        return batch if device.type == "cpu" else batch.to(device)  # batches are made on the CPU


# Lightning reads the signature of `training_step` and `validation_step` at every step
# (`is_param_in_hook_signature`, to decide whether to pass `batch_idx`); a signature stored on
# the function answers that without `inspect` rebuilding it each time.
for _hook in (FusionModule.training_step, FusionModule.validation_step):
    _hook.__signature__ = inspect.signature(_hook)  # type: ignore[attr-defined]


class EpochMean:
    """The batch-size-weighted mean of a loss over an epoch. The steps' losses are kept (detached)
    and summed only when the mean is asked for, in step order and as Lightning's epoch-level
    `self.log` summed them (`total + loss · n`, float32 unless the loss is float64): no
    arithmetic per step, none at all for an epoch nobody logs."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._steps: list[tuple[Tensor, int]] = []
        self.count = 0

    def add(self, loss: Tensor, n: int) -> None:
        self._steps.append((loss.detach(), n))
        self.count += n

    def value(self, device: torch.device | None = None) -> Tensor:
        """Σ loss·n / Σ n; 0 (on `device`) when nothing was added."""
        if not self._steps:
            return torch.zeros((), device=device)
        total = torch.zeros((), device=self._steps[0][0].device)
        for loss, n in self._steps:
            if loss.dtype not in (torch.float32, torch.float64):
                loss = loss.float()
            total = total + loss * n
        return total / self.count


@dataclasses.dataclass(frozen=True)
class _WarmupCosine:
    """The learning-rate factor at a step: linear warm-up over `warmup` steps, then cosine
    decay to 0 at step `total` (a picklable callable, so a resume checkpoint can hold it)."""

    warmup: int
    total: int

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        span = max(1, self.total - self.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - self.warmup) / span)))
