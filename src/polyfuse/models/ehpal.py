"""EHPAL-Net: Efficient Hybrid-fusion Physics-inspired Attention Learning Network.

"Advancing Multimodal Fusion on Heterogeneous Data with Physics-inspired Attention", ICLR 2026
submission 20215 (openreview.net/forum?id=mZJM8hXmVg). Reference code: the Keras notebooks of
Submission-01/EHPAL@425259a (cells 19-33). Specification: `reference/methods.md` §2. This is a
PyTorch, channels-first re-implementation.

A two-stream staged CNN. Stream A is the running shared representation, stream B the modality
being injected. Stage k (of K = len(injection_schedule), default max(2, M) up to 4):

    stage 1:   EHF1 ∘ EHF1 (s=1)                       A = m1, B = m2; no merge
    stage k≥2: EHF2(s=2) ∘ EHF1(s=1)                  B = m2 (k=2) or m_k injected (k≥3)
    EHF1(X₁,X₂) = PCMFA(EMRC(X₁,X₂))
    EHF2(X₁,X₂) = X ← Norm(EMRC(X; s=2)); X ← PCMFA(X); side = (SIR₁(X₁), SIR₂(X₂));
                  A ← GConv1x1([s₁X₁; s₂X₂])              learnable-scaled merge, B consumed
    EMRC(X₁,X₂) = (RGSA₁(X₁), RGSA₂(X₂))                 separate weights per stream
    RGSA(X)     = ReLU(N(Conv1x1(MHCF(ReLU(N(MHCF(X; s))))) + N(GConv1x1_s(X)))
    MHCF(X)     = act(N(GConv1x1_s(X)) + N(GConv1x1(Shuffle_g([N(GConv1x1_s X); N(DW3_s X);
                                                              N(DW5_s X)]))))
    PCMFA       = MACFusion₂ ∘ MACFusion₁
    head        = GAP(Dropout([A; side_A(2..K); side_B(2..K)]))  → one linear head per task

MACFusion, the channel-wise cross gating of the two streams, is `models/macfusion.py`.

EHPAL-Net is image-first. Its backbone is a 2D CNN whose multi-scale kernels and channel gates
were designed for 128² images; every other modality enters through a learned to-grid adapter,
and each stage halves the grid, so with one modality per stage many modalities would run the
late stages on 1×1 maps where the 3×3 and 5×5 kernels see one value (six tables on the default
8×8 grid: stages 4–6). The default schedule therefore groups modalities into the stages whose
maps stay at least 2×2 (`max_stages`). On TCGA-ACC (six tables, 92 patients, 5 × 3 CV;
`benchmarks/README.md`) that takes its c-index from 0.699 ± 0.121 (one modality per stage) to
0.830 ± 0.064 with one seed (0.823 ± 0.032 with the default three), beside 0.80 for a Coxnet
on RNA.

Sequential injection: stage k≥3 brings modality m_k through its stem or adapter and k−2
stride-2 MHCF(f_k) blocks to A's resolution. Widths f_k = min(64·2^(k−1), 512) · `width`
(rounded to multiples of 8). The paper's setting is `width=1` with 128² images (stems give
32×32×64, stage outputs 32²×64 → 16²×128 → 8²×256 → 4²×512, sides 4²×512, head 3584); the
default `width=0.25, grid_size=8` is sized for ~100-patient cohorts on a CPU.

Generalisation (methods.md §2(j), RECONSTRUCTION):

* Any number and kind of modalities. `injection_schedule` lists per stage the modalities of
  that stage: `[[a, b], [a, b], [c], [d, e], ...]` (the first two entries the same pair, then
  one or more modalities per stage). Default: the order of `specs`, K = max(2, M) stages up
  to `max_stages`, beyond which m3… are grouped, several per stage (a stage injects the mean of
  its modalities' grids over those each sample has). `max_stages` defaults to the most stages
  whose maps stay at least 2×2 (each stage from the second halves the grid: log2 G, 3 on the
  default 8×8 grid, 5 on the paper's 32×32, where its four modalities keep one stage each).
  Our choice, not the paper's: the paper has at most four modalities, and with six tables on an
  8×8 grid one stage per modality ran stages 4–6 on 1×1 maps, where the 3×3 and 5×5 kernels
  see one value. A user may set a longer schedule (re-injecting a modality: its stem is shared, its downsampling is per stage)
  or a shorter one (modalities left out are not read, see `used_modalities`).
* M = 1: both streams start from the one modality (`[[m, m], [m, m]]`), through one shared
  stem; their EMRC/PCMFA weights differ, so the net trains as a two-stream CNN on one input.
* 2D images enter through the paper's stem (Conv7×7/2 → Norm → ReLU → MaxPool3/2), adaptively
  average-pooled to `grid_size` when the stem gives another size (never for 128² and
  `grid_size=32`). Every other kind enters through a learned to-grid adapter: the kind's
  `build_encoder` vector (`adapter_dim`) → Linear → (c₀, G, G) → Norm → ReLU. 3D volumes take
  the adapter (3D CNN encoder) with `volumes="adapter"`, or are refused at construction with
  `volumes="refuse"` (the backbone is 2D and has no volumetric stem).

Missing modalities per sample (RECONSTRUCTION, not in the paper, which needs every input):
with `per_sample_missing=True` a stream is present where one of its modalities is. An absent
partner does not gate: MACFusion returns the present stream unchanged (Y_1 = X_1 where stream 2
is absent). An absent stream's side outputs are 0 and it enters the merge as 0, so the shared
stream goes on from the present stream only; after a merge A is present where A or B was.
Inputs of absent samples are zero-filled by `prepare_inputs` and no layer uses batch
statistics, so outputs do not depend on the fill value.

Code-vs-intent choices (§2(b)); each is a flag and the default follows the stated intent:

1. `poincare="exp_map"`: p = tanh(√c̃‖x̄‖)·x̄/(√c̃‖x̄‖) · x̄ (the textbook exp-map, then the
   dot product with x̄ as coded). "as_coded": tanh(√c̃‖x̄‖)·Σx̄ᵢ³/(‖x̄‖ + 1e-6).
2. `fractal_constraint="elementwise_clip"`: each fractal dimension Sᵢ in [1, 2] (a
   "fractal dimension 1.8 per unit"). "keras_minmaxnorm": the L2 norm of the whole vector in
   [1, 2], as Keras `MinMaxNorm(1, 2)` trains it (each element ≈ 2/√U). Keras projects after
   each update; here the projection is applied where S is used (the same value at every use).
3. `mc_dropout_at_inference=False`: deterministic evaluation. True reproduces the code's
   `Dropout(training=True)`: two eval passes differ (MC-dropout).
4. `always_project_shortcut=False`: RGSA's shortcut is the identity when stride 1 and widths
   match. True is the code, whose `strides != (1, 1)` test is always true.
5. `mhcf_activation="gelu"` (survival notebook); "relu" is the classification notebook's.
6. `gate="per_channel"`: MACFusion's gate logit from per-channel means, so it does not grow
   with the width and the gates neither saturate nor starve a stream at initialisation (see
   `models/macfusion.py`); "reference" is the code's sums and norms over channels, whose
   logits reach |z| ≈ 20–90 at 64 channels.

Departures, not flags: BatchNorm → GroupNorm (`norm_groups`, default 1 = LayerNorm over
C×H×W per sample) because outputs must not depend on the rest of the batch; the declared but
unused Keras weights (global pooling, `global_attention`, `global_scale1/2`) are not built.

Choices where the sources are silent: ρ_m gets + 1e-6 before the negative power (the code's
ρ = 0 would give 0·∞ for a zero input); SIR side branches and the merge conv keep Keras'
default bias (no norm follows them), MHCF/RGSA convs are bias-free as coded; SIR's bottleneck
f/4 is rounded up to a multiple of `groups`; each stream has its own SIR weights; the SIR
chain of stage k has one stride-2 unit per later stage, widths f_(k+1)..f_K (one stride-1 unit
when k = K), so every side ends at the last stage's shape, as in the paper's table; θ_c,
β and α are he-normal initialised (truncated, Keras fan-in rule) with `gate="reference"` and
θ_c = 0, α = β = 1 otherwise, W_re/W_im glorot-uniform.

Inspection: for every MACFusion layer, `aux["attention/stage{k}/ehf{j}/mac{l}/{a|b}"]` is
A_m (B, U), summing to 1 over units, and `aux["gate/stage{k}/ehf{j}/mac{l}/{a|b}"]` is g_m
(B, 1) in (0, 1); k from 1, j ∈ {1, 2}, l ∈ {1, 2}; stream "a" is the shared stream (m1 at
stage 1-2), "b" the injected one. Both are 0 for a sample whose stream is absent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor, nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError
from polyfuse.models.blocks.masking import zero_absent
from polyfuse.models.checks import check_choices
from polyfuse.models.encoders import build_encoder
from polyfuse.models.macfusion import MACFusion
from polyfuse.models.model import THREE_FOLDS, MultimodalModel, build_heads
from polyfuse.models.registry import register_model
from polyfuse.search_space import Categorical, Float


def _round(c: float, multiple: int = 8) -> int:
    """A channel count rounded to a positive multiple of `multiple` (group divisibility)."""
    return max(multiple, round(c / multiple) * multiple)


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet channel shuffle: (g·c) channels → interleaved (c·g)."""
    return rearrange(x, "b (g c) h w -> b (c g) h w", g=groups)


