"""The LightningModule: owns losses, the L1 penalty and the optimiser; the model stays plain."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor, nn

from polyfuse.data.dataset import Batch
from polyfuse.models.model import ModelOutput, MultimodalModel


class FusionModule(L.LightningModule):
    """Trains any `MultimodalModel` on the weighted sum of its task losses, plus the model's
    auxiliary losses (scalars in `aux` under keys "loss/<name>") and an optional L1 penalty.

    Args:
        model: the plain PyTorch model.
        objectives: one `TaskObjective` per task, already fitted on the training targets.
        task_weights: static weight of each task's loss (1 when absent).
        lr, weight_decay: AdamW settings.
        l1: strength of an L1 penalty on all model parameters (HEALNet uses one).
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
    ) -> None:
        super().__init__()
        self.model = model
        self.objectives = objectives
        self.task_weights = task_weights or {}
        self.lr, self.weight_decay, self.l1 = lr, weight_decay, l1

    def forward(self, batch: Batch) -> ModelOutput:
        return self.model(batch.inputs)

    def loss(self, batch: Batch) -> Tensor:
        out = self.model(batch.inputs)
        total = sum(
            self.task_weights.get(t, 1.0) * obj.loss(out.logits[t], batch.targets[t])
            for t, obj in self.objectives.items()
        )
        # a model's own auxiliary losses (e.g. a similarity term) travel in aux as "loss/<name>"
        for key, value in out.aux.items():
            if key.startswith("loss/"):
                total = total + value
        if self.l1:
            total = total + self.l1 * sum(p.abs().sum() for p in self.model.parameters())
        return total

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss = self.loss(batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )

    def transfer_batch_to_device(
        self, batch: Batch, device: torch.device, dataloader_idx: int
    ) -> Batch:
        return batch.to(device)
