"""Whole-slide embedding streams: tiles per second, and memory that does not grow with the slide.

For each requested side S (default 10,000 and 20,000 pixels), a synthetic S × S slide is written
with tifffile as an Aperio-style pyramidal TIFF (stating 20×; 256-pixel tiles, deflate at zlib
level 1, as tifffile writes JPEG only with imagecodecs; levels halved down to 1,024 pixels or
less), one tile at a time from a generator, so the slide never exists in memory: a painted
pattern, three elliptical stains (pink and purple, textured) on white glass with noise,
evaluated at each tile's level-0 coordinates. The slide is then cut and embedded by
`polyfuse.embed.slides.embed_slide` at 20× with 224-pixel tiles (min_tissue 0.5, batches of 64)
through a small fixed CNN (three stride-2 3 × 3 convolutions, 16/32/64 channels, ReLU, global
mean: 64 features; random weights, `torch.no_grad`, one torch thread).

Writing and embedding each run in a fresh process, so each peak is its own. Recorded: tiles,
tiles per wall and per CPU second, the share of wall time spent inside the CNN (the rest is
reading through OpenSlide, resizing and writing the HDF5 bag), the resident memory of the
embedding process: its peak after the imports and one batch through the CNN (`VmHWM`), its
resident memory just before `embed_slide`, its peak during `embed_slide` (`VmHWM` again, reset
just before through ``/proc/self/clear_refs``) and ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
at the end; and the writer's peak (``ru_maxrss``). Memory is bounded when the peak does not
grow with S² (4× the area from 10,000 to 20,000). Files go to a temporary folder (``--root`` to
choose one), never into the repository, and are removed at the end.

    taskset -c 1 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/slide_embedding.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

TILE = 256  # the TIFF's own tile side
POWER = 20
# (centre x, centre y, radius x, radius y) as fractions of the slide's side
STAINS = [(0.30, 0.32, 0.20, 0.16), (0.66, 0.58, 0.22, 0.20), (0.38, 0.80, 0.14, 0.10)]
PINK, PURPLE = np.array([225.0, 140.0, 195.0]), np.array([125.0, 60.0, 165.0])


def paint(x: np.ndarray, y: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """The slide's RGB at level-0 coordinates `x` (columns) and `y` (rows), as uint8."""
    u, v = x[None, :] / side, y[:, None] / side
    stained = np.zeros((len(y), len(x)), bool)
    for cx, cy, rx, ry in STAINS:
        stained |= ((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2 <= 1
    mix = (0.5 + 0.5 * np.sin(u * 40 + v * 25))[..., None]  # pink and purple regions
    texture = (12 * np.sin(x[None, :] / 9.0) * np.sin(y[:, None] / 13.0))[..., None]
    stain = mix * PINK + (1 - mix) * PURPLE + texture
    noise = rng.integers(-6, 7, (len(y), len(x), 3))
    rgb = np.where(stained[..., None], stain + noise, 250 + noise // 2)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def tiles(side: int, downsample: int, seed: int) -> Iterator[np.ndarray]:
    """The tiles of one pyramid level, row by row, each painted at its own coordinates."""
    rng = np.random.default_rng(seed)
    size = side // downsample
    for top in range(0, size, TILE):
        for left in range(0, size, TILE):
            x = (left + np.arange(TILE)) * downsample
            y = (top + np.arange(TILE)) * downsample
            yield paint(x.astype(np.float64), y.astype(np.float64), side, rng)


def write_slide(path: Path, side: int) -> dict[str, Any]:
    """The pyramidal slide, streamed to disk; its size, levels and the writer's cost."""
    import tifffile

    wall = time.perf_counter()
    description = f"Aperio Image Library v12.0.15\n{side}x{side} |AppMag = {POWER}|MPP = 0.5"
    levels = [1]
    while side // levels[-1] > 1024:
        levels.append(levels[-1] * 2)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for i, downsample in enumerate(levels):
            size = side // downsample
            tif.write(
                tiles(side, downsample, seed=i),
                shape=(size, size, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                compression="zlib",
                compressionargs={"level": 1},  # level 6 would take 10× longer to write
                description=description if i == 0 else None,
                subfiletype=0 if i == 0 else 1,
                metadata=None,
            )
    return {
        "side": side,
        "levels": len(levels),
        "disk_bytes": path.stat().st_size,
        "write_s": time.perf_counter() - wall,
        "writer_maxrss": _maxrss(),
    }


def cnn() -> Any:
    """The fixed stand-in encoder: 3 stride-2 convolutions and a global mean, 64 features."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return net.eval()


def backbone(name: str, tile_size: int, folder: Path) -> Any:
    """A MONAI backbone as `polyfuse embed` runs it (`ImageBackbone`), with randomly
    initialised weights written to a safetensors file: the cost of a real one, not its use."""
    import torch
    from monai.networks import nets
    from safetensors.torch import save_file

    from polyfuse.embed.images import BackboneNet, ImageBackbone

    torch.manual_seed(0)
    weights = folder / f"{name}.safetensors"
    save_file(getattr(nets, name)(spatial_dims=2, n_input_channels=3).state_dict(), str(weights))
    return ImageBackbone(BackboneNet(name, weights, 2, (tile_size, tile_size)))


def embed(path: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """`embed_slide` through the CNN, timed, with memory before it and at its peak."""
    import torch

    from polyfuse.embed.slides import SlideTiling, embed_slide

    torch.set_num_threads(args.threads)
    net = cnn() if args.backbone is None else backbone(args.backbone, args.tile_size, out.parent)
    inside = [0.0]

    @torch.no_grad()
    def embed_tiles(batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        if args.backbone is None:
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
            vectors = net(x).numpy()
        else:  # polyfuse's own path: ImageNet normalisation, the MONAI network
            vectors = net.embed_tiles(batch)
        inside[0] += time.perf_counter() - start
        return vectors

    embed_tiles(np.zeros((args.batch_size, args.tile_size, args.tile_size, 3), np.uint8))
    inside[0] = 0.0
    cnn_peak = _status("VmHWM")  # imports, and the CNN on one batch
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from here
    rss_before = _status("VmRSS")
    tiling = SlideTiling(
        magnification=args.magnification, tile_size=args.tile_size, batch_size=args.batch_size
    )
    wall, cpu = time.perf_counter(), time.process_time()
    n = embed_slide(path, embed_tiles, out, tiling)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "tiles": n,
        "wall_s": wall,
        "cpu_s": cpu,
        "cnn_s": inside[0],
        "bag_bytes": out.stat().st_size,
        "cnn_peak": cnn_peak,
        "rss_before": rss_before,
        "peak": _status("VmHWM"),
        "maxrss": _maxrss(),
    }


def _status(key: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS: now, VmHWM: the
    high-water mark), in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def report(results: list[dict[str, Any]]) -> None:
    print(
        "\n| slide | on disk | write | writer peak | tiles | embed wall | tiles/s wall "
        "| tiles/s CPU | in CNN | CNN alone peak | RSS before | peak in embed_slide | ru_maxrss |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['side']:,}² | {_mib(r['disk_bytes'])} | {r['write_s']:.0f} s "
            f"| {_mib(r['writer_maxrss'])} | {r['tiles']:,} | {r['wall_s']:.1f} s "
            f"| {r['tiles'] / r['wall_s']:.0f} | {r['tiles'] / r['cpu_s']:.0f} "
            f"| {r['cnn_s'] / r['wall_s']:.0%} | {_mib(r['cnn_peak'])} | {_mib(r['rss_before'])} "
            f"| {_mib(r['peak'])} | {_mib(r['maxrss'])} |"
        )
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(
            f"\n{b['side']:,}² against {a['side']:,}²: {(b['side'] / a['side']) ** 2:.0f}× the "
            f"area, {b['tiles'] / a['tiles']:.1f}× the tiles, peak in embed_slide "
            f"{b['peak'] / a['peak']:.2f}× ({_mib(b['peak'] - a['peak'])} more)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000])
    parser.add_argument("--magnification", type=float, default=20.0)
    parser.add_argument("--tile-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the CNN")
    parser.add_argument(
        "--backbone",
        choices=["resnet18", "resnet50"],
        default=None,
        help="a MONAI backbone through polyfuse's ImageBackbone instead of the small CNN",
    )
    parser.add_argument("--root", type=Path, default=None, help="where slides are written")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--write", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--embed", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--slide", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.write is not None:  # a child: write one slide
        args.out.write_text(json.dumps(write_slide(args.slide, args.write)))
        return
    if args.embed is not None:  # a child: embed one slide into the bag `args.embed`
        args.out.write_text(json.dumps(embed(args.slide, args.embed, args)))
        return

    results = []
    with tempfile.TemporaryDirectory(prefix="polyfuse-slides-", dir=args.root) as tmp:
        for side in sorted(args.sizes):
            slide, result = Path(tmp, f"slide{side}.svs"), Path(tmp, "result.json")
            record: dict[str, Any] = {}
            for step in (["--write", str(side)], ["--embed", str(Path(tmp, f"bag{side}.h5"))]):
                print(f"== {side:,}²: {step[0][2:]} (fresh process) ==", flush=True)
                command = [sys.executable, __file__, *sys.argv[1:], *step]
                command += ["--slide", str(slide), "--out", str(result)]
                subprocess.run(command, check=True)
                record |= json.loads(result.read_text())
            slide.unlink()
            results.append(record)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
