"""HEALNet against the authors' reference: same weights, equal outputs, timed in alternation.

The reference is `healnet/models/healnet.py` of konst-int-i/healnet at 90459b6 (MIT). The
project holds no copy of it: pass a checkout of that commit with `--reference`, e.g.

    git clone https://github.com/konst-int-i/healnet /tmp/healnet_ref
    git -C /tmp/healnet_ref checkout 90459b6
    .venv/bin/python benchmarks/healnet_reference.py --reference /tmp/healnet_ref

Only that one file is imported (it needs torch and einops, nothing else of the repository).

Set-up: the BLCA preset, omics 1 × 2,191 and a WSI bag of 4,000 patches × 2,048 features,
batch 4, one discrete-survival head of 4 bins, every modality present. polyfuse runs with the
code-behaviour flags (`per_sample_missing=False`, `self_attn_on_missing=True`) and its WSI in
the reference's layout (`wsi_tokens="feature_dims"`: the 2,048 feature dimensions are tokens
whose channels are the 4,000 patches, plus 5 Fourier channels over the feature axis). Each
model gets its own input format: polyfuse the bag (B, patches, features) it reads from data,
the reference the (B, features, patches) tensor its data loader builds. The reference's
weights are copied into polyfuse's modules, logits and gradients are compared, then both are
timed alternately (train step: forward, backward of the summed logits, zero_grad; eval forward
under `torch.no_grad`), CPU time (`time.process_time`) and wall time, medians.

A second race runs the reference's patch layout (a WSI input (B, patches, features) with one
spatial axis: 4,000 tokens of 2,048 features + 5 Fourier channels over the patch axis) against
polyfuse's `wsi_tokens="patches"` with `bag_positions=True` (the same Fourier channels, over each
bag's own instances: every bag here has 4,000). Weights are copied and logits and gradients
compared as in the first race, then both are timed.

`--before REV` also times polyfuse's models as they were at git revision REV of this checkout
(copied out of git into a temporary package `polyfuse_before`; nothing is checked out), so
that a change is measured against its predecessor in the same process. A revision without a
keyword of a race (`bag_positions`) builds that race's model without it: a different
computation, only timed.

`--device cuda` runs both on a GPU (TF32 off for the equality check; timings synchronise the
device; the peak memory of one train step is printed), and `--autocast` times both under bf16
autocast after the fp32 equality check. On a GPU, reduction orders differ between kernels, so
`--tolerance` may need to be looser than the CPU's 1e-5; the measured difference is printed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.models.healnet import HEALNet

BATCH, OMICS, PATCHES, FEATURES, BINS = 4, 2191, 4000, 2048, 4
SPECS = {
    "omics": ModalitySpec("omics", "tabular", (OMICS,)),
    "wsi": ModalitySpec("wsi", "bag", (FEATURES,)),
}
TASKS = {"os": TaskSpec("os", "survival", n_bins=BINS)}
CODE_FLAGS = dict(
    preset="blca",
    per_sample_missing=False,
    self_attn_on_missing=True,
    wsi_tokens="feature_dims",
    max_instances=PATCHES,
)
# the reference's patch layout: patches as tokens + 5 Fourier channels over the patch axis
PATCHES_FLAGS = {
    **CODE_FLAGS,
    "wsi_tokens": "patches",
    "max_instances": None,
    "bag_positions": True,
}


def load_reference(checkout: Path) -> ModuleType:
    path = checkout / "healnet" / "models" / "healnet.py"
    if not path.is_file():
        raise SystemExit(f"no reference at {path}: pass a checkout of konst-int-i/healnet@90459b6")
    spec = importlib.util.spec_from_file_location("healnet_reference_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_polyfuse_at(rev: str, root: Path) -> type[nn.Module]:
    """polyfuse's `HEALNet` class as it was at git revision `rev`, as package `polyfuse_before`."""
    repo = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", rev, "src/polyfuse"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    package = root / "polyfuse_before"
    (root / "src" / "polyfuse").rename(package)
    for file in package.rglob("*.py"):
        text = re.sub(r"\bpolyfuse\.", "polyfuse_before.", file.read_text())
        file.write_text(re.sub(r"\bfrom polyfuse import", "from polyfuse_before import", text))
    sys.path.insert(0, str(root))
    return importlib.import_module("polyfuse_before.models.healnet").HEALNet


