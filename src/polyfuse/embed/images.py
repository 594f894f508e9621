"""Pretrained image backbones from MONAI, 2D or 3D, with weights from a file the user has.

MONAI's networks (ResNet, DenseNet, ViT) run on the pinned CPU PyTorch build and take 2D
images and 3D volumes alike; timm was not chosen because it needs torchvision, whose wheels for
PyTorch 2.13.0 do not load with the CPU build (checked 2026-12: `torchvision::nms` missing).
Weights come from a safetensors file (or a weights-only PyTorch file, e.g. MedicalNet's 3D
ResNets), never from the network. The backbone's input channels are read from the weights, so
a grey image is repeated to RGB for an ImageNet backbone. Preprocessing follows the weights'
family: ImageNet statistics for 2D (pixels scaled to 0–1 by their bit depth), a z-score over
the non-zero voxels per volume for 3D (MedicalNet's). The classification head is never used:
the backbone's pooled features are the embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyfuse.errors import ConfigError, DataError, require

__all__ = ["ARCHITECTURES", "BackboneNet", "FrozenBatchNorm", "ImageBackbone"]

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "resnet18": {"family": "resnet", "depth": 18},
    "resnet34": {"family": "resnet", "depth": 34},
    "resnet50": {"family": "resnet", "depth": 50},
    "densenet121": {"family": "densenet"},
    "vit-s": {"family": "vit", "hidden": 384, "mlp": 1536, "heads": 6},
    "vit-b": {"family": "vit", "hidden": 768, "mlp": 3072, "heads": 12},
}
"""Backbone name → its MONAI architecture (ViT: 12 layers, 16-pixel patches)."""

_HEADS = ("fc.", "class_layers.out.", "classification_head.", "head.")
"""Classification heads: ignored in a weights file (the embedding is taken before them)."""

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneNet(nn.Module):
    """A MONAI backbone with its preprocessing, as a module: `forward` gives the pooled
    features `(B, dim)`, `tokens` the ViT's patch tokens `(B, P, dim)` (a CNN's pooled vector
    as one token). Trainable when a model fine-tunes it; batch-norm statistics stay at their
    pretrained values even then (`FrozenBatchNorm`): a small cohort's batches would ruin them,
    and a sample's output must not depend on the rest of its batch.

    Args:
        name: a key of `ARCHITECTURES` (`BACKBONES` in `polyfuse.embed.encoders`).
        weights: the weights file.
        spatial_dims: 2 or 3.
        size: what the backbone sees (images are resized to it); None keeps their size.
        normalize: "imagenet", "zscore", "none", or "auto" (by `spatial_dims`).
    """

    def __init__(
        self,
        name: str,
        weights: Path,
        spatial_dims: int,
        size: tuple[int, ...] | None = None,
        normalize: str = "auto",
    ) -> None:
        super().__init__()
        if name not in ARCHITECTURES:
            raise ConfigError(f"unknown backbone '{name}'; use one of {', '.join(ARCHITECTURES)}")
        self.name = name
        self.spatial_dims = spatial_dims
        self.size = size
        self.normalize = (
            {2: "imagenet", 3: "zscore"}[spatial_dims] if normalize == "auto" else normalize
        )
        state = _read_weights(Path(weights))
        self.in_channels = _input_channels(state, Path(weights))
        self.net = _build(ARCHITECTURES[name], spatial_dims, self.in_channels, size, state)
        _freeze_batch_norm(self.net)
        _load(self.net, state, Path(weights), name)
        probe = torch.zeros(1, self.in_channels, *_probe(size, spatial_dims))
        with torch.no_grad():
            self.dim = int(self(probe).shape[1])
            tokens = self.tokens(probe)
        self.token_shape: tuple[int, int] = (int(tokens.shape[1]), int(tokens.shape[2]))
        """Tokens per image and their width."""

    def forward(self, x: Tensor) -> Tensor:
        out = self.net(self.prepare(x))
        if isinstance(out, tuple):  # ViT: (tokens, hidden states) → mean over tokens
            return out[0].mean(dim=1)
        return out

    def tokens(self, x: Tensor) -> Tensor:
        out = self.net(self.prepare(x))
        return out[0] if isinstance(out, tuple) else out[:, None]

    def prepare(self, x: Tensor) -> Tensor:
        """Channels to the backbone's, intensities normalised, resized."""
        x = _match_channels(x, self.in_channels)
        if self.normalize == "imagenet":
            top = x.flatten(1).amax(1).view(-1, *[1] * (x.dim() - 1))
            x = x / _pixel_scale(top)
            c = x.shape[1]
            mean = x.new_tensor(_IMAGENET_MEAN if c == 3 else [sum(_IMAGENET_MEAN) / 3] * c)
            std = x.new_tensor(_IMAGENET_STD if c == 3 else [sum(_IMAGENET_STD) / 3] * c)
            shape = (1, c) + (1,) * self.spatial_dims
            x = (x - mean.view(shape)) / std.view(shape)
        elif self.normalize == "zscore":
            x = _zscore_nonzero(x)
        if self.size is not None and tuple(x.shape[2:]) != tuple(self.size):
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            x = F.interpolate(x, size=tuple(self.size), mode=mode, align_corners=False)
        return x


class ImageBackbone:
    """A frozen `BackboneNet` for the data layer: NumPy in, `(n, dim)` embeddings out."""

    def __init__(self, net: BackboneNet) -> None:
        self.net = net.eval().requires_grad_(False)
        self.name = net.name
        self.dim = net.dim

    def embed(self, images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(images, np.float32))
            return self.net(x).numpy().astype(np.float32)

    def embed_tiles(self, tiles: np.ndarray) -> np.ndarray:
        """Slide tiles, uint8 `(n, H, W, 3)` RGB, as the slide embedder hands them."""
        return self.embed(np.moveaxis(tiles, -1, 1))


