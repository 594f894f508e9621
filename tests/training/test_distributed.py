"""Distributed data-parallel training on CPU: 2 processes (Lightning ddp_spawn, gloo) give the
model of 1 process with the same global batch."""

from __future__ import annotations

import pytest
import torch

from polyfuse.config import TrainingConfig
from polyfuse.data.sampling import ShuffledBatches
from polyfuse.errors import ConfigError
from polyfuse.training.fit import train_model


def test_each_process_trains_on_its_share_of_the_global_batch(monkeypatch):
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(dist, "get_rank", lambda group=None, r=rank: r)
        shares.append(list(ShuffledBatches(10, 4, seed=1)))
    monkeypatch.undo()
    whole = list(ShuffledBatches(10, 4, seed=1))
    for batch, a, b in zip(whole, *shares, strict=True):
        assert sorted(a + b) == sorted(batch) and not set(a) & set(b)
        assert abs(len(a) - len(b)) <= 1


def test_two_processes_match_one_with_the_same_global_batch(signal_data):
    data = signal_data.subset(range(128))
    common = dict(epochs=3, batch_size=16, lr=3e-3, val_fraction=0.0, progress=False)
    one = train_model(
        "early",
        data,
        training=TrainingConfig(**common),
        hparams={"dim": 16, "dropout": 0.0},
        seed=0,
    )
    two = _fit_two_processes(data, common)
    ref = one.model.state_dict()
    for k, v in two.model.state_dict().items():
        torch.testing.assert_close(v, ref[k], rtol=1e-4, atol=1e-5, msg=k)
    metrics = [m.evaluate(data, data.targets)["y"]["auroc"] for m in (one, two)]
    assert metrics[0] == pytest.approx(metrics[1], abs=1e-4)
    assert one.weight_history == two.weight_history  # rank 0's history came back


def _fit_two_processes(data, common: dict):
    """The 2-process fit. A worker that aborts in the gloo teardown after the fit finished
    (`terminate called without an active exception`, SIGABRT, seen in a few runs in ten on
    this machine since 2026-12-03; not yet understood, see the closing note of that session)
    is retried once; any other failure, or a second abort, fails the test."""
    from torch.multiprocessing.spawn import ProcessExitedException

    def fit():
        return train_model(
            "early",
            data,
            training=TrainingConfig(**common, devices=2, strategy="ddp_spawn"),
            hparams={"dim": 16, "dropout": 0.0},
            seed=0,
        )

    try:
        return fit()
    except ProcessExitedException as exc:
        if exc.signal_name != "SIGABRT":
            raise
        return fit()


def test_fp16_on_cpu_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="16-mixed needs a GPU"):
        TrainingConfig(precision="16-mixed")
    with pytest.raises(ConfigError, match="16-mixed needs a GPU"):
        from polyfuse.config import parse_config

        parse_config({"data": {"dataset": "tcga-acc"}, "training": {"precision": "16-mixed"}})
