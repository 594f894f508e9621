"""Resume checkpoints that are never unpickled: tensors in safetensors, the rest as JSON.

Lightning's own checkpoint is a pickle (`torch.save`), and loading a pickle can run arbitrary
code. `SafeCheckpointIO` stores the same checkpoint dictionary as one safetensors file: every
tensor as a named tensor, and the structure around them (loop counters, callback and optimiser
state, hyper-parameters) as JSON in the file's metadata. Dict keys that are not strings and
tuples keep their type through tags, so an optimiser's integer-keyed state loads back exactly.
Files are written atomically (temporary file + rename): a crash leaves the old checkpoint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import CheckpointIO

from polyfuse.errors import DataError
from polyfuse.io import atomic_write

META_KEY = "polyfuse_checkpoint"


def encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-able skeleton of `obj`; its tensors are moved into `tensors` (by generated name)."""
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu().clone().contiguous()  # clone: no shared storage
        return {"__tensor__": name}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[encode(k, tensors), encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [encode(v, tensors) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"a safe checkpoint cannot hold a {type(obj).__name__} ({obj!r:.80})")


def decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of `encode`."""
    if isinstance(obj, list):
        return [decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__items__" in obj:
        return {decode(k, tensors): decode(v, tensors) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(decode(v, tensors) for v in obj["__tuple__"])
    if "__float__" in obj:
        return float(obj["__float__"])
    return {k: decode(v, tensors) for k, v in obj.items()}


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    """Write `checkpoint` to `path` as safetensors + JSON metadata, atomically."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    skeleton = json.dumps(encode(checkpoint, tensors))
    atomic_write(Path(path), lambda p: save_file(tensors, str(p), metadata={META_KEY: skeleton}))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; anything else (a pickle) is refused."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            skeleton = (f.metadata() or {}).get(META_KEY)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(
            f"checkpoint {path} is not a polyfuse safetensors checkpoint ({exc}); polyfuse never "
            "unpickles files, so pickle checkpoints (torch.save, Lightning's default) are refused"
        ) from None
    if skeleton is None:
        raise DataError(f"checkpoint {path} has no polyfuse metadata: not written by polyfuse")
    return decode(json.loads(skeleton), tensors)


class SafeCheckpointIO(CheckpointIO):
    """Lightning checkpoint I/O through `save_checkpoint` / `load_checkpoint`."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        save_checkpoint(checkpoint, Path(path))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: Any = None):
        """Tensors load on the CPU; Lightning copies them into the model and optimiser."""
        return load_checkpoint(Path(path))

    def remove_checkpoint(self, path: Any) -> None:
        Path(path).unlink(missing_ok=True)
