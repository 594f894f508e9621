"""The experiment configuration: one YAML file, validated before anything is read or trained.

Every section rejects unknown keys with a did-you-mean, and every error names the key path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from polyfuse.errors import ConfigError, did_you_mean
from polyfuse.search_space import check_override


class _Section(BaseModel):
    # NaN and ±inf pass range checks such as lr > 0, then poison training: refused everywhere.
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


class EncoderConfig(_Section):
    """A pretrained encoder that embeds a modality once, frozen, before the model trains.

    Text (`minilm`, `wordllama`) and image backbones (`resnet18`, `resnet50`, `densenet121`,
    `vit-s`, `vit-b`; 2D or 3D by the images) turn each sample into one vector, so the model
    sees a tabular modality; on a `bag` modality the path column names whole slides, cut into
    tiles and embedded tile by tile into a bag of patch features. Embeddings are cached by
    content (`cache`, by default `$POLYFUSE_CACHE` or `~/.cache/polyfuse`), so a second run,
    a CV fold or a prediction reads them instead of recomputing.
    """

    name: str
    weights: Path | None = Field(
        default=None,
        description="image backbones: a safetensors (or weights-only PyTorch) file of the "
        "backbone's weights; text encoders carry theirs in their package",
    )
    trainable: bool = Field(
        default=False,
        description="images: fine-tune the backbone inside the model, with the model's "
        "optimiser, instead of embedding every image once with it frozen",
    )
    batch_size: int = Field(default=32, ge=1)
    cache: Path | None = None
    size: list[int] | None = Field(
        default=None,
        description="images: the size the backbone sees (H, W) or (D, H, W); default 224 × 224 "
        "for 2D, the volumes' own size for 3D",
    )
    normalize: Literal["auto", "imagenet", "zscore", "none"] = Field(
        default="auto",
        description="images: auto is ImageNet statistics for 2D (pixels scaled to 0–1 first), "
        "a z-score per volume for 3D",
    )
    magnification: float = Field(default=20.0, gt=0, description="slides: tiles' objective power")
    tile_size: int = Field(default=224, ge=16, description="slides: tile side in pixels")
    min_tissue: float = Field(default=0.5, gt=0, le=1, description="slides: tissue share of a tile")
    base_magnification: float | None = Field(
        default=None, gt=0, description="slides: objective power of level 0 where unstated"
    )


class ModalityConfig(_Section):
    """Where one modality's values are in the manifest.

    One of: `columns` (feature columns), `prefix` (every column starting with it),
    `path_column` (a column of file paths relative to the data root), `text_column` (inline
    text), `table` (a long-format table of a sequence: id, time and `columns` channels). With
    `mudata`, a modality is a mod: no source key is needed, `columns`/`prefix` pick features.
    """

    kind: Literal["tabular", "image", "bag", "sequence", "text"]
    columns: list[str] | None = None
    prefix: str | None = None
    path_column: str | None = None
    text_column: str | None = None
    table: Path | None = None
    categorical: list[str] = Field(default_factory=list)
    unknown_category: Literal["error", "missing"] = Field(
        default="error",
        description="a categorical level the model was not trained on, met in new data: an "
        "error naming the sample and column, or 'missing' (imputed, with a warning naming it)",
    )
    time_column: str = "time"
    vocab_size: int = Field(default=4096, ge=2)
    encoder: EncoderConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModalityConfig:
        keys = ("columns", "prefix", "path_column", "text_column", "table")
        given = [k for k in keys if getattr(self, k) is not None]
        if self.table is not None and "columns" in given:
            given.remove("columns")  # a sequence table's `columns` picks its channels
        if len(given) > 1:
            raise ValueError(f"give one of {', '.join(keys)}, not {given}")
        if self.encoder is not None and self.kind not in ("text", "image", "bag"):
            raise ValueError(
                f"an encoder embeds text, images or slides, not a {self.kind} modality"
            )
        if self.encoder is not None and self.kind == "bag" and self.path_column is None:
            raise ValueError("a bag modality with an encoder reads whole slides: give path_column")
        return self

    @property
    def has_source(self) -> bool:
        keys = ("columns", "prefix", "path_column", "text_column", "table")
        return any(getattr(self, k) is not None for k in keys)


class TaskConfig(_Section):
    """One target. Classification/regression read `column` (multilabel: `columns`); survival
    reads `time_column` and `event_column` (event 1 = event observed, 0 = censored)."""

    type: Literal["binary", "multiclass", "multilabel", "survival", "regression"]
    column: str | None = None
    columns: list[str] | None = None
    time_column: str | None = None
    event_column: str | None = None
    classes: list[str] | None = None
    survival_head: Literal["discrete", "cox"] = "discrete"
    n_bins: int = Field(default=4, ge=2)
    time_unit: Literal["days", "weeks", "months", "years"] | None = Field(
        default=None, description="unit of a survival time column; names prediction columns"
    )
    weight: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _columns_for_type(self) -> TaskConfig:
        if self.type == "survival" and not (self.time_column and self.event_column):
            raise ValueError("a survival task needs time_column and event_column")
        if self.type == "multilabel" and not self.columns:
            raise ValueError("a multilabel task needs columns (one per label)")
        if self.type in ("binary", "multiclass", "regression") and not self.column:
            raise ValueError(f"a {self.type} task needs column")
        return self


class DataConfig(_Section):
    """A bundled cohort (`dataset`), or the user's own data: a manifest `table` (CSV/Parquet)
    or a MuData/AnnData file (`mudata`), with `modalities` and `tasks` declared here; or
    several `cohorts` (each a data section) that share no patients, trained together: each
    sample feeds its own cohort's modalities and supervises its own cohort's tasks
    (`data/cohorts.py`). Names declared by several cohorts are shared unless `cohort_prefix`."""

    dataset: str | None = None
    table: Path | None = None
    mudata: Path | None = None
    cohorts: dict[str, DataConfig] | None = None
    cohort_prefix: bool = False
    root: Path | None = None
    id_column: str = "id"
    modalities: dict[str, ModalityConfig] = Field(default_factory=dict)
    tasks: dict[str, TaskConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        given = [k for k in ("dataset", "table", "mudata", "cohorts") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of dataset, table, mudata, cohorts")
        if self.cohorts is not None and len(self.cohorts) < 2:
            raise ValueError("cohorts: give at least two cohorts to train together")
        if self.table and not self.modalities:
            raise ValueError("a manifest table needs a modalities section")
        sourceless = [m for m, c in self.modalities.items() if not c.has_source]
        if self.table and sourceless:
            raise ValueError(
                f"modalities {sourceless} need one of columns, prefix, path_column, "
                "text_column, table"
            )
        if self.table and not self.tasks:
            raise ValueError("a manifest table needs a tasks section")
        return self


class PreprocessConfig(_Section):
    """Fitted on the training fold only, then saved with the model."""

    impute: Literal["mean", "median", "zero"] = "mean"
    scale: bool = True
    missing_indicator: bool = False


STACK = "stack"
"""The stacked ensemble (`training/stack.py`): a model name that is not a network; its
`params` are the stack's options, checked by the stack."""


