"""MACFusion: EHPAL-Net's quantum- and hyperbolic-inspired cross gating of two streams.

With U = C units (one per channel) and x̄_m = DCT-II_ortho(GAP(X_m)):

    c = clip(exp θ_c, 0.1, 10);  S̃ = S ⊙ σ(c);  c̃ = c · mean σ(S)
    ψ_m = x̄_m W_re + i x̄_m W_im;  P_m = |ψ_m|²              quantum-inspired, Born rule
    ρ_m = ‖x̄_m W_re‖;  A_m = softmax_U(P_m ⊙ ρ_m^(S̃−2))     fractal power law
    b_m = A_m W_reᵀ;  t_m = √(1 + c̃‖x̄_m‖²)/c̃              Lorentz time coordinate
    ℓ_1 = α(−t_2² + Σ β(x̄_1 + b_1)²), ℓ_2 likewise with t_1  times swapped across modalities
    p_m = Poincaré term (see `poincare`);  g_m = σ(γ₁ℓ_m + γ₂p_m) ∈ (0,1)
    Y_1 = o ⊙ κ ⊙ X_1 ⊙ (A_2 + g_2),  Y_2 = o ⊙ κ ⊙ X_2 ⊙ (A_1 + g_1)   (no residual, as coded)

Gate scale (`gate`). As coded, ℓ_m and p_m are sums and norms over the C channels, so the gate
logit grows with the width: after a per-sample norm ‖x̄‖² ≈ C, and at C = 64 the logits reach
|z| ≈ 20–90, σ is 0 or 1 in float32 and no gradient reaches the gate (on TCGA-ACC 59 % of gate
values lay beyond 0.01/0.99 at initialisation). A gate at 0 leaves Y = X ⊙ A with A summing to
1, dividing the stream's signal by C. `gate="per_channel"` (the default) takes the same terms
per channel, so their scale does not depend on C:

    t_m = √(1 + c̃ ms(x̄_m))/c̃,  ms = mean square over channels (‖x̄‖²/C)
    ℓ_1 = α(−t_2² + mean_i β_i(x̄_1 + b_1)_i²)
    p_m = tanh(√c̃ r_m) r_m/√c̃ (exp_map) or tanh(√c̃ r_m) mean x̄³/(r_m + 1e-6) (as_coded),
          r_m = rms(x̄_m)

and starts from a neutral geometry, c = 1 (θ_c = 0), α = 1, β = 1, where the reference draws
θ_c, α and β he-normal (a random sign and scale for α). `gate="reference"` is the code's form
and initialisation.

Per sample, a stream whose partner is absent is not gated (it goes on unchanged), and the
attention and gates of an absent stream are reported as 0. The flags `poincare` and
`fractal_constraint`, and the choices where the sources are silent (ρ_m + 1e-6; he-normal
θ_c, β and α; glorot-uniform W_re and W_im), are documented with the model in `ehpal.py`.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange, reduce
from torch import Tensor, nn

from polyfuse.models.blocks.masking import where_present, zero_absent

_EPS = 1e-6


def dct_matrix(n: int) -> Tensor:
    """Orthonormal DCT-II matrix D (n × n): DCT(x) = D x (scipy `dct(x, norm="ortho")`)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.float()


def _safe_norm(x: Tensor) -> Tensor:
    """‖x‖ over the last axis, keepdim, with a finite gradient at 0."""
    return torch.sqrt(x.pow(2).sum(-1, keepdim=True) + 1e-12)


def _he_normal(shape: tuple[int, ...], fan_in: int) -> Tensor:
    """Keras he_normal: truncated normal (±2σ), σ = √(2 / fan_in)."""
    return nn.init.trunc_normal_(torch.empty(shape), std=math.sqrt(2.0 / fan_in), a=-2.0, b=2.0)


