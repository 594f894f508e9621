"""The LightningModule: owns losses, loss balancing, the L1 penalty and the optimiser; the model
stays plain."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from polyfuse.data.dataset import Batch
from polyfuse.models.model import ModelOutput, MultimodalModel
from polyfuse.tasks.balancing import DTPBalancer, build_balancer


class FusionModule(L.LightningModule):
    """Trains any `MultimodalModel` on its balanced task losses, plus the model's auxiliary
    losses (scalars in `aux` under keys "loss/<name>") and an optional L1 penalty.

    Args:
        model: the plain PyTorch model.
        objectives: one `TaskObjective` per task, already fitted on the training targets.
        task_weights: static weight of each task's loss (1 when absent).
        lr, weight_decay: AdamW settings.
        l1: strength of an L1 penalty on all model parameters (HEALNet uses one).
        balancing: how task losses are combined in training: "static" (`task_weights`),
            "uncertainty", "dwa" or "dtp" (`tasks/balancing.py`). DTP's KPI per task is its
            validation primary metric (c-index, AUROC, R² clipped to [0, 1]). The validation
            loss that early stopping watches always uses the static weights, so its scale does
            not drift with the dynamic weights.
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
    ) -> None:
        super().__init__()
        self.model = model
        self.objectives = objectives
        self.task_weights = {t: (task_weights or {}).get(t, 1.0) for t in objectives}
        self.lr, self.weight_decay, self.l1 = lr, weight_decay, l1
        options = {"weights": self.task_weights} if balancing == "static" else {}
        self.balancer = build_balancer(balancing, list(objectives), **options)
        self._epoch_losses: dict[str, list[Tensor]] = {}
        self._val_outputs: list[tuple[dict[str, Tensor], dict[str, Tensor]]] = []

    def forward(self, batch: Batch) -> ModelOutput:
        return self.model(batch.inputs)

    def task_losses(self, batch: Batch) -> tuple[dict[str, Tensor], Tensor, ModelOutput]:
        """Per-task losses, and the model's auxiliary losses plus L1 (task-independent)."""
        out = self.model(batch.inputs)
        losses = {
            t: obj.loss(out.logits[t], batch.targets[t]) for t, obj in self.objectives.items()
        }
        extra = sum(v for k, v in out.aux.items() if k.startswith("loss/"))
        if self.l1:
            extra = extra + self.l1 * sum(p.abs().sum() for p in self.model.parameters())
        return losses, torch.as_tensor(extra), out

    def loss(self, batch: Batch) -> Tensor:
        """The static objective: Σ task_weight · loss + auxiliary losses + L1."""
        losses, extra, _ = self.task_losses(batch)
        return sum(self.task_weights[t] * v for t, v in losses.items()) + extra

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        losses, extra, _ = self.task_losses(batch)
        for t, v in losses.items():
            self._epoch_losses.setdefault(t, []).append(v.detach())
        loss = self.balancer(losses) + extra
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def on_train_epoch_end(self) -> None:
        means = {t: float(torch.stack(v).mean()) for t, v in self._epoch_losses.items()}
        self._epoch_losses = {}
        for t, w in self.balancer.weights().items():  # the weights this epoch trained with
            self.log(f"weight/{t}", w, on_step=False, on_epoch=True)
        self.balancer.epoch_end(self._kpis(), means)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        losses, extra, out = self.task_losses(batch)
        loss = sum(self.task_weights[t] * v for t, v in losses.items()) + extra
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch))
        if isinstance(self.balancer, DTPBalancer):
            logits = {t: v.detach() for t, v in out.logits.items()}
            self._val_outputs.append((logits, {t: v.detach() for t, v in batch.targets.items()}))

    def _kpis(self) -> dict[str, float] | None:
        """The validation primary metric of each task in [0, 1] (DTP only; 0.5 if undefined)."""
        if not self._val_outputs:
            return None
        kpis = {}
        for t, obj in self.objectives.items():
            logits = torch.cat([o[0][t] for o in self._val_outputs])
            target = torch.cat([o[1][t] for o in self._val_outputs]).cpu().numpy()
            scores = {k: v.cpu().numpy() for k, v in obj.scores(logits).items()}
            metrics = obj.metrics(scores, target, target)
            value = metrics.get("r2", next(iter(metrics.values()), float("nan")))
            kpis[t] = float(np.clip(value, 0.0, 1.0)) if np.isfinite(value) else 0.5
        self._val_outputs = []
        return kpis

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [*self.model.parameters(), *self.balancer.parameters()]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def transfer_batch_to_device(
        self, batch: Batch, device: torch.device, dataloader_idx: int
    ) -> Batch:
        return batch.to(device)
