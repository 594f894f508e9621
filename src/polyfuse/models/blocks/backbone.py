"""A pretrained image backbone as a block: the `BackboneNet` an image modality's spec names
(`encoder: {trainable: true}` in a config), fine-tuned with the model that holds it."""

from __future__ import annotations

from pathlib import Path

from polyfuse.data.specs import ModalitySpec
from polyfuse.embed.images import BackboneNet
from polyfuse.errors import ConfigError


def backbone_net(spec: ModalitySpec) -> BackboneNet:
    """The backbone of `spec`, its pretrained weights loaded from the file the spec names.

    A fitted model is rebuilt the same way before its own weights replace these, so the file
    must still be there when a saved run is loaded.
    """
    b = spec.backbone
    assert b is not None
    try:
        return BackboneNet(b.name, Path(b.weights), spec.spatial_dims, b.size, b.normalize)
    except ConfigError as exc:  # e.g. the weights file is gone: say which modality needs it
        raise ConfigError(f"modality '{spec.name}': {exc}") from exc


__all__ = ["backbone_net"]
