"""The engine on a CUDA GPU: a fit learns in fp32 and bf16 mixed precision, with the
small-data regime, dynamic balancing and an ensemble, and its run directory predicts on the CPU.

Skipped without a GPU: the project builds and passes its tests on CPUs alone. A session with a
GPU runs it (benchmarks/gpu_path.sh); its figures are in benchmarks/README.md.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyfuse.config import TrainingConfig
from polyfuse.training.fit import FittedModel, train_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

GPU = TrainingConfig(
    epochs=40, batch_size=32, lr=3e-3, patience=40, progress=False, accelerator="gpu"
)
REGIME = dict(
    lr_schedule="onecycle",
    modality_dropout=0.2,
    weight_averaging="ema",
    balancing="uncertainty",
    ensemble=2,
)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("regime", [{}, REGIME], ids=["plain", "regime"])
def test_gpu_fit_learns_and_predicts_on_the_cpu(signal_data, tmp_path, precision, regime):
    train, test = signal_data.subset(range(0, 120)), signal_data.subset(range(120, 160))
    cfg = GPU.model_copy(update={"precision": precision, **regime})
    fitted = train_model("early", train, training=cfg, hparams={"dim": 16}, seed=0)
    for member in fitted.members:
        assert {p.device.type for p in member.parameters()} == {"cpu"}
        assert {p.dtype for p in member.parameters()} == {torch.float32}
    metrics = fitted.evaluate(test, train.targets)
    assert metrics["y"]["auroc"] > 0.8
    assert metrics["os"]["c_index"] > 0.7
    fitted.save(tmp_path)
    again = FittedModel.load(tmp_path)
    a, b = fitted.predict(test), again.predict(test)
    for task in a:
        for key in a[task]:
            np.testing.assert_array_equal(a[task][key], b[task][key])


def test_gpu_fit_with_gradnorm_and_dtp(signal_data):
    """The balancers that keep tensors of their own (GradNorm's weights, DTP's KPIs) on the GPU."""
    for balancing in ("gradnorm", "dtp"):
        cfg = GPU.model_copy(update={"epochs": 5, "balancing": balancing})
        fitted = train_model("early", signal_data, training=cfg, hparams={"dim": 8}, seed=0)
        assert len(fitted.weight_history) == 5, balancing
        assert all(np.isfinite(list(w.values())).all() for w in fitted.weight_history), balancing
