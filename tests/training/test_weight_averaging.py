"""Weight averaging (EMA, SWA): the average computed by hand, and the averaged weights being the
ones that validation scores, the best weights keep and the fit returns (issue #21 item 2)."""

from __future__ import annotations

import pytest
import torch

from polyfuse.config import TrainingConfig
from polyfuse.training.callbacks import AveragedWeights, BestWeights
from polyfuse.training.fit import train_model
from polyfuse.training.module import FusionModule

BASE = TrainingConfig(epochs=3, batch_size=32, val_fraction=0.0, progress=False, lr=5e-2)
HP = {"dim": 8}


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone().double() for p in module.parameters()]


@pytest.fixture
def steps(monkeypatch):
    """The model's parameters after every optimiser step, and the epoch of each step."""
    seen: list[tuple[int, list[torch.Tensor]]] = []
    original = FusionModule.optimizer_step

    def record(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        out = original(self, epoch, batch_idx, optimizer, optimizer_closure)
        seen.append((epoch, _params(self.model)))
        return out

    monkeypatch.setattr(FusionModule, "optimizer_step", record)
    return seen


def _close(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_ema_is_the_exponential_average_of_every_step_by_hand(signal_data, steps):
    cfg = BASE.model_copy(update={"weight_averaging": "ema", "averaging_decay": 0.8})
    fitted = train_model("early", signal_data, training=cfg, hparams=HP)
    assert len(steps) == 3 * 5  # 160 samples in batches of 32
    average = steps[0][1]
    for _, weights in steps[1:]:
        average = [0.8 * a + 0.2 * w for a, w in zip(average, weights, strict=True)]
    _close(_params(fitted.model), average)
    with pytest.raises(AssertionError):  # the average is not simply the last step's weights
        _close(_params(fitted.model), steps[-1][1])


def test_ema_starts_at_averaging_start(signal_data, steps):
    cfg = BASE.model_copy(
        update={"weight_averaging": "ema", "averaging_decay": 0.5, "averaging_start": 2}
    )
    fitted = train_model("early", signal_data, training=cfg, hparams=HP)
    late = [w for epoch, w in steps if epoch >= 2]
    average = late[0]
    for weights in late[1:]:
        average = [0.5 * a + 0.5 * w for a, w in zip(average, weights, strict=True)]
    _close(_params(fitted.model), average)


def test_swa_is_the_equal_average_of_epoch_ends_from_the_start_epoch(signal_data, steps):
    cfg = BASE.model_copy(update={"weight_averaging": "swa", "averaging_start": 1, "epochs": 4})
    fitted = train_model("early", signal_data, training=cfg, hparams=HP)
    ends = {epoch: w for epoch, w in steps}  # the last step of each epoch wins
    kept = [ends[e] for e in (1, 2, 3)]
    mean = [sum(ws) / 3 for ws in zip(*kept, strict=True)]
    _close(_params(fitted.model), mean)


def test_validation_and_the_best_weights_see_the_average(signal_data, monkeypatch):
    """BestWeights runs while the average is swapped in: what it keeps is the average that was
    scored, and that is what the fit returns (Lightning's own callback would swap back first)."""
    seen: list[dict] = []
    original = BestWeights.on_validation_end

    def spy(self, trainer, module):
        averaging = next(c for c in trainer.callbacks if isinstance(c, AveragedWeights))
        seen.append(
            {
                "epoch": trainer.current_epoch,
                "model": _params(module.model),
                "raw": _params(averaging.average.module),  # swapped out while validating
                "swapped": averaging._swapped,
            }
        )
        return original(self, trainer, module)

    monkeypatch.setattr(BestWeights, "on_validation_end", spy)
    cfg = BASE.model_copy(
        update={"weight_averaging": "ema", "val_fraction": 0.25, "epochs": 4, "patience": 4}
    )
    fitted = train_model("early", signal_data, training=cfg, hparams=HP)
    assert len(seen) == 4 and all(s["swapped"] for s in seen)
    for s in seen:  # the model being scored is not the raw weights of the step
        assert any(not torch.equal(m, r) for m, r in zip(s["model"], s["raw"], strict=True))
    best = next(s for s in seen if s["epoch"] == fitted.best_epoch)
    _close(_params(fitted.model), best["model"])


def test_a_resumed_fit_with_ema_ends_like_an_uninterrupted_one(signal_data, tmp_path):
    cfg = BASE.model_copy(
        update={"weight_averaging": "ema", "val_fraction": 0.25, "checkpoint_every": 1}
    )
    more = cfg.model_copy(update={"epochs": 5})
    straight = train_model("early", signal_data, training=more, hparams=HP)
    train_model("early", signal_data, training=cfg, hparams=HP, checkpoint_dir=tmp_path)
    resumed = train_model(
        "early", signal_data, training=more, hparams=HP, checkpoint_dir=tmp_path, resume=True
    )
    for a, b in zip(_params(resumed.model), _params(straight.model), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert resumed.best_epoch == straight.best_epoch


def test_unknown_averaging_is_refused():
    with pytest.raises(ValueError, match="'ema' or 'swa'"):
        AveragedWeights("polyak")