def reference_model(module: ModuleType, wsi_channels: int) -> nn.Module:
    """The reference's HealNet with the BLCA preset; `wsi_channels`: patches (its feature-dims
    layout) or features (its patch layout)."""
    p = HEALNET_BLCA
    return module.HealNet(
        n_modalities=2,
        channel_dims=[OMICS, wsi_channels],
        num_spatial_axes=[1, 1],
        out_dims=BINS,
        depth=p["depth"],
        num_freq_bands=p["num_freq_bands"],
        max_freq=p["max_freq"],
        l_c=p["num_latents"],
        l_d=p["latent_dim"],
        x_heads=p["cross_heads"],
        l_heads=p["latent_heads"],
        cross_dim_head=p["cross_dim_head"],
        latent_dim_head=p["latent_dim_head"],
        attn_dropout=p["attn_dropout"],
        ff_dropout=p["ff_dropout"],
        weight_tie_layers=p["weight_tie_layers"],
        self_per_cross_attn=p["self_per_cross_attn"],
        snn=p["snn"],
    )


def weight_map(depth: int) -> dict[str, str]:
    """polyfuse parameter name → reference parameter name (BLCA: no self-attention, untied)."""
    names = {"latents": "latents", "norm.weight": "to_logits.1.weight"}
    names |= {"norm.bias": "to_logits.1.bias", "heads.os.weight": "to_logits.2.weight"}
    names["heads.os.bias"] = "to_logits.2.bias"
    cross = ["norm.weight", "norm.bias", "norm_context.weight", "norm_context.bias"]
    cross += ["fn.to_q.weight", "fn.to_kv.weight", "fn.to_out.weight", "fn.to_out.bias"]
    ff = ["norm.weight", "norm.bias", "fn.net.0.weight", "fn.net.0.bias"]
    ff += ["fn.net.2.weight", "fn.net.2.bias"]
    for i in range(depth):
        for j, m in enumerate(SPECS):
            for name in cross:
                ref = name.replace("fn.to_out.", "fn.to_out.0.")
                names[f"layers.{i}.cross.{m}.{name}"] = f"layers.{i}.{2 * j}.{ref}"
            for name in ff:
                names[f"layers.{i}.cross_ff.{m}.{name}"] = f"layers.{i}.{2 * j + 1}.{name}"
    return names


def copy_weights(ours: nn.Module, reference: nn.Module, depth: int) -> None:
    theirs = dict(reference.named_parameters())
    mapping = weight_map(depth)
    mine = dict(ours.named_parameters())
    assert set(mapping) == set(mine), set(mapping) ^ set(mine)
    assert set(mapping.values()) == set(theirs), set(mapping.values()) ^ set(theirs)
    with torch.no_grad():
        for name, ref in mapping.items():
            mine[name].copy_(theirs[ref])


def inputs() -> tuple[dict[str, ModalityBatch], list[torch.Tensor], list[torch.Tensor]]:
    """polyfuse's batch; the reference's in its feature-dims and in its patch layout."""
    g = torch.Generator().manual_seed(0)
    omics = torch.randn(BATCH, OMICS, generator=g)
    wsi = torch.randn(BATCH, PATCHES, FEATURES, generator=g)
    present = torch.ones(BATCH, dtype=torch.bool)
    ours = {
        "omics": ModalityBatch(omics, present),
        "wsi": ModalityBatch(wsi, present, torch.ones(BATCH, PATCHES, dtype=torch.bool)),
    }
    # the reference's loaders: omics (B, 1, F); WSI (B, features, patches), built beforehand
    feature_dims = [omics[:, None, :], wsi.transpose(1, 2).contiguous()]
    return ours, feature_dims, [omics[:, None, :], wsi]


