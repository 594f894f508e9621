"""Feed-forward stacks: a LayerNorm MLP, or a self-normalising network (SNN) for omics.

The SNN follows Klambauer et al. 2017 ("Self-Normalizing Neural Networks"), the omics baseline
of PORPOISE/MCAT/HEALNet: SELU activations, AlphaDropout (keeps SELU's fixed point of zero mean
and unit variance) and LeCun-normal weights, with no normalisation layer. The plain variant uses
LayerNorm, never BatchNorm: batch statistics would make one sample's output depend on the other
samples of its batch, which breaks the guarantee that an absent modality changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from torch import nn

from polyfuse.errors import ConfigError, did_you_mean

Activation = Literal["relu", "gelu", "selu"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "selu": nn.SELU}


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    *,
    activation: Activation = "relu",
    dropout: float = 0.0,
) -> nn.Sequential:
    """`Linear → LayerNorm → act → Dropout` per hidden width, then a final `Linear` to `out_dim`.

    With `activation="selu"` each hidden block is `Linear → SELU → AlphaDropout` (an SNN) and
    every Linear gets LeCun-normal weights and zero biases. The output layer has no activation,
    so the result can feed a head or a fusion layer directly.
    """
    if activation not in _ACTIVATIONS:
        raise ConfigError(
            f"unknown activation '{activation}'{did_you_mean(activation, _ACTIVATIONS)}; "
            f"use one of {sorted(_ACTIVATIONS)}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    snn = activation == "selu"
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers.append(nn.Linear(width, int(h)))
        if not snn:
            layers.append(nn.LayerNorm(int(h)))
        layers.append(_ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.AlphaDropout(dropout) if snn else nn.Dropout(dropout))
        width = int(h)
    layers.append(nn.Linear(width, out_dim))
    net = nn.Sequential(*layers)
    if snn:
        for layer in net:
            if isinstance(layer, nn.Linear):
                lecun_normal_(layer)
    return net


def lecun_normal_(layer: nn.Linear) -> None:
    """LeCun-normal init, N(0, 1/fan_in): the variance SELU's self-normalisation assumes."""
    nn.init.normal_(layer.weight, mean=0.0, std=1.0 / math.sqrt(layer.in_features))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
