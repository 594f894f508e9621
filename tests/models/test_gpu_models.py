"""Every registered model on a CUDA GPU: the CPU's outputs in fp32, finite under bf16 autocast.

Skipped without a GPU: the project builds and passes its tests on CPUs alone. A session with a
GPU runs it (benchmarks/gpu_path.sh); its figures are in benchmarks/README.md.
"""

from __future__ import annotations

import pytest
import torch
from test_registry_models import MODELS, build, flat

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def exact_matmul():
    """TF32 off: the comparison with the CPU is of the same arithmetic, not of tensor cores."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize("name", MODELS)
def test_gpu_outputs_equal_cpu(name, specs, tasks, inputs) -> None:
    """Same weights, same inputs: the GPU's logits and embedding are the CPU's (fp32)."""
    model = build(name, specs, tasks)
    on_cpu = flat(model(inputs), aux=False)
    on_gpu = flat(model.cuda()({m: b.to("cuda") for m, b in inputs.items()}), aux=False)
    for k, v in on_cpu.items():
        assert on_gpu[k].device.type == "cuda", k
        torch.testing.assert_close(on_gpu[k].cpu(), v, atol=1e-4, rtol=1e-4, msg=k)


@pytest.mark.parametrize("name", MODELS)
def test_gpu_bf16_step_finite(name, specs, tasks, inputs) -> None:
    """A training step under bf16 autocast gives finite logits near fp32's and finite
    gradients for every parameter that gets one."""
    model = build(name, specs, tasks).cuda().train()
    batch = {m: b.to("cuda") for m, b in inputs.items()}
    with torch.no_grad():
        reference = flat(model.eval()(batch), aux=False)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(batch)
    for k, v in flat(out, aux=False).items():
        assert torch.isfinite(v).all(), k
        spread = float(reference[k].abs().max()) + 1e-3
        assert float((v.float() - reference[k]).abs().max()) <= 0.1 * spread, k
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(batch)
        loss = sum(v.float().sum() for v in out.logits.values())
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads, "no parameter received a gradient"
    for n, g in grads.items():
        assert torch.isfinite(g).all(), n