# --------------------------------------------------------------------------- conv blocks


def _dw(c: int, k: int, stride: int = 1, dilation: int = 1, bias: bool = False) -> nn.Conv2d:
    pad = dilation * (k - 1) // 2
    return nn.Conv2d(c, c, k, stride, pad, dilation=dilation, groups=c, bias=bias)


class MHCF(nn.Module):
    """Multi-kernel grouped convolution with channel shuffle (`multi_kernel_groupwise_conv3`)."""

    def __init__(
        self, c_in: int, f: int, stride: int, *, groups: int, norm_groups: int, activation: str
    ) -> None:
        super().__init__()
        self.groups = groups
        self.pointwise = nn.Sequential(
            nn.Conv2d(c_in, f, 1, stride, groups=groups, bias=False), _norm(f, norm_groups)
        )
        self.dw3 = nn.Sequential(_dw(c_in, 3, stride), _norm(c_in, norm_groups))
        self.dw5 = nn.Sequential(_dw(c_in, 5, stride), _norm(c_in, norm_groups))
        self.mix = nn.Sequential(
            nn.Conv2d(f + 2 * c_in, f, 1, groups=groups, bias=False), _norm(f, norm_groups)
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(c_in, f, 1, stride, groups=groups, bias=False), _norm(f, norm_groups)
        )
        self.act = {"gelu": nn.GELU(), "relu": nn.ReLU()}[activation]

    def forward(self, x: Tensor) -> Tensor:
        z = torch.cat([self.pointwise(x), self.dw3(x), self.dw5(x)], dim=1)
        z = self.mix(channel_shuffle(z, self.groups))
        return self.act(self.shortcut(x) + z)


