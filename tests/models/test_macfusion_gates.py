"""MACFusion's algebra against an independent computation, and gates that work (issue #21).

The golden test recomputes a MACFusion layer in NumPy float64 from the equations of
`reference/methods.md` §2(b)(i) (DCT from SciPy, not from `dct_matrix`), with random values in
every parameter, so that dropping the cross-modal swap of the Lorentz times, the Lorentz form,
the imaginary (quantum) part or the fractal power changes the answer. The gate tests measure
what the issue found broken: saturation at initialisation, and modalities whose input gradients
differ by orders of magnitude.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

import polyfuse as pf
from polyfuse.data.preprocess import Preprocessor
from polyfuse.explain.macfusion import collect_macfusion
from polyfuse.models.macfusion import MACFusion
from polyfuse.models.registry import create_model


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def numpy_macfusion(mac: MACFusion, x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, ...]:
    """(Y1, Y2, A1, A2, g1, g2) from the equations, every stream present."""
    p = {k: v.detach().double().numpy() for k, v in mac.named_parameters()}
    n_ch = x1.shape[1]
    total = np.sum if mac.gate == "reference" else np.mean  # Σ over channels, or the mean
    dct = scipy.fft.dct(np.eye(n_ch), norm="ortho", axis=0)
    c = np.clip(np.exp(p["theta_c"][0]), 0.1, 10.0)
    s = np.clip(p["fractal"], 1.0, 2.0)
    s_tilde, c_tilde = s * _sigmoid(c), c * _sigmoid(s).mean()

    def descriptor(x: np.ndarray) -> np.ndarray:
        return x.mean(axis=(2, 3)) @ dct.T

    def attend(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        re, im = v @ p["w_re"], v @ p["w_im"]
        rho = np.sqrt((re**2).sum(-1, keepdims=True))
        logits = (re**2 + im**2) * (rho + 1e-6) ** (s_tilde - 2.0)
        a = np.exp(logits - logits.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        t = np.sqrt(1.0 + c_tilde * total(v**2, -1, keepdims=True)) / c_tilde
        return a, a @ p["w_re"].T, t

    v1, v2 = descriptor(x1), descriptor(x2)
    (a1, b1, t1), (a2, b2, t2) = attend(v1), attend(v2)

    def gate(v: np.ndarray, b: np.ndarray, t_other: np.ndarray) -> np.ndarray:
        lorentz = p["alpha"][0] * (
            -(t_other**2) + total(p["beta"] * (v + b) ** 2, -1, keepdims=True)
        )
        r = np.sqrt(total(v**2, -1, keepdims=True))
        sqrt_c = np.sqrt(c_tilde)
        poincare = np.tanh(sqrt_c * r) * r**2 / (sqrt_c * r + 1e-6)  # the exp-map form
        return _sigmoid(p["gamma"][0] * lorentz + p["gamma"][1] * poincare)

    g1, g2 = gate(v1, b1, t2), gate(v2, b2, t1)  # the Lorentz times swapped across streams
    scale = p["output_gate"] * p["cross_gate"]
    y1 = x1 * (scale * (a2 + g2))[:, :, None, None]
    y2 = x2 * (scale * (a1 + g1))[:, :, None, None]
    return y1, y2, a1, a2, g1, g2


def randomised(gate: str, channels: int = 16, seed: int = 0) -> MACFusion:
    """A MACFusion layer with every parameter away from its initial value."""
    torch.manual_seed(seed)
    mac = MACFusion(channels, gate=gate)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        mac.theta_c.fill_(0.4)
        mac.fractal.copy_(1.0 + torch.rand(channels, generator=g))
        # the reference sums over channels what per_channel averages: scale its weights down
        # so that its gates, too, lie inside (0, 1) where their algebra can be compared
        sums = channels if gate == "reference" else 1
        mac.alpha.fill_(0.3 / sums)
        mac.beta.copy_(0.5 + torch.rand(channels, generator=g))
        mac.gamma.copy_(torch.tensor([0.7, 1.3 / sums**0.5]))
        mac.cross_gate.copy_(0.5 + torch.rand(channels, generator=g))
        mac.output_gate.copy_(0.5 + torch.rand(channels, generator=g))
    return mac


@pytest.mark.parametrize("gate", ["per_channel", "reference"])
def test_macfusion_equals_the_equations(gate: str) -> None:
    mac = randomised(gate)
    g = torch.Generator().manual_seed(7)
    # realistic scale: what a per-sample normalised feature map looks like
    x1, x2 = torch.randn(6, 16, 3, 3, generator=g), 0.6 * torch.randn(6, 16, 3, 3, generator=g)
    x2[:, :4] += 1.5  # channels with a non-zero mean give the descriptors a norm
    present = torch.ones(6, dtype=torch.bool)
    y1, y2, info = mac(x1, x2, present, present)
    want = numpy_macfusion(mac, x1.double().numpy(), x2.double().numpy())
    got = [y1, y2, info["a"], info["b"], info["ga"], info["gb"]]
    for name, actual, expected in zip(["Y1", "Y2", "A1", "A2", "g1", "g2"], got, want, strict=True):
        np.testing.assert_allclose(
            actual.detach().double().numpy(), expected, rtol=2e-4, atol=1e-6, err_msg=name
        )
    # the gates are not at a bound, so the comparison of g tests the gate's algebra
    gates = torch.cat([info["ga"], info["gb"]])
    assert bool(((gates > 0.02) & (gates < 0.98)).all()), gates.flatten()


def test_every_term_of_the_gate_changes_it() -> None:
    """Each piece the golden test pins moves the gate: none is numerically negligible."""
    mac = randomised("per_channel")
    g = torch.Generator().manual_seed(7)
    x1, x2 = torch.randn(6, 16, 3, 3, generator=g), 0.6 * torch.randn(6, 16, 3, 3, generator=g)
    x2[:, :4] += 1.5
    present = torch.ones(6, dtype=torch.bool)
    base = mac(x1, x2, present, present)[2]
    for name, change in [
        ("Lorentz form", lambda m: m.alpha.fill_(0.0)),
        ("Poincaré term", lambda m: m.gamma[1].fill_(0.0)),
        ("imaginary part", lambda m: m.w_im.zero_()),
        ("fractal power", lambda m: m.fractal.fill_(2.0)),
    ]:
        other = randomised("per_channel")
        with torch.no_grad():
            change(other)
        info = other(x1, x2, present, present)[2]
        moved = max(float((info[k] - base[k]).abs().max()) for k in ("a", "b", "ga", "gb"))
        assert moved > 1e-3, name


@pytest.fixture(scope="module")
def acc():
    return Preprocessor().fit_transform(pf.datasets.load("tcga-acc"))


def _at_init(data, gate: str, seed: int, **hparams) -> tuple[torch.Tensor, dict[str, float]]:
    """(gate values of present streams, input-gradient norm per modality) at initialisation."""
    torch.manual_seed(seed)
    model = create_model("ehpal", data.specs, data.tasks, gate=gate, **hparams)
    model.train()
    batch = data[list(range(len(data)))]
    for b in batch.inputs.values():
        b.data.requires_grad_(True)
    out = model(batch.inputs)
    next(iter(out.logits.values())).sum().backward()
    values = collect_macfusion([out.aux])  # NaN where the stream is absent
    gates = np.concatenate([v.ravel() for k, v in values.items() if k.kind == "gate"])
    grads = {
        m: float(b.data.grad[b.present].pow(2).sum(-1).mean().sqrt())
        for m, b in batch.inputs.items()
    }
    return torch.from_numpy(gates[~np.isnan(gates)]), grads


@pytest.mark.parametrize("seed", [0, 1])
def test_gates_at_initialisation_neither_saturate_nor_starve_a_modality(acc, seed) -> None:
    """TCGA-ACC, six omics and clinical tables: under 5 % of gate values beyond 0.01/0.99, and
    every modality's input gradient within 100× of the others', for the default model and for
    one modality per stage (six stages, the layout the reference gate was measured in). There
    the reference form, on the same weights' seed, saturates most gates and spreads the
    gradients over > 100×."""
    one_per_stage = {"max_stages": len(acc.specs)}
    for hparams in ({}, one_per_stage):
        gates, grads = _at_init(acc, "per_channel", seed, **hparams)
        assert float(((gates < 0.01) | (gates > 0.99)).float().mean()) < 0.05
        assert max(grads.values()) / min(grads.values()) < 100, grads
    gates, grads = _at_init(acc, "reference", seed, **one_per_stage)
    assert float(((gates < 0.01) | (gates > 0.99)).float().mean()) > 0.3
    assert max(grads.values()) / min(grads.values()) > 100, grads
