"""The pretrained encoders by name: which modality kinds each takes, checked before any import.

`check_encoder` runs while the config is checked (cheap: names only); `load_encoder` builds the
encoder (heavy: torch, sentence-transformers or MONAI are imported then).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from polyfuse.config import EncoderConfig
from polyfuse.embed.cache import file_key
from polyfuse.errors import ConfigError, did_you_mean

__all__ = [
    "BACKBONES",
    "ENCODERS",
    "Encoder",
    "check_encoder",
    "encoder_fingerprint",
    "image_size",
    "load_encoder",
]

TEXT_ENCODERS = ("minilm", "wordllama")
BACKBONES = ("resnet18", "resnet34", "resnet50", "densenet121", "vit-s", "vit-b")
"""MONAI image backbones (`polyfuse.embed.images.ARCHITECTURES` builds each)."""

ENCODERS: dict[str, tuple[str, ...]] = {
    **{name: ("text",) for name in TEXT_ENCODERS},
    **{name: ("image", "bag") for name in BACKBONES},
}
"""Encoder name → the modality kinds it embeds (a bag: whole slides, tile by tile)."""


class Encoder(Protocol):
    """What the data layer needs of an encoder."""

    name: str
    dim: int

    def embed(self, items: Any) -> np.ndarray: ...


def check_encoder(modality: str, kind: str, config: EncoderConfig) -> None:
    """Refuse an unknown encoder, one for another kind, or a backbone without weights."""
    if config.name not in ENCODERS:
        raise ConfigError(
            f"modality '{modality}': unknown encoder '{config.name}'"
            f"{did_you_mean(config.name, ENCODERS)}; available: {', '.join(ENCODERS)}"
        )
    if kind not in ENCODERS[config.name]:
        raise ConfigError(
            f"modality '{modality}': encoder '{config.name}' embeds "
            f"{' or '.join(ENCODERS[config.name])} modalities, not {kind}; text encoders: "
            f"{', '.join(TEXT_ENCODERS)}; image and slide backbones: {', '.join(BACKBONES)}"
        )
    if config.name in BACKBONES and config.weights is None:
        raise ConfigError(
            f"modality '{modality}': backbone '{config.name}' needs encoder.weights, a "
            "safetensors (or weights-only PyTorch) file of pretrained weights; polyfuse never "
            "downloads them"
        )
    if config.weights is not None and not config.weights.is_file():
        raise ConfigError(
            f"modality '{modality}': the weights file of encoder '{config.name}' is not there: "
            f"{config.weights}"
        )
    if config.trainable and kind != "image":
        raise ConfigError(
            f"modality '{modality}': only an image backbone can be trainable (encoder.trainable)"
        )
    if config.name.startswith("vit") and config.size is None:
        raise ConfigError(
            f"modality '{modality}': a ViT backbone needs encoder.size, the image size its "
            "weights were trained at (e.g. [224, 224])"
        )
    if config.size is not None and len(config.size) not in (2, 3):
        raise ConfigError(f"modality '{modality}': encoder.size is (H, W) or (D, H, W)")


def encoder_fingerprint(config: EncoderConfig, spatial_dims: int = 2) -> dict[str, Any]:
    """What decides an encoder's embeddings (its package's version or its weights' SHA-256,
    and its options), known without loading it: the name of its folder in the cache."""
    if config.name in TEXT_ENCODERS:
        from polyfuse.embed.text import MiniLM, WordLlama

        encoder = {"minilm": MiniLM, "wordllama": WordLlama}[config.name]
        return {"encoder": config.name, "package": encoder.version(), **encoder.options}
    assert config.weights is not None
    return {
        "encoder": config.name,
        "weights": file_key(config.weights),
        "spatial_dims": spatial_dims,
        "size": image_size(config, spatial_dims),
        "normalize": config.normalize,  # `auto` is decided by spatial_dims, recorded beside
    }


def image_size(config: EncoderConfig, spatial_dims: int) -> tuple[int, ...] | None:
    """What a backbone sees: `encoder.size`, else 224 × 224 for 2D and the volumes' own size
    (None) for 3D."""
    size = tuple(config.size) if config.size is not None else None
    if size is None and spatial_dims == 2:
        size = (224, 224)
    if size is not None and len(size) != spatial_dims:
        raise ConfigError(
            f"encoder.size {list(size)} has {len(size)} axes, the images {spatial_dims}"
        )
    return size


def load_encoder(config: EncoderConfig, spatial_dims: int = 2) -> Encoder:
    """The encoder `config` names (checked by `check_encoder`), ready to embed."""
    if config.name == "minilm":
        from polyfuse.embed.text import MiniLM

        return MiniLM()
    if config.name == "wordllama":
        from polyfuse.embed.text import WordLlama

        return WordLlama()
    from polyfuse.embed.images import BackboneNet, ImageBackbone

    assert config.weights is not None
    size = image_size(config, spatial_dims)
    return ImageBackbone(
        BackboneNet(config.name, config.weights, spatial_dims, size, config.normalize)
    )
