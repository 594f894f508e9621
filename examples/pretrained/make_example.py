"""Write the pretrained-encoders example beside this script: a small cohort with a report, a
chest film (PNG), a CT volume (.npy) and a whole slide (pyramidal TIFF, Aperio-style) per
patient, and stand-in backbone weights.

The weights are MONAI networks at their random initialisation, saved as safetensors, so that the
example runs offline: for real work, put your own pretrained files at the paths the experiment
names (e.g. ImageNet or pathology weights for the 2D ResNet, MedicalNet's for the 3D one).

    .venv/bin/python examples/pretrained/make_example.py
    .venv/bin/polyfuse cv examples/pretrained/experiment.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile
import torch
from monai.networks.nets import resnet18
from PIL import Image
from safetensors.torch import save_file

from polyfuse.datasets.reports import make_reports

HERE = Path(__file__).parent
STAINS = {0: (225, 140, 195), 1: (125, 60, 165)}  # eosin-like pink, haematoxylin-like purple


def write_slide(path: Path, label: int, rng: np.random.Generator, side: int = 1024) -> None:
    """A 20× Aperio-style pyramidal TIFF: glass with two stained regions whose hue follows the
    label, three levels of 256-pixel tiles."""
    image = 250 - rng.integers(0, 6, (side, side, 3))
    for _ in range(2):
        top, left = rng.integers(0, side // 2, 2)
        h, w = rng.integers(side // 4, side // 2, 2)
        texture = rng.integers(-20, 21, (h, w, 3))
        image[top : top + h, left : left + w] = np.asarray(STAINS[label]) + texture
    level = np.clip(image, 0, 255).astype(np.uint8)
    description = f"Aperio Image Library v12.0.15\n{side}x{side} (256x256) |AppMag = 20"
    with tifffile.TiffWriter(path) as tif:
        for i in range(3):
            tif.write(
                level,
                tile=(256, 256),
                photometric="rgb",
                compression="zlib",
                description=description if i == 0 else None,
                subfiletype=0 if i == 0 else 1,
                metadata=None,  # else tifffile's own description hides Aperio's
            )
            level = level.reshape(level.shape[0] // 2, 2, level.shape[1] // 2, 2, 3).mean((1, 3))
            level = level.astype(np.uint8)


def write_example(folder: Path, n: int = 40, seed: int = 0) -> Path:
    """The cohort, files and weights under `folder`; returns the manifest."""
    rng = np.random.default_rng(seed)
    frame = make_reports(n, seed=seed)[["id", "report", "age", "label"]]
    for sub in ("films", "volumes", "slides", "weights"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    films, volumes, slides = [], [], []
    for i, (sample, label) in enumerate(zip(frame["id"], frame["label"], strict=True)):
        film = rng.normal(90 + 40 * label, 25, (64, 64)).clip(0, 255).astype(np.uint8)
        Image.fromarray(film).save(folder / "films" / f"{sample}.png")
        volume = rng.normal(label, 1, (1, 16, 32, 32)).astype(np.float32)
        np.save(folder / "volumes" / f"{sample}.npy", volume)
        write_slide(folder / "slides" / f"{sample}.svs", int(label), rng)
        films.append(f"films/{sample}.png")
        volumes.append(None if i % 7 == 3 else f"volumes/{sample}.npy")  # some have no CT
        slides.append(f"slides/{sample}.svs")
    frame = frame.assign(film=films, ct=volumes, slide=slides)
    frame.to_csv(folder / "patients.csv", index=False)
    torch.manual_seed(seed)
    two = resnet18(spatial_dims=2, n_input_channels=3, num_classes=2)
    three = resnet18(spatial_dims=3, n_input_channels=1, num_classes=2, shortcut_type="A")
    save_file(two.state_dict(), str(folder / "weights" / "resnet18_2d.safetensors"))
    save_file(three.state_dict(), str(folder / "weights" / "resnet18_3d.safetensors"))
    return folder / "patients.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--folder", type=Path, default=HERE)
    args = parser.parse_args()
    table = write_example(args.folder, args.patients)
    print(f"wrote {table} and its files; now: polyfuse cv {args.folder / 'experiment.yaml'}")


if __name__ == "__main__":
    main()