class FrozenBatchNorm(nn.Module):
    """Batch norm with its running statistics fixed, in training too; the affine scale and
    shift still train. Its tensors keep batch norm's names, so pretrained weights load."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.eps = bn.eps
        self.weight = nn.Parameter(bn.weight.detach().clone())
        self.bias = nn.Parameter(bn.bias.detach().clone())
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, getattr(bn, name).detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return x * scale.view(shape) + (self.bias - self.running_mean * scale).view(shape)


def _freeze_batch_norm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and child.affine:
            setattr(module, name, FrozenBatchNorm(child))
        else:
            _freeze_batch_norm(child)


def _pixel_scale(top: Tensor) -> Tensor:
    """The divisor that brings pixels to 0–1: 1 (already), 255 (8-bit) or 65535 (16-bit)."""
    return torch.where(top <= 1, 1.0, torch.where(top <= 255, 255.0, 65535.0))


def _zscore_nonzero(x: Tensor) -> Tensor:
    """Per volume, (x − mean) / std over its non-zero voxels; background stays at 0."""
    flat = x.flatten(1)
    nonzero = flat != 0
    count = nonzero.sum(1).clamp(min=1)
    mean = (flat * nonzero).sum(1) / count
    var = (((flat - mean[:, None]) * nonzero) ** 2).sum(1) / count
    std = var.sqrt().clamp(min=1e-6)
    shape = (-1,) + (1,) * (x.dim() - 1)
    return ((x - mean.view(shape)) / std.view(shape)) * nonzero.view_as(x)


def _match_channels(x: Tensor, want: int) -> Tensor:
    c = x.shape[1]
    if c == want:
        return x
    if c == 4 and want == 3:  # RGBA: drop the alpha
        return x[:, :3]
    if c == 1:
        return x.expand(-1, want, *x.shape[2:])
    if want == 1 and c in (3, 4):
        return x[:, :3].mean(dim=1, keepdim=True)
    raise DataError(
        f"images have {c} channels, the backbone's weights take {want}; convert the images"
    )


def _probe(size: tuple[int, ...] | None, spatial_dims: int) -> tuple[int, ...]:
    """A spatial size to measure the output width with."""
    return tuple(size) if size is not None else (64,) * spatial_dims


def _read_weights(path: Path) -> dict[str, Any]:
    """A state dict from safetensors or a weights-only PyTorch file, `module.` prefixes
    dropped (DataParallel checkpoints such as MedicalNet's)."""
    if not path.is_file():
        raise ConfigError(
            f"backbone weights not found: {path} (needed to build the backbone, also when a "
            "saved run is loaded; put the file back)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
    except Exception as exc:  # each format raises its own types for a bad file
        raise DataError(
            f"{path}: cannot read backbone weights ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, dict) or not state:
        raise DataError(f"{path}: holds no weights (expected a state dict of tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _input_channels(state: dict[str, Any], path: Path) -> int:
    for key in ("conv1.weight", "features.conv0.weight", "patch_embedding.patch_embeddings.weight"):
        if key in state:
            return int(state[key].shape[1])
    if "patch_embedding.patch_embeddings.1.weight" in state:  # ViT's linear patch projection
        raise ConfigError(f"{path}: a ViT with a linear patch embedding is not supported")
    raise ConfigError(
        f"{path}: not the weights of a MONAI ResNet, DenseNet or ViT (no first layer found among "
        f"{sorted(state)[:5]}...)"
    )


def _build(spec: dict[str, Any], dims: int, channels: int, size: Any, state: dict) -> Any:
    nets = require("monai.networks.nets", "imaging")
    family = spec["family"]
    if family == "resnet":
        # MedicalNet's 3D ResNet-18/34 use shortcut "A" (no projection convolutions)
        shortcut = "B" if any(".downsample." in k for k in state) else "A"
        net = getattr(nets, f"resnet{spec['depth']}")(
            spatial_dims=dims, n_input_channels=channels, feed_forward=False, shortcut_type=shortcut
        )
        return net
    if family == "densenet":
        net = nets.DenseNet121(spatial_dims=dims, in_channels=channels, out_channels=1)
        net.class_layers.out = _identity()
        return net
    if size is None:
        raise ConfigError("a ViT backbone needs encoder.size (the image size its weights expect)")
    return nets.ViT(
        in_channels=channels,
        img_size=tuple(size),
        patch_size=16,
        hidden_size=spec["hidden"],
        mlp_dim=spec["mlp"],
        num_layers=12,
        num_heads=spec["heads"],
        classification=False,
        spatial_dims=dims,
    )


def _identity() -> nn.Module:
    return nn.Identity()


def _load(net: Any, state: dict[str, Any], path: Path, name: str) -> None:
    """Load strictly, but for classification heads: a missing or foreign tensor is an error
    naming the file, never a silently random layer."""
    state = {k: v for k, v in state.items() if not k.startswith(_HEADS)}
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            problems.append(
                f"{len(wrong)} of another shape (e.g. {k}: {tuple(state[k].shape)}, "
                f"the backbone has {tuple(own[k].shape)})"
            )
        raise ConfigError(
            f"{path}: the weights do not fit backbone '{name}': "
            + "; ".join(problems)
            + "; check the backbone name, the size (ViT) and that the images' dimensionality "
            "matches the weights'"
        )
    net.load_state_dict(state, strict=False)
