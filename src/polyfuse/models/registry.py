"""Model registry (timm-style): a class registers itself; nothing else lists models by hand.

A config's `model.name` is one of:

* a built-in name (`early`, `healnet`, ...). `BUILTIN` says which module defines each and which
  hyper-parameters it takes, so that a name and its hyper-parameters are checked, and
  `polyfuse models` lists them, without importing any model (nor torch). The table is written
  by `builtin_table()` from the classes themselves; `tests/test_startup.py` keeps it true;
* a name an installed package declares in the entry-point group `polyfuse.models`
  (`my_fusion = "my_package.models:MyFusion"`);
* `"module:Class"`, a `MultimodalModel` subclass in any importable module (the `polyfuse`
  command also imports from the current directory);
* a name given to `@register_model` by code that has already run (a script, a notebook).

Built-in names come first, then registered ones, then entry points. A model declares its
hyper-parameters as keyword-only arguments of `__init__`, with their defaults.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from importlib import metadata
from typing import Any

from polyfuse.config import TrainingConfig
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError, did_you_mean
from polyfuse.search_space import Categorical, Fixed, Float, Int

ENTRY_POINTS = "polyfuse.models"
"""The entry-point group in which installed packages declare models."""

_MODELS: dict[str, type] = {}  # @register_model, once its module has run
_REFERENCED: dict[str, type] = {}  # "module:Class" and entry-point names, once imported

# name: ("module:Class", its keyword-only hyper-parameters with their defaults, as Python).
# Written by `builtin_table()`; tests/test_startup.py compares it with the classes.
BUILTIN: dict[str, tuple[str, str]] = {
    "dfg": (
        "polyfuse.models.baselines.dfg:DynamicFusionGraph",
        "efficacy_hidden=(32,), max_modalities=8, dim=16, hidden=(32,), dropout=0.1, tabular='mlp', encoder=None",
    ),
    "early": (
        "polyfuse.models.baselines.early:EarlyFusion",
        "dim=64, hidden=(64,), dropout=0.1, tabular='mlp', encoder=None",
    ),
    "ehpal": (
        "polyfuse.models.ehpal:EHPALNet",
        "width=0.25, grid_size=8, injection_schedule=None, max_stages=None, groups=8, norm_groups=1, mhcf_activation='gelu', always_project_shortcut=False, fractal_dim=1.8, fractal_constraint='elementwise_clip', poincare='exp_map', learnable_curvature=True, gate='per_channel', dropout=0.25, mc_dropout_at_inference=False, per_sample_missing=True, volumes='adapter', adapter_dim=64, encoder=None",
    ),
    "gated_bilinear": (
        "polyfuse.models.baselines.gated_bilinear:GatedBilinearFusion",
        "width=16, max_product=4096, dim=64, hidden=(64,), dropout=0.25, tabular='mlp', encoder=None",
    ),
    "healnet": (
        "polyfuse.models.healnet:HEALNet",
        "preset=None, depth=2, num_latents=16, latent_dim=64, cross_heads=1, latent_heads=8, cross_dim_head=64, latent_dim_head=64, attn_dropout=0.0, ff_dropout=0.0, ff_mult=4, self_per_cross_attn=0, weight_tie_layers=False, snn=True, fourier_encode_data=True, num_freq_bands=2, max_freq=2.0, temperature=0.5, attn_leaky_relu=True, tabular_as_tokens=False, wsi_tokens='patches', bag_positions=False, max_instances=None, time_channels=8, time_max_period=10000.0, text_dim=16, per_sample_missing=True, self_attn_on_missing=False, self_attn_per_modality=True, return_attention=True",
    ),
    "hierarchical": (
        "polyfuse.models.hierarchical:HierarchicalFusion",
        "pair_op='concat_mlp', rank=16, heads=4, max_order=2, attention_hidden=32, dim=32, hidden=(64,), dropout=0.1, tabular='mlp', encoder=None",
    ),
    "late": (
        "polyfuse.models.baselines.late:LateFusion",
        "dim=64, hidden=(64,), dropout=0.1, tabular='mlp', encoder=None",
    ),
    "lmf": (
        "polyfuse.models.baselines.lmf:LowRankFusion",
        "width=16, rank=4, dim=64, hidden=(64,), dropout=0.1, tabular='mlp', encoder=None",
    ),
    "mcat": (
        "polyfuse.models.baselines.mcat:MCAT",
        "queries=None, dim=32, heads=4, coattn_heads=1, layers=2, tabular_groups=6, patch_size=4, dropout=0.1, attention_hidden=32, fusion_hidden=(64,), context_streams=True, return_attention=True",
    ),
    "medfuse": (
        "polyfuse.models.baselines.medfuse:MedFuse",
        "dim=64, hidden=(64,), dropout=0.1, tabular='mlp', encoder=None",
    ),
    "mm_prognosis": (
        "polyfuse.models.baselines.mm_prognosis:MMPrognosis",
        "margin=0.1, similarity_weight=1.0, modality_dropout=0.25, dim=32, hidden=(64,), dropout=0.1, tabular='mlp', encoder=None",
    ),
    "mult": (
        "polyfuse.models.baselines.mult:MulT",
        "dim=16, heads=2, cross_layers=1, self_layers=1, tabular_groups=1, patch_size=4, attn_dropout=0.0, ff_dropout=0.1, out_dropout=0.1",
    ),
    "multimodn": (
        "polyfuse.models.baselines.multimodn:MultiModN",
        "dim=64, hidden=(64,), dropout=0.1, tabular='mlp', encoder=None",
    ),
    "perceiver": (
        "polyfuse.models.baselines.perceiver:Perceiver",
        "depth=2, num_latents=16, latent_dim=32, token_dim=32, cross_heads=1, cross_dim_head=32, latent_heads=4, latent_dim_head=16, self_per_cross_attn=1, attn_dropout=0.0, ff_dropout=0.0, weight_tie_layers=False, tabular_groups=1, patch_size=4, return_attention=True",
    ),
    "synergies": (
        "polyfuse.models.synergies:Synergies",
        "preset=None, dim=64, depth=2, heads=4, dim_head=16, ff_mult=2, attn_dropout=0.0, ff_dropout=0.0, tabular_tokens='single', text_tokens='tokens', patch_size=16, time_max_period=10000.0, missing='mask', modality_embeddings=True, position_encoding='none', return_attention=True, num_latents=16, memory_dim=None, memory_depth=1, memory_cross_heads=1, memory_cross_dim_head=64, memory_heads=4, memory_dim_head=16, memory_ff_mult=2, memory_attn_dropout=0.0, memory_ff_dropout=0.0, memory_threshold=64, image_memory=True, memory_modalities=None",
    ),
    "tfn": (
        "polyfuse.models.baselines.tfn:TensorFusionNetwork",
        "width=16, max_product=4096, dim=64, hidden=(64,), dropout=0.1, tabular='mlp', encoder=None",
    ),
    "unimodal": (
        "polyfuse.models.baselines.unimodal:Unimodal",
        "modality=None, dim=64, hidden=(64,), dropout=0.1, tabular='mlp', encoder=None",
    ),
}


def register_model(name: str):
    """Class decorator: make a `MultimodalModel` subclass available as `create_model(name, ...)`.

    The class's `search_space` (dimensions from `polyfuse.search_space`) is checked here: each
    dimension must name a keyword of its `__init__` or a training setting.
    """

    def decorate(cls: type) -> type:
        if name in BUILTIN and not cls.__module__.startswith("polyfuse.models."):
            raise ConfigError(f"model name '{name}' is a built-in model's; choose another")
        if name in _MODELS and _MODELS[name] is not cls:
            raise ConfigError(f"model name '{name}' is registered twice")
        _check_declared(cls, name)  # a search space names only parameters the model takes
        _MODELS[name] = cls
        cls.registry_name = name
        return cls

    return decorate


def _keywords(cls: type) -> dict[str, Any]:
    """The keyword-only parameters of `cls.__init__` with their defaults, in order."""
    sig = inspect.signature(cls.__init__)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _check_declared(cls: type, name: str) -> None:
    """A model's `search_space` names only its own keywords or training settings."""
    allowed = set(_keywords(cls)) | set(TrainingConfig.model_fields)
    for key, dim in (getattr(cls, "search_space", {}) or {}).items():
        if key not in allowed:
            raise ConfigError(
                f"model '{name}' declares a search dimension '{key}', which is neither one of "
                f"its hyper-parameters nor a training setting{did_you_mean(key, allowed)}"
            )
        if not isinstance(dim, Float | Int | Categorical | Fixed):
            raise ConfigError(
                f"model '{name}': search dimension '{key}' must be Float, Int or Categorical, "
                f"got {dim!r}"
            )