class ModelConfig(_Section):
    """A registered model name and its hyper-parameters (checked against the model), or
    `stack` and its options."""

    name: str = "early"
    params: dict[str, Any] = Field(default_factory=dict)


class TrainingConfig(_Section):
    epochs: int = Field(default=50, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    l1: float = Field(default=0.0, ge=0)
    val_fraction: float = Field(default=0.2, ge=0, lt=1)
    patience: int = Field(default=10, ge=1)
    monitor: Literal["loss", "metric"] = Field(
        default="loss",
        description="what early stopping and the best weights watch: the validation loss, or "
        "the mean primary validation metric of the tasks (c-index, AUROC, R²)",
    )
    alpha: float = Field(default=0.4, ge=0, le=1, description="discrete-survival NLL α")
    class_weights: Literal["none", "inverse"] = Field(
        default="none",
        description="inverse: inverse-frequency class/bin weights; positive weights for binary "
        "and multilabel tasks",
    )
    balancing: Literal["static", "uncertainty", "dwa", "dtp", "gradnorm"] = "static"
    balancing_options: dict[str, Any] = Field(
        default_factory=dict,
        description="options of the balancer: dtp gamma/alpha, dwa temperature, gradnorm alpha, "
        "uncertainty factor/init",
    )
    lr_schedule: Literal["constant", "onecycle", "cosine"] = Field(
        default="constant",
        description="onecycle: up to lr and down over the fit (HEALNet's reference); cosine: "
        "warm-up over warmup_epochs, then cosine decay to 0",
    )
    warmup_epochs: int = Field(default=0, ge=0, description="cosine schedule's linear warm-up")
    modality_dropout: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="training only: each present modality of a sample made absent with this "
        "probability per step (at least one kept)",
    )
    weight_averaging: Literal["none", "ema", "swa"] = Field(
        default="none",
        description="ema: an exponential moving average of the weights after every optimiser "
        "step; swa: the equal average of the weights at the end of every epoch from "
        "averaging_start. Validation, early stopping, the best weights and the saved model all "
        "use the average",
    )
    averaging_decay: float = Field(
        default=0.9, gt=0, lt=1, description="ema: the weight of the old average per step"
    )
    averaging_start: int = Field(
        default=0, ge=0, description="the first epoch (from 0) whose weights are averaged"
    )
    ensemble: int = Field(
        default=1,
        ge=1,
        le=64,
        description="members trained with different seeds; predictions average the members' "
        "scores. Which samples each member trains on: ensemble_validation",
    )
    ensemble_validation: Literal["shared", "folds"] = Field(
        default="shared",
        description="shared: every member early-stops on the same validation part "
        "(val_fraction); folds: the training samples split into `ensemble` folds, member k "
        "early-stops on fold k and trains on the others (cross-fitted, k-fold bagging: every "
        "sample trains all members but one, and val_fraction is not used); recalibration and "
        "conformal outputs are then fitted on each sample's score from the member that did not "
        "train on it",
    )
    recalibration: Literal["none", "platt", "isotonic"] = Field(
        default="none",
        description="binary tasks: map the probabilities through Platt scaling or isotonic "
        "regression fitted on the validation part (ranking unchanged), before conformal sets",
    )
    conformal: float | None = Field(
        default=0.1,
        gt=0,
        lt=1,
        description="miscoverage α of split-conformal prediction sets (classification), "
        "intervals (regression) and lower bounds on the event time (survival), calibrated on "
        "the validation part; null: none",
    )
    focal_gamma: float = Field(default=0.0, ge=0, description="sample-level focal γ (0 = off)")
    focal_detach: bool = True
    accelerator: Literal["cpu", "gpu", "cuda", "mps", "auto"] = "cpu"
    devices: int | str = Field(default=1, description="devices (processes) per node, or 'auto'")
    nodes: int = Field(default=1, ge=1, description="machines taking part (multi-node DDP)")
    strategy: Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true"] = "auto"
    precision: Literal["32-true", "32", "16-mixed", "bf16-mixed", "64-true"] = "32-true"
    workers: int = Field(default=0, ge=0, description="data-loader worker processes per device")
    logger: Literal["csv", "tensorboard", "mlflow"] = "csv"
    checkpoint_every: int = Field(default=5, ge=1, description="epochs between resume checkpoints")
    progress: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.accelerator == "cpu" and self.precision == "16-mixed":
            raise ValueError(
                "precision 16-mixed needs a GPU (accelerator: gpu); on the CPU use 32-true "
                "(or bf16-mixed)"
            )
        if self.balancing == "dtp" and self.val_fraction == 0:
            raise ValueError(
                "balancing dtp weighs tasks by their validation KPI, and val_fraction 0 holds "
                "out no validation part: set val_fraction > 0 (e.g. 0.2) or choose another "
                "balancing (uncertainty, dwa, gradnorm)"
            )
        return self