class MACFusion(nn.Module):
    """Quantum/hyperbolic channel-wise cross gating of two streams (units U = C); keeps shapes.

    `forward(x1, x2, present1, present2)` returns (Y1, Y2, info), where info holds A_1, A_2,
    g_1, g_2 as "a", "b", "ga", "gb"; `present_m` is the per-sample presence of stream m.
    """

    def __init__(
        self,
        channels: int,
        *,
        fractal_dim: float = 1.8,
        fractal_constraint: str = "elementwise_clip",
        poincare: str = "exp_map",
        learnable_curvature: bool = True,
        gate: str = "per_channel",
    ) -> None:
        super().__init__()
        c = channels
        self.fractal_constraint, self.poincare, self.gate = fractal_constraint, poincare, gate
        reference = gate == "reference"
        self.register_buffer("dct", dct_matrix(c), persistent=False)
        theta_c = _he_normal((1,), 1) if reference else torch.zeros(1)
        self.theta_c = nn.Parameter(theta_c, requires_grad=learnable_curvature)
        self.fractal = nn.Parameter(torch.full((c,), float(fractal_dim)))
        bound = math.sqrt(6.0 / (2 * c))  # glorot_uniform of a C × U matrix
        self.w_re = nn.Parameter(torch.empty(c, c).uniform_(-bound, bound))
        self.w_im = nn.Parameter(torch.empty(c, c).uniform_(-bound, bound))
        self.alpha = nn.Parameter(_he_normal((1,), 1) if reference else torch.zeros(1))
        self.beta = nn.Parameter(_he_normal((c,), c) if reference else torch.ones(c))
        self.gamma = nn.Parameter(torch.ones(2))
        self.cross_gate = nn.Parameter(torch.ones(c))
        self.output_gate = nn.Parameter(torch.ones(c))

    def fractal_dims(self) -> Tensor:
        """S after its constraint (elementwise [1, 2] clip, or Keras MinMaxNorm(1, 2))."""
        s = self.fractal
        if self.fractal_constraint == "elementwise_clip":
            return s.clamp(1.0, 2.0)
        norm = s.norm()
        return s * norm.clamp(1.0, 2.0) / (norm + 1e-7)

    def _total(self, x: Tensor) -> Tensor:
        """Σ over channels (the reference) or the mean (`gate="per_channel"`), keepdim."""
        return x.sum(-1, keepdim=True) if self.gate == "reference" else x.mean(-1, keepdim=True)

    def _poincare(self, v: Tensor, sqrt_c: Tensor) -> Tensor:
        norm = torch.sqrt(self._total(v.pow(2)) + 1e-12)  # ‖v‖, or rms(v) per channel
        scale = torch.tanh(sqrt_c * norm)
        if self.poincare == "as_coded":
            return scale * self._total(v.pow(3)) / (norm + _EPS)
        return scale * norm.pow(2) / (sqrt_c * norm + _EPS)  # (tanh·x/(√c‖x‖)) · x

    def forward(
        self, x1: Tensor, x2: Tensor, present1: Tensor, present2: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        c = self.theta_c.exp().clamp(0.1, 10.0)
        s = self.fractal_dims()
        s_tilde = s * torch.sigmoid(c)
        c_tilde = c * torch.sigmoid(s).mean()
        v1, v2 = (reduce(x, "b c h w -> b c", "mean") @ self.dct.T for x in (x1, x2))

        def attend(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            re, im = v @ self.w_re, v @ self.w_im
            born = re.pow(2) + im.pow(2)  # |ψ|²
            rho = _safe_norm(re)
            attention = torch.softmax(born * (rho + _EPS).pow(s_tilde - 2.0), dim=-1)
            bias = attention @ self.w_re.T
            time = torch.sqrt(1.0 + c_tilde * self._total(v.pow(2))) / c_tilde
            return attention, bias, time

        a1, b1, t1 = attend(v1)
        a2, b2, t2 = attend(v2)
        sqrt_c = c_tilde.sqrt()
        gates = []
        for v, b, t_other in ((v1, b1, t2), (v2, b2, t1)):  # Lorentz times swapped
            lorentz = self.alpha * (-t_other.pow(2) + self._total(self.beta * (v + b).pow(2)))
            gates.append(
                torch.sigmoid(self.gamma[0] * lorentz + self.gamma[1] * self._poincare(v, sqrt_c))
            )
        g1, g2 = gates
        scale = self.output_gate * self.cross_gate
        y1 = x1 * rearrange(scale * (a2 + g2), "b c -> b c 1 1")
        y2 = x2 * rearrange(scale * (a1 + g1), "b c -> b c 1 1")
        # an absent partner does not gate: the present stream goes on unchanged
        y1, y2 = where_present(present2, y1, x1), where_present(present1, y2, x2)
        info = {
            "a": zero_absent(present1, a1),
            "b": zero_absent(present2, a2),
            "ga": zero_absent(present1, g1),
            "gb": zero_absent(present2, g2),
        }
        return y1, y2, info


__all__ = ["MACFusion", "dct_matrix"]