def _import_all() -> None:
    """Import every module below polyfuse.models so that each registers its models."""
    import polyfuse.models as pkg

    for info in pkgutil.walk_packages(pkg.__path__, prefix="polyfuse.models."):
        importlib.import_module(info.name)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    """The models installed packages declare in the entry-point group `polyfuse.models`."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINTS)}


def list_models() -> list[str]:
    """Model names, sorted: built-in, registered, and declared by installed packages (none of
    them is imported)."""
    return sorted(set(BUILTIN) | set(_MODELS) | set(_entry_points()))


def model_class(name: str) -> type:
    """The class of model `name` (see the module's docstring), its module imported on first
    use; a ConfigError with a did-you-mean for an unknown name, or naming the module or the
    class that is missing."""
    if name in _MODELS:
        return _MODELS[name]
    if name in _REFERENCED:
        return _REFERENCED[name]
    if name in BUILTIN:
        importlib.import_module(BUILTIN[name][0].partition(":")[0])  # registers it
        return _MODELS[name]
    if ":" in name:
        cls = import_reference(name, f"model '{name}'")
    elif (entry := _entry_points().get(name)) is not None:
        cls = import_reference(entry.value, f"model '{name}' (entry point {entry.value!r})")
    else:
        known = list_models()
        raise ConfigError(
            f"unknown model '{name}'{did_you_mean(name, known)}; available: {known}, or "
            "'module:Class' for a model of your own"
        )
    _check_custom(cls, name)
    _REFERENCED[name] = cls
    return cls


def import_reference(reference: str, what: str) -> Any:
    """The object `"module:Name"` names (`Name` may be dotted); a ConfigError saying `what`
    needed it when the module or the name is missing. An error raised while the module runs
    (the user's code, or a package it imports) is not caught: its traceback is the help."""
    module_name, _, qualname = reference.partition(":")
    if not module_name or not qualname:
        raise ConfigError(f"{what}: write it as module:Class, e.g. my_package.models:MyFusion")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not f"{module_name}.".startswith(f"{exc.name}."):
            raise
        raise ConfigError(
            f"{what}: no module named '{exc.name}' (install it, or run from the folder that "
            "holds it, or add that folder to PYTHONPATH)"
        ) from None
    found: Any = module
    for part in qualname.split("."):
        if not hasattr(found, part):
            names = [n for n in dir(found) if not n.startswith("_")]
            raise ConfigError(
                f"{what}: {module_name} ({getattr(module, '__file__', '?')}) has no "
                f"'{qualname}'{did_you_mean(part, names)}"
            )
        found = getattr(found, part)
    return found


def _check_custom(cls: Any, name: str) -> None:
    """A model named by reference or entry point is a `MultimodalModel` subclass whose search
    space names its own keywords."""
    from polyfuse.models.model import MultimodalModel

    if not (isinstance(cls, type) and issubclass(cls, MultimodalModel)):
        raise ConfigError(
            f"model '{name}' is {cls!r}, not a subclass of polyfuse.models.model.MultimodalModel"
        )
    _check_declared(cls, name)


def model_hparams(name: str) -> dict[str, Any]:
    """The keyword-only hyper-parameters of a model with their defaults (for a built-in model
    that is not imported yet, from `BUILTIN`: nothing is imported)."""
    if name in BUILTIN and name not in _MODELS:
        call = ast.parse(f"f({BUILTIN[name][1]})", mode="eval").body
        assert isinstance(call, ast.Call)
        return {str(k.arg): ast.literal_eval(k.value) for k in call.keywords}
    return _keywords(model_class(name))


def builtin_table() -> str:
    """`BUILTIN` as Python source, read from the classes (every model is imported): paste it
    over the table when a built-in model or hyper-parameter is added, renamed or changed."""
    _import_all()
    rows = []
    for name, cls in sorted(_MODELS.items()):
        if cls.__module__.startswith("polyfuse.models."):
            params = ", ".join(f"{k}={v!r}" for k, v in _keywords(cls).items())
            reference = f"{cls.__module__}:{cls.__qualname__}"
            rows.append(f'    "{name}": (\n        "{reference}",\n        {params!r},\n    ),\n')
    return "BUILTIN: dict[str, tuple[str, str]] = {\n" + "".join(rows) + "}\n"


def create_model(
    name: str, specs: dict[str, ModalitySpec], tasks: dict[str, TaskSpec], **hparams: Any
):
    """Build the model `name` for these modalities and tasks.

    Unknown hyper-parameters raise a ConfigError naming them (with a did-you-mean), before any
    module is built.
    """
    cls = model_class(name)
    check_hparams(name, hparams)
    return cls(specs, tasks, **hparams)


def check_hparams(name: str, hparams: dict[str, Any]) -> None:
    """A ConfigError (with a did-you-mean) for an unknown model or hyper-parameter name; needs
    no data, and for a built-in model imports nothing, so a config is checked before its data
    are read and before torch is imported."""
    known = model_hparams(name)
    for key in hparams:
        if key not in known:
            raise ConfigError(
                f"model '{name}' has no hyper-parameter '{key}'{did_you_mean(key, known)}; "
                f"it takes {sorted(known)}"
            )
