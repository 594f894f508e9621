"""Weight tying across depth, as the Perceiver and HEALNet's `cache_fn` do it.

With tying, layer 0 has its own weights and layers 1..depth−1 run one shared set, so depth
adds computation but no parameters. Each module is registered once and `order[i]` says which
one runs at depth i: a state_dict then holds every tensor once (safetensors can save it), and
the shared layer's gradient is the sum over its uses.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from torch import nn

from polyfuse.errors import FallbackWarning


def tied_layers(
    depth: int, tie: bool, layer: Callable[[bool], nn.Module]
) -> tuple[nn.ModuleList, list[int]]:
    """`(layers, order)` for `depth` steps: `layers[order[i]]` runs at depth i.

    `layer(shared)` builds one layer; `shared` is True for the layer that runs at every depth
    from 1 on (a model may build it differently).
    """
    if tie and depth == 1:
        warnings.warn(
            "weight_tie_layers has no effect at depth 1: no layer follows the first one",
            FallbackWarning,
            stacklevel=2,
        )
    tied = tie and depth > 1
    layers = nn.ModuleList(layer(tied and i == 1) for i in range(2 if tied else depth))
    order = [min(i, 1) for i in range(depth)] if tied else list(range(depth))
    return layers, order


__all__ = ["tied_layers"]