def on_device(
    ours: dict[str, ModalityBatch], feature_dims: list[torch.Tensor], patches: list[torch.Tensor]
) -> tuple[dict[str, ModalityBatch], list[torch.Tensor], list[torch.Tensor]]:
    device = SETTINGS["device"]
    return (
        {m: b.to(device) for m, b in ours.items()},
        [t.to(device) for t in feature_dims],
        [t.to(device) for t in patches],
    )


def ours_logits(model: nn.Module, batch: Any) -> torch.Tensor:
    return model(batch).logits["os"]


def ref_logits(model: nn.Module, batch: Any) -> torch.Tensor:
    return model(list(batch))  # the reference writes into the list it is given


def max_difference(
    ours: nn.Module, other: tuple[nn.Module, Callable, Any], batch: Any, names: dict[str, str]
) -> float:
    """The largest |difference| of logits and gradients (dropout off); `other`: (model, its
    logits function, its batch); `names`: our parameter names → the other's."""
    model, logits, theirs = other
    ours.eval(), model.eval()
    a, b = ours_logits(ours, batch), logits(model, theirs)
    worst = float((a - b).detach().abs().max())
    a.sum().backward()
    b.sum().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    for name, p in ours.named_parameters():
        grad = grads[names.get(name, name)]
        assert p.grad is not None and grad is not None, name
        worst = max(worst, float((p.grad - grad).abs().max()))
    ours.zero_grad(set_to_none=True)
    model.zero_grad(set_to_none=True)
    return worst


SETTINGS: dict[str, Any] = {"device": torch.device("cpu"), "autocast": False, "tolerance": 1e-5}


def synchronize() -> None:
    if SETTINGS["device"].type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    synchronize()
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    synchronize()
    return time.process_time() - cpu, time.perf_counter() - wall


def autocast() -> torch.autocast:
    device = SETTINGS["device"].type
    return torch.autocast(device, dtype=torch.bfloat16, enabled=SETTINGS["autocast"])


def train_step(model: nn.Module, logits: Callable, batch: Any) -> Callable[[], None]:
    def step() -> None:
        with autocast():
            out = logits(model, batch)
        out.float().sum().backward()
        model.zero_grad(set_to_none=True)

    return step


def eval_forward(model: nn.Module, logits: Callable, batch: Any) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad(), autocast():
            logits(model, batch)

    return forward


def peak_memory(step: Callable[[], None]) -> str:
    """The GPU memory one call of `step` peaks at, above what was allocated before it, and
    the GPU kernels it launches (a small step is bound by launches, not arithmetic)."""
    if SETTINGS["device"].type != "cuda":
        return ""
    synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    synchronize()
    peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        step()
        synchronize()
    kernels = sum(e.device_type == torch.autograd.DeviceType.CUDA for e in prof.events())
    return f"  peak {peak:7.0f} MiB  kernels {kernels:5d}"


def race(contenders: dict[str, tuple[nn.Module, Callable, Any]], repeats: int) -> None:
    """Time each contender's train step and eval forward, alternating; print medians, ratios."""
    for phase, make in (("train step", train_step), ("eval forward", eval_forward)):
        runs = {name: make(*c) for name, c in contenders.items()}
        for name, run in runs.items():
            contenders[name][0].train(phase == "train step")
            run()  # warm-up
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                times[name].append(timed(run))
        cpu = {n: statistics.median(t[0] for t in ts) for n, ts in times.items()}
        wall = {n: statistics.median(t[1] for t in ts) for n, ts in times.items()}
        for name, run in runs.items():
            ratio = cpu["reference"] / cpu[name]
            wall_ratio = wall["reference"] / wall[name]
            print(
                f"  {phase:12s} {name:10s} cpu {cpu[name]:6.3f} s  wall {wall[name]:6.3f} s  "
                f"reference/this: cpu {ratio:4.2f}  wall {wall_ratio:4.2f}{peak_memory(run)}"
            )


