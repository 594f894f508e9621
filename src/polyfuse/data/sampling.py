"""Which rows make each training batch: reproducible per epoch, and shared out between the
processes of a distributed run."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch


def rank_share(batch: list[int]) -> list[int]:
    """This process's share of a global batch under distributed training (every
    `world_size`-th sample from its rank on); the whole batch otherwise. DDP then averages the
    processes' gradients, which for equal shares is the gradient of the whole batch."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return batch
    return batch[dist.get_rank() :: dist.get_world_size()]


class ShuffledBatches(torch.utils.data.Sampler[list[int]]):
    """Batches of a fresh permutation each epoch, drawn from (seed, epoch) alone: a resumed fit
    sees the same order as an uninterrupted one (Lightning calls `set_epoch`), and every
    distributed process the same global batches, of which it trains on its `rank_share`."""

    def __init__(self, n: int, batch_size: int, *, seed: int = 0) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.n)
        for start in range(0, self.n, self.batch_size):
            yield rank_share(order[start : start + self.batch_size].tolist())


class ZipBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches holding ``batch_size`` samples of *every* cohort.

    An epoch has as many steps as the largest cohort needs; a smaller cohort is reshuffled and
    cycled when it runs out, so all cohorts are seen at every step (each step's batch is the
    union of one mini-batch per cohort). ``cohort`` gives each dataset row's cohort.
    """

    def __init__(self, cohort: np.ndarray, batch_size: int, *, seed: int = 0) -> None:
        self.groups = [np.flatnonzero(cohort == c) for c in dict.fromkeys(cohort.tolist())]
        self.batch_size = batch_size
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Each epoch's order depends on (seed, epoch) alone, so a resumed fit repeats it."""
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(max(len(g) for g in self.groups) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        largest = max(range(len(self.groups)), key=lambda k: len(self.groups[k]))
        queues = [rng.permutation(g) for g in self.groups]
        for _ in range(len(self)):
            batch: list[int] = []
            for k, group in enumerate(self.groups):
                while k != largest and len(queues[k]) < self.batch_size:
                    queues[k] = np.concatenate([queues[k], rng.permutation(group)])
                batch += queues[k][: self.batch_size].tolist()
                queues[k] = queues[k][self.batch_size :]
            yield rank_share(batch)