class RGSA(nn.Module):
    """Residual unit of EMRC: two MHCFs, a full 1×1 conv, and a grouped 1×1 shortcut."""

    def __init__(
        self, c_in: int, f: int, stride: int, *, always_project: bool, **opts: Any
    ) -> None:
        super().__init__()
        g, ng = opts["groups"], opts["norm_groups"]
        self.body = nn.Sequential(
            MHCF(c_in, f, stride, **opts),
            _norm(f, ng),
            nn.ReLU(),
            MHCF(f, f, 1, **opts),
            nn.Conv2d(f, f, 1, bias=False),
            _norm(f, ng),
        )
        project = always_project or stride != 1 or c_in != f
        self.shortcut: nn.Module = (
            nn.Sequential(nn.Conv2d(c_in, f, 1, stride, groups=g, bias=False), _norm(f, ng))
            if project
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class SIRUnit(nn.Module):
    """One SIR side-branch unit (`multi_kernel_groupwise_conv1`, no normalisation)."""

    def __init__(self, c_in: int, f: int, stride: int, *, groups: int) -> None:
        super().__init__()
        self.groups = groups
        squeeze = _round(f / 4, groups)
        self.squeeze = nn.Conv2d(c_in, squeeze, 1, groups=groups)
        self.dw3, self.dw5 = _dw(c_in, 3, bias=True), _dw(c_in, 5, bias=True)
        self.dw3_dil = _dw(c_in, 3, dilation=2, bias=True)
        mixed = squeeze + 3 * c_in
        self.mix = nn.Sequential(_dw(mixed, 3, bias=True), nn.Conv2d(mixed, f, 1, groups=groups))
        self.out = _dw(f, 3, stride, bias=True)
        self.skip = nn.Sequential(
            nn.Conv2d(c_in, f, 1, groups=groups), _dw(f, 3, stride, bias=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        z = torch.cat([self.squeeze(x), self.dw3(x), self.dw5(x), self.dw3_dil(x)], dim=1)
        z = self.mix(channel_shuffle(z, self.groups))
        return F.gelu(self.out(z) + self.skip(x))


# --------------------------------------------------------------------------- EHF stages


class EHF(nn.Module):
    """EHF1 (`merge=False`): PCMFA ∘ EMRC. EHF2 (`merge=True`): + Norm, SIR sides, merge."""

    def __init__(
        self,
        c_a: int,
        c_b: int,
        f: int,
        stride: int,
        *,
        merge: bool,
        side_widths: Sequence[int],
        conv: Mapping[str, Any],
        mac: Mapping[str, Any],
        always_project: bool,
    ) -> None:
        super().__init__()
        self.merge = merge
        self.emrc = nn.ModuleList(
            [RGSA(c, f, stride, always_project=always_project, **conv) for c in (c_a, c_b)]
        )
        self.pcmfa = nn.ModuleList([MACFusion(f, **mac) for _ in range(2)])
        if merge:
            ng, g = conv["norm_groups"], conv["groups"]
            self.norms = nn.ModuleList([_norm(f, ng) for _ in range(2)])
            self.sides = nn.ModuleList([self._sir(f, side_widths, g) for _ in range(2)])
            self.scales = nn.Parameter(torch.ones(2))
            self.fuse = nn.Conv2d(2 * f, f, 1, groups=g)

    @staticmethod
    def _sir(f: int, widths: Sequence[int], groups: int) -> nn.Sequential:
        steps = [(w, 2) for w in widths] or [(f, 1)]
        units, c = [], f
        for w, s in steps:
            units.append(SIRUnit(c, w, s, groups=groups))
            c = w
        return nn.Sequential(*units)

    def forward(
        self, a: Tensor, b: Tensor, pa: Tensor, pb: Tensor
    ) -> tuple[Tensor, Tensor, list[Tensor], list[dict[str, Tensor]]]:
        a, b = self.emrc[0](a), self.emrc[1](b)
        if self.merge:
            a, b = self.norms[0](a), self.norms[1](b)
        infos = []
        for mac in self.pcmfa:
            a, b, info = mac(a, b, pa, pb)
            infos.append(info)
        if not self.merge:
            return a, b, [], infos
        a, b = zero_absent(pa, a), zero_absent(pb, b)  # absent streams: zero sides, zero merge
        sides = [zero_absent(pa, self.sides[0](a)), zero_absent(pb, self.sides[1](b))]
        fused = self.fuse(torch.cat([self.scales[0] * a, self.scales[1] * b], dim=1))
        return fused, b, sides, infos


class Stage(nn.Module):
    """Stage 1: EHF1 ∘ EHF1 (two streams go on). Stage k ≥ 2: EHF2(s=2) ∘ EHF1 (B merged)."""

    def __init__(
        self, c_a: int, c_b: int, f: int, *, first: bool, side_widths: Sequence[int], **kw: Any
    ) -> None:
        super().__init__()
        self.first = first
        self.ehf1 = EHF(c_a, c_b, f, 1, merge=False, side_widths=(), **kw)
        self.ehf2 = EHF(f, f, f, 1 if first else 2, merge=not first, side_widths=side_widths, **kw)

    def forward(
        self, a: Tensor, b: Tensor, pa: Tensor, pb: Tensor
    ) -> tuple[Tensor, Tensor, list[Tensor], dict[str, dict[str, Tensor]]]:
        a, b, _, infos1 = self.ehf1(a, b, pa, pb)
        a, b, sides, infos2 = self.ehf2(a, b, pa, pb)
        infos = {f"ehf1/mac{i + 1}": v for i, v in enumerate(infos1)}
        infos.update({f"ehf2/mac{i + 1}": v for i, v in enumerate(infos2)})
        return a, b, sides, infos


# --------------------------------------------------------------------------- to-grid inputs


class ImageStem(nn.Module):
    """The paper's stem, Conv7×7/2 → Norm → ReLU → MaxPool3/2, then pooled to G × G if needed."""

    def __init__(self, c_in: int, c0: int, grid: int, norm_groups: int) -> None:
        super().__init__()
        self.grid = grid
        self.net = nn.Sequential(
            nn.Conv2d(c_in, c0, 7, 2, 3, bias=False),
            _norm(c0, norm_groups),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )

    def forward(self, batch: ModalityBatch) -> Tensor:
        x = self.net(batch.data)
        if x.shape[-2:] != (self.grid, self.grid):
            x = F.adaptive_avg_pool2d(x, self.grid)
        return x


class GridAdapter(nn.Module):
    """Any kind → its `build_encoder` vector → Linear → (c₀, G, G) → Norm → ReLU."""

    def __init__(
        self, spec: ModalitySpec, c0: int, grid: int, dim: int, norm_groups: int, **options: Any
    ) -> None:
        super().__init__()
        self.c0, self.grid = c0, grid
        self.encoder = build_encoder(spec, dim, **options)
        self.proj = nn.Linear(dim, c0 * grid * grid)
        self.norm = _norm(c0, norm_groups)

    def forward(self, batch: ModalityBatch) -> Tensor:
        z = rearrange(
            self.proj(self.encoder(batch)), "b (c h w) -> b c h w", c=self.c0, h=self.grid
        )
        return F.relu(self.norm(z))


# --------------------------------------------------------------------------- the model


def default_schedule(modalities: Sequence[str], max_stages: int | None = None) -> list[list[str]]:
    """`[[m1, m2], [m1, m2], [m3], ...]`; one modality gives `[[m, m], [m, m]]`. With more
    modalities than `max_stages` allows one per stage, m3… are split in order into
    `max_stages − 2` groups (at least one) of near-equal size, one group per stage (None: no
    limit)."""
    ms = list(modalities)
    pair = [ms[0], ms[1]] if len(ms) > 1 else [ms[0], ms[0]]
    rest = ms[2:]
    slots = len(rest) if max_stages is None else max(1, max_stages - 2)
    if len(rest) <= slots:
        return [pair, list(pair)] + [[m] for m in rest]
    size, extra = divmod(len(rest), slots)
    sizes = [size + (i < extra) for i in range(slots)]
    starts = [sum(sizes[:i]) for i in range(slots)]
    return [pair, list(pair)] + [rest[a : a + n] for a, n in zip(starts, sizes, strict=True)]


def _schedule(
    schedule: Sequence[Sequence[str]] | None,
    specs: Mapping[str, ModalitySpec],
    max_stages: int,
) -> list[list[str]]:
    """The checked injection schedule (the default one for None)."""
    if max_stages < 2:
        raise ConfigError(f"ehpal: max_stages must be at least 2, not {max_stages}")
    if schedule is None:
        return default_schedule(list(specs), max_stages)

    def fail(why: str) -> None:
        raise ConfigError(
            f"ehpal: injection_schedule {[list(s) for s in schedule]} {why}; expected "
            "[[a, b], [a, b], [c], [d, e], ...]: the same pair at stages 1-2, then one or more "
            "modalities per stage"
        )

    if len(schedule) < 2:
        fail("needs at least 2 stages")
    if len(schedule[0]) != 2 or list(schedule[0]) != list(schedule[1]):
        fail("must start with the same pair of modalities twice")
    if any(len(s) == 0 or len(set(s)) != len(s) for s in schedule[2:]):
        fail("must inject one or more different modalities per stage after stage 2")
    unknown = [m for stage in schedule for m in stage if m not in specs]
    if unknown:
        raise ConfigError(
            f"ehpal: injection_schedule names modality '{unknown[0]}', which is not one of "
            f"{list(specs)}"
        )
    return [list(s) for s in schedule]


def _group_mean(grids: list[Tensor], present: list[Tensor]) -> tuple[Tensor, Tensor]:
    """The mean of a stage's grids over the modalities each sample has (zero where it has
    none), and where it has any: one modality's grid and presence as they are."""
    if len(grids) == 1:
        return grids[0], present[0]
    mask = torch.stack(present, 0).to(grids[0].dtype)  # (m, B)
    total = sum(g * w[:, None, None, None] for g, w in zip(grids, mask, strict=True))
    count = mask.sum(0).clamp(min=1.0)
    return total / count[:, None, None, None], mask.sum(0) > 0


_CHOICES: dict[str, tuple[str, ...]] = {
    "mhcf_activation": ("gelu", "relu"),
    "fractal_constraint": ("elementwise_clip", "keras_minmaxnorm"),
    "poincare": ("exp_map", "as_coded"),
    "gate": ("per_channel", "reference"),
    "volumes": ("adapter", "refuse"),
}


def _stages(
    widths: Sequence[int], conv: dict[str, Any], mac: dict[str, Any], always_project: bool
) -> tuple[nn.ModuleList, nn.ModuleDict]:
    """The K stages, and the downsampling of each modality injected at stage k ≥ 3."""
    stages, inject = nn.ModuleList(), nn.ModuleDict()
    c0 = widths[0]
    kw = dict(conv=conv, mac=mac, always_project=always_project)
    for k, f in enumerate(widths):
        c_a, c_b = (c0, c0) if k == 0 else (widths[k - 1], widths[k - 1] if k == 1 else f)
        stages.append(Stage(c_a, c_b, f, first=k == 0, side_widths=widths[k + 1 :], **kw))
        if k >= 2:  # stem → (k − 1) stride-2 MHCF(f_k) blocks to stream A's resolution
            blocks = [MHCF(c0 if i == 0 else f, f, 2, **conv) for i in range(k - 1)]
            inject[str(k)] = nn.Sequential(*blocks)
    return stages, inject


@register_model("ehpal")
class EHPALNet(MultimodalModel):
    """Two-stream staged CNN with physics-inspired cross-modal channel gating (EHPAL-Net).

    Args:
        width: channel multiplier of the widths 64/128/256/512 (1 = the paper; the default
            0.25 gives 16/32/64/128, for ~100-patient cohorts on a CPU).
        grid_size: G, the side of the grid every stem/adapter produces at stage 1 (the paper's
            128² images give 32).
        injection_schedule: modalities per stage, `[[a, b], [a, b], [c], [d, e], ...]`; a
            stage of several modalities injects the mean of their grids over the ones each
            sample has. None: the order of `specs`, one modality per stage up to `max_stages`.
        max_stages: the most stages the default schedule has; with more modalities, m3… are
            grouped into `max_stages − 2` stages. None: the most whose maps stay at least 2×2,
            max(2, ⌊log2 G⌋) (3 at G = 8). At least M gives one modality per stage.
        groups: groups of the grouped 1×1 convs and of the channel shuffle (8 in the code).
        norm_groups: GroupNorm groups replacing BatchNorm (1: per-sample LayerNorm over C×H×W).
        mhcf_activation: "gelu" (survival notebook) or "relu" (classification notebook).
        always_project_shortcut: the code's always-on RGSA shortcut projection.
        fractal_dim: initial fractal dimension S of every MACFusion unit.
        fractal_constraint: "elementwise_clip" (each Sᵢ in [1, 2]) or "keras_minmaxnorm".
        poincare: "exp_map" (textbook) or "as_coded".
        learnable_curvature: train the curvature θ_c of MACFusion (True in the code).
        dropout: the head's dropout before GAP (0.25 in the code).
        mc_dropout_at_inference: keep that dropout on in eval mode (the code's MC-dropout).
        per_sample_missing: presence-aware gating, sides and merge (reconstruction); False
            treats zero-filled absent inputs as data, as the code would.
        volumes: "adapter" (3D CNN encoder + to-grid adapter) or "refuse" 3D volumes.
        adapter_dim: width of the encoder vector behind each to-grid adapter.
        encoder: further `build_encoder` options of the adapters' encoders.
    """

    # how `polyfuse tune` searches it (the shared training dimensions are added there)
    search_space: ClassVar[dict[str, Any]] = {
        "width": Categorical((0.125, 0.25, 0.5)),
        "grid_size": Categorical((4, 8)),
        "mhcf_activation": Categorical(("gelu", "relu")),
        "fractal_dim": Float(1.2, 2.0),
        "adapter_dim": Categorical((32, 64, 128)),  # the adapters' encoder width
    }

    regime = THREE_FOLDS

    def __init__(
        self,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        *,
        width: float = 0.25,
        grid_size: int = 8,
        injection_schedule: Sequence[Sequence[str]] | None = None,
        max_stages: int | None = None,
        groups: int = 8,
        norm_groups: int = 1,
        mhcf_activation: Literal["gelu", "relu"] = "gelu",
        always_project_shortcut: bool = False,
        fractal_dim: float = 1.8,
        fractal_constraint: Literal["elementwise_clip", "keras_minmaxnorm"] = "elementwise_clip",
        poincare: Literal["exp_map", "as_coded"] = "exp_map",
        learnable_curvature: bool = True,
        gate: Literal["per_channel", "reference"] = "per_channel",
        dropout: float = 0.25,
        mc_dropout_at_inference: bool = False,
        per_sample_missing: bool = True,
        volumes: Literal["adapter", "refuse"] = "adapter",
        adapter_dim: int = 64,
        encoder: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(specs, tasks)
        check_choices(
            "ehpal",
            _CHOICES,
            mhcf_activation=mhcf_activation,
            fractal_constraint=fractal_constraint,
            poincare=poincare,
            gate=gate,
            volumes=volumes,
        )
        if width <= 0 or grid_size < 1 or groups < 1 or norm_groups < 1 or adapter_dim < 1:
            raise ConfigError(
                "ehpal: width must be > 0 and grid_size, groups, norm_groups, adapter_dim >= 1"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"ehpal: dropout must lie in [0, 1), got {dropout}")
        if max_stages is None:  # every stage's map at least 2×2
            max_stages = max(2, int(math.log2(grid_size)))
        self.schedule = _schedule(injection_schedule, specs, max_stages)
        used = {m for stage in self.schedule for m in stage}
        self.used_modalities = tuple(m for m in specs if m in used)
        self.per_sample_missing = per_sample_missing
        self.mc_dropout_at_inference = mc_dropout_at_inference
        self.dropout = dropout
        n = len(self.schedule)
        self.widths = [_round(min(64 * 2**k, 512) * width, groups) for k in range(n)]
        self.to_grid = self._build_to_grid(
            specs, grid_size, norm_groups, volumes, adapter_dim, encoder or {}
        )
        conv = dict(groups=groups, norm_groups=norm_groups, activation=mhcf_activation)
        mac = dict(
            fractal_dim=fractal_dim,
            fractal_constraint=fractal_constraint,
            poincare=poincare,
            learnable_curvature=learnable_curvature,
            gate=gate,
        )
        self.stages, self.inject = _stages(self.widths, conv, mac, always_project_shortcut)
        self.embed_dim = self.widths[-1] * (1 + 2 * (n - 1))
        self.heads = build_heads(tasks, self.embed_dim)

    def _build_to_grid(
        self,
        specs: dict[str, ModalitySpec],
        grid_size: int,
        norm_groups: int,
        volumes: str,
        adapter_dim: int,
        encoder: Mapping[str, Any],
    ) -> nn.ModuleDict:
        """Each used modality onto the stage-1 grid: the paper's stem for 2D images, a learned
        adapter for every other kind."""
        c0, to_grid = self.widths[0], nn.ModuleDict()
        for m in self.used_modalities:
            spec = specs[m]
            if spec.kind == "image" and spec.spatial_dims == 2:
                to_grid[m] = ImageStem(spec.width, c0, grid_size, norm_groups)
                continue
            if spec.kind == "image" and volumes == "refuse":
                raise ConfigError(
                    f"ehpal: modality '{m}' is a 3D volume {spec.shape}; the EHPAL backbone is "
                    "2D (Conv2d stems and grids) and the paper has no volumetric stem. Use "
                    "volumes='adapter' (3D CNN encoder + learned to-grid adapter) or give 2D "
                    "slices or precomputed features"
                )
            to_grid[m] = GridAdapter(spec, c0, grid_size, adapter_dim, norm_groups, **encoder)
        return to_grid

    def fuse(self, inputs: dict[str, ModalityBatch]) -> tuple[Tensor, dict[str, Tensor]]:
        grids = {m: self.to_grid[m](inputs[m]) for m in self.used_modalities}
        # without per-sample missingness every sample counts as present (absent = zero data)
        present = {
            m: inputs[m].present if self.per_sample_missing else torch.ones_like(inputs[m].present)
            for m in self.used_modalities
        }
        (ma, mb), aux = self.schedule[0], {}
        a, b, pa, pb = grids[ma], grids[mb], present[ma], present[mb]
        sides_a, sides_b = [], []
        for k, stage in enumerate(self.stages):
            if k >= 2:
                grid, pb = _group_mean(
                    [grids[m] for m in self.schedule[k]], [present[m] for m in self.schedule[k]]
                )
                b = self.inject[str(k)](grid)
            a, b, sides, infos = stage(a, b, pa, pb)
            if sides:
                sides_a.append(sides[0])
                sides_b.append(sides[1])
                pa = pa | pb
            for name, info in infos.items():
                for s in ("a", "b"):
                    aux[f"attention/stage{k + 1}/{name}/{s}"] = info[s]
                    aux[f"gate/stage{k + 1}/{name}/{s}"] = info[f"g{s}"]
        h = torch.cat([a, *sides_a, *sides_b], dim=1)
        h = F.dropout(h, self.dropout, training=self.training or self.mc_dropout_at_inference)
        return reduce(h, "b c h w -> b c", "mean"), aux


__all__ = ["MHCF", "RGSA", "EHPALNet", "SIRUnit", "channel_shuffle"]