HEALNET_BLCA: dict[str, Any] = {}


def layout(
    name: str,
    reference: nn.Module,
    ref_batch: list,
    models: dict[str, nn.Module],
    batch: Any,
    timed_only: frozenset[str] = frozenset(),
) -> None:
    """Check every polyfuse model against the reference (its weights copied), except those in
    `timed_only` (not the reference's computation), then race them all."""
    print(f"\n{name}")
    depth = HEALNET_BLCA["depth"]
    for label, model in models.items():
        params = sum(p.numel() for p in model.parameters())
        if label in timed_only:
            print(f"  {label}: {params:,} parameters (not the reference's computation)")
            continue
        # the reference's own computation: its weights, its outputs
        copy_weights(model, reference, depth)
        worst = max_difference(model, (reference, ref_logits, ref_batch), batch, weight_map(depth))
        against = "the reference"
        print(
            f"  {label}: {params:,} parameters; max |Δ| logits, gradients vs {against} {worst:.2e}"
        )
        assert worst <= SETTINGS["tolerance"], f"{label} differs from {against} by {worst}"
    contenders = {"reference": (reference, ref_logits, ref_batch)}
    contenders |= {label: (model, ours_logits, batch) for label, model in models.items()}
    race(contenders, REPEATS[0])


REPEATS = [7]


def build_before(before: type[nn.Module], flags: dict[str, Any]) -> tuple[nn.Module, list[str]]:
    """polyfuse at `--before`, with the flags its HEALNet takes; and those it does not."""
    accepted = inspect.signature(before).parameters
    dropped = [k for k in flags if k not in accepted]
    kept = {k: v for k, v in flags.items() if k in accepted}
    return before(SPECS, TASKS, **kept), dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, required=True, help="healnet checkout")
    parser.add_argument("--before", help="also time polyfuse at this git revision")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--autocast", action="store_true", help="time under bf16 autocast")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest |Δ| accepted")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    SETTINGS.update(device=torch.device(args.device), autocast=args.autocast)
    SETTINGS["tolerance"] = args.tolerance
    REPEATS[0] = args.repeats
    from polyfuse.models.healnet import HEALNET_PRESETS

    HEALNET_BLCA.update(HEALNET_PRESETS["blca"])
    module = load_reference(args.reference)
    device = SETTINGS["device"]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {where}, threads {torch.get_num_threads()}, batch {BATCH}")
    print(f"timed under bf16 autocast: {SETTINGS['autocast']}")
    ours, feature_dims, patches = on_device(*inputs())
    with tempfile.TemporaryDirectory() as tmp:
        before = load_polyfuse_at(args.before, Path(tmp)) if args.before else None
        for name, flags, ref_batch, channels in (
            ("feature dims (the reference's layout)", CODE_FLAGS, feature_dims, PATCHES),
            (
                "patches + 5 Fourier channels over patches (the reference's; bag_positions)",
                PATCHES_FLAGS,
                patches,
                FEATURES,
            ),
        ):
            torch.manual_seed(0)
            reference = reference_model(module, channels).to(device)
            models = {"polyfuse": HEALNet(SPECS, TASKS, **flags).to(device)}
            timed_only: frozenset[str] = frozenset()
            if before is not None:
                models["before"], dropped = build_before(before, flags)
                models["before"].to(device)
                if dropped:
                    print(f"\n(polyfuse at {args.before} has no {', '.join(dropped)}: timed only)")
                    timed_only = frozenset({"before"})
            layout(name, reference, ref_batch, models, ours, timed_only)


if __name__ == "__main__":
    main()