class CVConfig(_Section):
    folds: int = Field(default=5, ge=2)
    repeats: int = Field(default=1, ge=1)


class TuneConfig(_Section):
    """`polyfuse tune`: an optuna search inside nested CV (outer folds from the `cv` section).

    `space` narrows or overrides the model's declared search space, per parameter (a model
    hyper-parameter or a training setting): `{low, high, log, step}` (missing keys keep the
    declared ones), a list or `{choices: [...]}`, a single value (fixed), or null (not
    searched). `metric` defaults to the primary metric of `task` (default: the first task).
    """

    trials: int = Field(default=20, ge=1, description="trials per search (per outer fold)")
    timeout: float | None = Field(default=None, gt=0, description="seconds for the whole run")
    inner_folds: int = Field(default=3, ge=2)
    task: str | None = None
    metric: str | None = None
    direction: Literal["maximize", "minimize"] | None = None
    prune: bool = True
    final: bool = Field(default=True, description="search all samples too, for best.yaml")
    untuned: bool = Field(default=True, description="score the untuned config on the same folds")
    space: dict[str, Any] = Field(default_factory=dict)
    storage: str | None = Field(
        default=None,
        description="a PostgreSQL URL or journal:PATH that several workers share (docs/scaling.md)",
    )
    study: str | None = Field(
        default=None, description="the shared studies' name (default: the experiment's name)"
    )
    heartbeat: float = Field(
        default=15.0, gt=0, description="seconds between a shared trial's signs of life"
    )

    @model_validator(mode="after")
    def _space_entries(self) -> TuneConfig:
        for name, value in self.space.items():
            try:
                check_override(name, value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self


class ExperimentConfig(_Section):
    """The whole experiment: data, preprocessing, model, training, cross-validation, tuning,
    output."""

    name: str = "experiment"
    seed: int = Field(
        default=0,
        ge=0,
        le=2**22,
        description="NumPy seeds are 32-bit, and the splits derive seed · 1000 + repeat",
    )
    data: DataConfig
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    cv: CVConfig = Field(default_factory=CVConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    output: Path = Path("runs")

    def run_dir(self, command: str) -> Path:
        """Where `command` (fit, cv, tune, benchmark) writes this experiment's run:
        `<output>/<name>/<command>/`, so the commands of one experiment never collide."""
        return self.output / self.name / command

    @field_validator("name")
    @classmethod
    def _name_stays_in_output(cls, name: str) -> str:
        """The run directory is `<output>/<name>/...`: a name is one folder name, never a path."""
        if name.strip() in ("", ".", "..") or any(c in name for c in "/\\\0"):
            raise ValueError(
                f"{name!r} is not a plain folder name: the run directory is <output>/<name>, so "
                "a name may not be empty, '.', '..' or hold a path separator (set `output` to "
                "write elsewhere)"
            )
        return name


def _format_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            key = str(err["loc"][-1])
            parent = _section_at(err["loc"][:-1])
            hint = did_you_mean(key, parent.model_fields) if parent else ""
            lines.append(f"  {where}: unknown key{hint}")
        else:
            lines.append(f"  {where}: {err['msg']}")
    return f"invalid configuration in {source}:\n" + "\n".join(lines)


def _section_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class at a location path, to suggest its field names."""
    cls: Any = ExperimentConfig
    for part in loc:
        if isinstance(part, int) or cls is None:
            return None
        field = cls.model_fields.get(part)
        if field is None:  # a dict key such as a modality name
            continue
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        cls = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if cls is None and args and isinstance(args[-1], type) and issubclass(args[-1], BaseModel):
            cls = args[-1]
    return cls


def parse_config(raw: dict[str, Any], source: str = "<config>") -> ExperimentConfig:
    """Validate a config dictionary; errors name every bad key with its path."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML experiment file; relative data paths resolve against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = _safe_load(path.read_text(encoding="utf-8-sig"), path) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc}); save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    config = parse_config(raw, str(path))
    return resolve_paths(config, path.parent)


MAX_ALIAS_EXPANSION = 100_000
"""Values YAML aliases may add to a document once expanded (a 'billion laughs' adds 10^9)."""


def _safe_load(text: str, path: Path) -> Any:
    """`yaml.safe_load`, with aliases bounded before anything is expanded.

    PyYAML shares an aliased node instead of copying it, so a 1 KB document of nested aliases
    loads at once, then grows to gigabytes wherever it is copied (validation, dumping the
    config). The composed node graph is measured first: a self-referencing alias, or aliases
    that would add more than `MAX_ALIAS_EXPANSION` values, are refused with the file named.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        own = _expanded_size(node, {}, set(), path, distinct=True)
        if _expanded_size(node, {}, set(), path) > own + MAX_ALIAS_EXPANSION:
            raise ConfigError(
                f"{path}: its YAML aliases (*name) expand to more than {MAX_ALIAS_EXPANSION} "
                "values; write the values out instead of repeating an anchor"
            )
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError(f"{path}: the YAML is nested too deeply to be a config") from None
    finally:
        loader.dispose()


def _expanded_size(
    node: Any, sizes: dict[int, int], stack: set[int], path: Path, *, distinct: bool = False
) -> int:
    """The number of values `node` stands for once every alias is copied out (memoised per
    node, so measuring costs no more than the document itself); with `distinct`, each shared
    node is counted once."""
    key = id(node)
    if key in stack:
        raise ConfigError(
            f"{path}: a YAML alias (*name) refers to the anchor it is inside; such a value never "
            "ends"
        )
    if key in sizes:
        return 0 if distinct else sizes[key]
    stack.add(key)
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    size = 1
    for child in children:
        size += _expanded_size(child, sizes, stack, path, distinct=distinct)
    stack.discard(key)
    sizes[key] = size
    return size


def resolve_paths(config: ExperimentConfig, base: Path) -> ExperimentConfig:
    """Make the data paths absolute against `base` (the config file's folder)."""
    output = config.output if config.output.is_absolute() else (base / config.output).resolve()
    return config.model_copy(update={"data": _resolve_data(config.data, base), "output": output})


def _resolve_data(data: DataConfig, base: Path) -> DataConfig:
    updates: dict[str, Any] = {}
    if data.cohorts:
        updates["cohorts"] = {c: _resolve_data(d, base) for c, d in data.cohorts.items()}
    for key in ("table", "mudata", "root"):
        value = getattr(data, key)
        if value is not None and not value.is_absolute():
            updates[key] = (base / value).resolve()
    mods = {}
    for name, mod in data.modalities.items():
        if mod.table is not None and not mod.table.is_absolute():
            mod = mod.model_copy(update={"table": (base / mod.table).resolve()})
        if mod.encoder is not None:
            paths = {
                k: (base / v).resolve()
                for k in ("weights", "cache")
                if (v := getattr(mod.encoder, k)) is not None and not v.is_absolute()
            }
            mod = mod.model_copy(update={"encoder": mod.encoder.model_copy(update=paths)})
        mods[name] = mod
    updates["modalities"] = mods
    return data.model_copy(update=updates)


def dump_config(config: ExperimentConfig) -> str:
    """The config as YAML, as saved in a run directory: the fields that were given, so that
    re-reading it leaves the others to their defaults, and a model's recommended training
    settings (`MultimodalModel.regime`) apply again where the user set none."""
    return yaml.safe_dump(config.model_dump(mode="json", exclude_unset=True), sort_keys=False)
