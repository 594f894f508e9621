"""Fit one model: preprocessing and targets fitted on training samples, early stopping on a
validation part, the best weights restored; save and load a fitted model."""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polyfuse.config import PreprocessConfig, TrainingConfig
from polyfuse.data.contract import CONTRACT_FILE, InputContract
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.preprocess import Preprocessor
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.data.splits import cross_fit, holdout, strata, stratum_names
from polyfuse.errors import ConfigError, DataError, FallbackWarning, require
from polyfuse.io import atomic_write, write_text
from polyfuse.models.model import MultimodalModel
from polyfuse.models.registry import create_model, model_class
from polyfuse.tasks.conformal import Conformal, fit_task, task_coverage, task_outputs
from polyfuse.tasks.conformal import from_dict as conformal_from_dict
from polyfuse.tasks.objective import TaskObjective
from polyfuse.tasks.recalibration import Recalibration, fit_recalibration
from polyfuse.training.settings import FitSettings

PREDICT_BATCH = 256
log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch: the same seed gives the same metrics on CPU."""
    import lightning as L

    L.seed_everything(seed, workers=True, verbose=False)


def _identity(batch: Any) -> Any:
    return batch


def make_loader(
    dataset: MultimodalDataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    workers: int = 0,
):
    """Batches by slicing: the dataset is indexed with whole lists of rows. Shuffled batches of
    several cohorts hold `batch_size` samples of every cohort (`ZipBatchSampler`). `workers`
    processes collate batches in the background (file-based modalities read in parallel)."""
    from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

    from polyfuse.data.sampling import ShuffledBatches

    cohorts = dataset.cohort
    if shuffle and cohorts is not None and len(set(cohorts.tolist())) > 1:
        from polyfuse.data.sampling import ZipBatchSampler

        batches: Any = ZipBatchSampler(cohorts, batch_size, seed=seed)
    elif shuffle:
        batches = ShuffledBatches(len(dataset), batch_size, seed=seed)
    else:
        batches = BatchSampler(SequentialSampler(dataset), batch_size, drop_last=False)
    return DataLoader(
        dataset,
        sampler=batches,
        batch_size=None,
        collate_fn=_identity,
        num_workers=workers,
        persistent_workers=workers > 0,
    )


STACK_FILE = "stack.json"
"""What marks a run directory as a stacked ensemble's (`training/stack.py`)."""


@dataclass
class FittedModel:
    """A trained model with everything needed to predict on new samples.

    An ensemble (`training.ensemble`) has several `members`, trained with different seeds (on
    the same samples, or cross-fitted: `training.ensemble_validation`); its predictions are
    the mean of the members' scores (probabilities, risks, survival curves), never of their
    logits, so a probability stays the mean probability. `model` is the first member (what
    attention figures read).
    """

    model_name: str
    hparams: dict[str, Any]
    members: list[MultimodalModel]
    objectives: nn.ModuleDict
    contract: InputContract
    """What the model takes and gives; `run_fit` adds how its training data were read."""
    best_epochs: list[int] = dataclasses.field(default_factory=lambda: [-1])
    """Each member's best epoch (-1: no validation part, the last weights kept)."""
    weight_history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    """The loss-balancing weight of every term, per training epoch (of the first member)."""
    conformal: dict[str, Conformal] = dataclasses.field(default_factory=dict)
    """Per task, its split-conformal calibration on the validation part (`training.conformal`;
    none without a validation part): `predict` adds sets, intervals or lower bounds."""
    recalibration: dict[str, Recalibration] = dataclasses.field(default_factory=dict)
    """Per binary task, its probabilities' recalibration on the validation part
    (`training.recalibration`), applied by `predict` before the conformal sets."""
    validation_ids: list[str] = dataclasses.field(default_factory=list)
    """The samples held out of every member's fit (they chose the best epoch and calibrated
    the conformal outputs): what `polyfuse explain` explains by default. None with
    `ensemble_validation: folds`, where each sample trained all members but one."""

    def __post_init__(self) -> None:
        self.preprocessor = self.contract.preprocessor()

    @property
    def model(self) -> MultimodalModel:
        return self.members[0]

    @property
    def best_epoch(self) -> int:
        return self.best_epochs[0]

    @property
    def raw_specs(self) -> dict[str, ModalitySpec]:
        """The modalities as read, before preprocessing."""
        return self.contract.specs

    @property
    def tasks(self) -> dict[str, TaskSpec]:
        return self.model.tasks

    @torch.no_grad()
    def predict(
        self, dataset: MultimodalDataset, *, calibrated: bool = True
    ) -> dict[str, dict[str, np.ndarray]]:
        """Scores per task (probabilities, risk, survival curve, prediction) for every sample,
        recalibrated where the run was, with the conformal sets, intervals or bounds of the
        calibrated tasks; `calibrated=False`: the network's scores alone (what an exported
        graph gives)."""
        out = self.member_scores(self.preprocessor.transform(dataset), self.members)
        if not calibrated:
            return out
        for t, recalibrate in self.recalibration.items():
            out[t]["prob"] = recalibrate(out[t]["prob"])
        for t, calibration in self.conformal.items():
            out[t] |= task_outputs(calibration, out[t])
        return out

    @torch.no_grad()
    def member_scores(
        self, data: MultimodalDataset, members: list[MultimodalModel]
    ) -> dict[str, dict[str, np.ndarray]]:
        """The mean scores of `members` on preprocessed `data`, uncalibrated."""
        for member in members:
            member.eval()
        parts: dict[str, dict[str, list]] = {t: {} for t in self.objectives}
        for start in range(0, len(data), PREDICT_BATCH):
            batch = data.batch(np.arange(start, min(start + PREDICT_BATCH, len(data))))
            for t, scores in member_mean(members, self.objectives, batch.inputs).items():
                for k, v in scores.items():
                    parts[t].setdefault(k, []).append(v.cpu().numpy())
        return {t: {k: np.concatenate(v) for k, v in d.items()} for t, d in parts.items()}

    def evaluate(
        self, dataset: MultimodalDataset, train_targets: dict[str, np.ndarray]
    ) -> dict[str, dict[str, float]]:
        """Metrics per task on `dataset`; train targets give the censoring weights (Uno, IBS)."""
        return self.metrics(self.predict(dataset), dataset.targets, train_targets)

    def metrics(
        self,
        scores: dict[str, dict[str, np.ndarray]],
        targets: dict[str, np.ndarray],
        train_targets: dict[str, np.ndarray],
    ) -> dict[str, dict[str, float]]:
        """Each task's metrics of `scores` against `targets`, with the measured coverage of its
        conformal outputs where it has them."""
        return {
            t: obj.metrics(scores[t], targets[t], train_targets[t])
            | task_coverage(scores[t], targets[t])
            for t, obj in self.objectives.items()
        }

    def save(self, directory: Path) -> None:
        """Weights as safetensors (member k > 0 under `member<k>.`), the input contract and
        the rest as JSON: loading never unpickles anything."""
        from safetensors.torch import save_file

        state = {
            f"{_member_prefix(k)}.{name}": v
            for k, member in enumerate(self.members)
            for name, v in member.state_dict().items()
        }
        state |= {f"objectives.{k}": v for k, v in self.objectives.state_dict().items()}
        state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        atomic_write(directory / "model.safetensors", lambda p: save_file(state, str(p)))
        meta = {
            "model": self.model_name,
            "hparams": self.hparams,
            "members": len(self.members),
            "best_epochs": self.best_epochs,
            "objectives": {t: o.options() for t, o in self.objectives.items()},
            "weight_history": self.weight_history,
            "conformal": {t: c.to_dict() for t, c in self.conformal.items()},
            "recalibration": {t: r.to_dict() for t, r in self.recalibration.items()},
            "validation_ids": self.validation_ids,
        }
        write_text(directory / "model.json", json.dumps(meta, indent=2))
        self.contract.save(directory)

    @classmethod
    def load(cls, directory: Path) -> FittedModel:
        """Load a run directory written by `save`. Only safetensors and JSON are read: a run
        whose weights are a pickle (`.pt`, `.ckpt`, `.pkl`), or that is incomplete, is refused."""
        directory = Path(directory)
        if (directory / STACK_FILE).is_file():
            raise ConfigError(
                f"{directory} holds a stacked ensemble: `polyfuse predict` and `serve` take it "
                "(`Predictor.load`); explain or export one of its networks, under members/"
            )
        _check_complete(directory)
        try:
            meta = json.loads((directory / "model.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{directory}: model.json is corrupt ({exc})") from None
        contract = InputContract.load(directory)
        tasks = contract.task_specs
        objectives = nn.ModuleDict(
            {t: TaskObjective(tasks[t], **meta["objectives"][t]) for t in tasks}
        )
        specs = contract.preprocessor().transform_specs(contract.specs)
        state = _read_weights(directory / "model.safetensors")
        members = []
        for k in range(meta.get("members", 1)):
            model = create_model(meta["model"], specs, tasks, **meta["hparams"])
            prefix = _member_prefix(k) + "."
            model.load_state_dict(
                {n[len(prefix) :]: v for n, v in state.items() if n.startswith(prefix)}
            )
            members.append(model.eval())
        objectives.load_state_dict(
            {k[11:]: v for k, v in state.items() if k.startswith("objectives.")}
        )
        return cls(
            meta["model"],
            meta["hparams"],
            members,
            objectives,
            contract,
            meta.get("best_epochs", [meta.get("best_epoch", -1)]),  # older runs: one model
            meta.get("weight_history", []),
            {t: conformal_from_dict(c) for t, c in meta.get("conformal", {}).items()},
            {t: Recalibration.from_dict(r) for t, r in meta.get("recalibration", {}).items()},
            meta.get("validation_ids", []),
        )


def member_mean(
    members: list[nn.Module], objectives: nn.ModuleDict, inputs: dict[str, Any]
) -> dict[str, dict[str, torch.Tensor]]:
    """The scores of every task, averaged over the members (one member: its scores)."""
    total: dict[str, dict[str, torch.Tensor]] = {}
    for member in members:
        logits = member(inputs).logits
        for t, obj in objectives.items():
            for k, v in obj.scores(logits[t]).items():
                total.setdefault(t, {})[k] = total.get(t, {}).get(k, 0) + v
    return {t: {k: v / len(members) for k, v in d.items()} for t, d in total.items()}


def _member_prefix(k: int) -> str:
    """Member 0 is saved as `model.` (a single model's run reads as before), member k as
    `member<k>.`."""
    return "model" if k == 0 else f"member{k}"


def _check_complete(directory: Path) -> None:
    for name in ("model.json", CONTRACT_FILE, "model.safetensors"):
        if not (directory / name).is_file():
            pickles = sorted(
                p.name for p in directory.glob("*") if p.suffix in (".pt", ".pth", ".pkl", ".ckpt")
            )
            hint = (
                f"; {', '.join(pickles)} would need unpickling, which polyfuse never does"
                if pickles
                else ""
            )
            raise DataError(f"{directory} is not a complete fitted run: {name} is missing{hint}")


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise DataError(
            f"{path} is not a readable safetensors file ({exc}); pickled weights are refused"
        ) from None


def with_model_defaults(
    model_name: str, hparams: dict[str, Any], training: TrainingConfig
) -> TrainingConfig:
    """The model's recommended training settings, overridden by every field the user set
    (`ensemble: 1` alone also turns off the cross-fitting of a model's ensemble: one member
    has nothing to cross-fit)."""
    defaults = model_class(model_name).training_defaults(hparams)
    if not defaults:
        return training
    merged = {**defaults, **training.model_dump(include=training.model_fields_set)}
    if merged.get("ensemble") == 1 and "ensemble_validation" not in training.model_fields_set:
        merged.pop("ensemble_validation", None)
    return TrainingConfig(**merged)


def train_model(
    model_name: str,
    train: MultimodalDataset,
    *,
    hparams: dict[str, Any] | None = None,
    training: TrainingConfig | None = None,
    preprocess: PreprocessConfig | None = None,
    task_weights: dict[str, float] | None = None,
    seed: int = 0,
    log_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> FittedModel:
    """Train `model_name` on `train`, holding out `training.val_fraction` for early stopping.

    Preprocessing and task state (survival bins, class weights) are fitted on the samples that
    are trained on, never on the validation part (a cross-fitted ensemble's on all of `train`,
    `training.ensemble_validation`). With `checkpoint_dir`, a resume checkpoint
    (safetensors, `training/checkpoint.py`) is written every `training.checkpoint_every`
    epochs; `resume` continues from it (or starts afresh when there is none yet) and ends
    with the same model as an uninterrupted fit.

    The keywords are the documented API; code that already holds a `FitSettings` (CV, the
    tuner, the benchmark) calls `fit_model` with it.
    """
    settings = FitSettings.of(hparams, training, preprocess, task_weights, seed)
    return fit_model(
        model_name, train, settings, log_dir=log_dir, checkpoint_dir=checkpoint_dir, resume=resume
    )


def fit_model(
    model_name: str,
    train: MultimodalDataset,
    settings: FitSettings,
    *,
    log_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> FittedModel:
    """`train_model` with its settings as one value.

    With `training.ensemble` N > 1, N members are trained with the same preprocessing, on
    the same fit and validation parts (`ensemble_validation: shared`) or cross-fitted on N
    folds (`folds`); member k's weights, dropout and shuffles come from
    seed + k · MEMBER_SEED_STEP (member 0 is the single fit), and each member has its own
    `member<k>` folder below `log_dir` and `checkpoint_dir`.
    """
    if resume and checkpoint_dir is None:
        raise ConfigError("resume needs a checkpoint directory")
    hparams = dict(settings.hparams)
    training = with_model_defaults(model_name, hparams, settings.training)
    seed_everything(settings.seed)
    parts = _prepare(train, training, settings.preprocess, settings.seed)
    members = []
    for k in range(training.ensemble):
        members.append(
            _fit_member(
                model_name,
                parts,
                settings.replace(hparams=hparams, training=training),
                k,
                log_dir=_member_dir(log_dir, k, training.ensemble),
                checkpoint_dir=_member_dir(checkpoint_dir, k, training.ensemble),
                resume=resume,
            )
        )
    fit_idx, val_idx = parts.splits[0]
    log.info(
        "fitted '%s' (%d member%s, validation %s) on %d samples (%d for validation); "
        "best epochs %s",
        model_name,
        len(members),
        "s" if len(members) > 1 else "",
        "cross-fitted" if parts.cross_fitted else "shared",
        len(fit_idx),
        len(val_idx),
        [m.best_epoch for m in members],
    )
    curve_times = {
        t: o.curve_times for t, o in parts.objectives.items() if o.curve_times is not None
    }
    fitted = FittedModel(
        model_name,
        hparams,
        [m.model for m in members],
        parts.objectives,
        InputContract.fitted(train.specs, train.tasks, parts.preprocessor, curve_times),
        [m.best_epoch for m in members],
        members[0].weight_history,
    )
    if not parts.cross_fitted:
        fitted.validation_ids = [train.ids[i] for i in val_idx]
    if len(val_idx) and (training.recalibration != "none" or training.conformal is not None):
        held, scores = _held_out_scores(fitted, parts)
        targets = {t: y[held] for t, y in train.targets.items()}
        if training.recalibration != "none":
            fitted.recalibration = _recalibrate(fitted, scores, targets, training.recalibration)
            for t, recalibrate in fitted.recalibration.items():
                scores[t]["prob"] = recalibrate(scores[t]["prob"])
        if training.conformal is not None:
            fitted.conformal = _calibrate(fitted, scores, targets, training.conformal)
    return fitted


def _held_out_scores(
    fitted: FittedModel, parts: _Prepared
) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """The samples held out of some member's fit, in training order, and each one's mean score
    over the members that did not train on it: the ensemble's on a shared validation part, the
    one member's that early-stopped on its fold when cross-fitted."""
    sums: dict[str, dict[str, np.ndarray]] = {}
    counts = np.zeros(len(parts.data))
    for member, (_, val_idx) in zip(fitted.members, parts.splits, strict=True):
        scores = fitted.member_scores(parts.data.subset(val_idx), [member])
        for t, d in scores.items():
            for k, v in d.items():
                total = sums.setdefault(t, {}).setdefault(k, np.zeros((len(counts), *v.shape[1:])))
                total[val_idx] += v
        counts[val_idx] += 1
    held = np.flatnonzero(counts)
    return held, {
        t: {k: v[held] / counts[held].reshape(-1, *[1] * (v.ndim - 1)) for k, v in d.items()}
        for t, d in sums.items()
    }


def _recalibrate(
    fitted: FittedModel,
    scores: dict[str, dict[str, np.ndarray]],
    targets: dict[str, np.ndarray],
    method: str,
) -> dict:
    """Each binary task's recalibration on held-out scores (a task with one class there goes
    without, said in the log)."""
    out = {}
    for t, spec in fitted.tasks.items():
        if spec.type != "binary":
            continue
        try:
            out[t] = fit_recalibration(method, scores[t]["prob"], targets[t])
        except ValueError as exc:
            log.info("no recalibration for task '%s': %s", t, exc)
    return out


def _calibrate(
    fitted: FittedModel,
    scores: dict[str, dict[str, np.ndarray]],
    targets: dict[str, np.ndarray],
    alpha: float,
) -> dict[str, Conformal]:
    """Each task's split-conformal calibration on held-out (recalibrated) scores. The held-out
    samples also chose the best epochs, so the coverage may fall a little short of 1 − α;
    cross-validation measures it on the test folds (`coverage`). A task it cannot calibrate
    (too few events or labels) goes without, said in the log."""
    out = {}
    for t, spec in fitted.tasks.items():
        try:
            calibration = fit_task(spec.type, scores[t], targets[t], alpha)
        except ValueError as exc:
            log.info("no conformal calibration for task '%s': %s", t, exc)
            continue
        if calibration is not None:
            out[t] = calibration
    return out


MEMBER_SEED_STEP = 1_000_003
"""Seed distance between ensemble members: larger than any fold offset, so that no member of
one fold shares a seed with a member of another."""


@dataclass
class _Member:
    model: MultimodalModel
    best_epoch: int
    weight_history: list[dict[str, float]]


def _member_dir(directory: Path | None, k: int, members: int) -> Path | None:
    return directory / f"member{k}" if directory is not None and members > 1 else directory


def _fit_member(
    model_name: str,
    parts: _Prepared,
    settings: FitSettings,
    k: int,
    *,
    log_dir: Path | None,
    checkpoint_dir: Path | None,
    resume: bool,
) -> _Member:
    """Train member `k` of a fit on its parts of the prepared data."""
    from polyfuse.training.module import FusionModule

    fit, val = parts.member(k)
    training = settings.training
    seed = settings.seed + k * MEMBER_SEED_STEP
    seed_everything(seed)
    model = create_model(model_name, parts.data.specs, parts.data.tasks, **settings.hparams)
    module = FusionModule(
        model,
        parts.objectives,
        task_weights=settings.task_weights,
        lr=training.lr,
        weight_decay=training.weight_decay,
        l1=training.l1,
        balancing=training.balancing,
        balancing_options=training.balancing_options,
        lr_schedule=training.lr_schedule,
        warmup_epochs=training.warmup_epochs,
        modality_dropout=training.modality_dropout,
        monitor=training.monitor,
    )
    best_epoch = _run_trainer(
        module,
        fit,
        val,
        training,
        seed,
        log_dir=log_dir,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
    )
    model.eval()
    _check_finite(model, model_name, fit)
    return _Member(model, best_epoch, module.weight_history)


@dataclass
class _Prepared:
    """A training set made ready to fit: preprocessed, with fitted task objectives, and each
    member's (fit, validation) indices."""

    preprocessor: Preprocessor
    data: MultimodalDataset
    objectives: nn.ModuleDict
    splits: list[tuple[np.ndarray, np.ndarray]]
    cross_fitted: bool

    def member(self, k: int) -> tuple[MultimodalDataset, MultimodalDataset]:
        fit_idx, val_idx = self.splits[k]
        return self.data.subset(fit_idx), self.data.subset(val_idx)


def _prepare(
    train: MultimodalDataset, training: TrainingConfig, preprocess: PreprocessConfig, seed: int
) -> _Prepared:
    """Each member's validation carve-out, then preprocessing and task state fitted on the
    samples that train every member (all of them when cross-fitted, where each sample trains
    all members but one: a validation fold then early-stops on data the preprocessing saw)."""
    idx = np.arange(len(train))
    cross_fitted = training.ensemble_validation == "folds"
    if cross_fitted and training.ensemble < 2:
        raise ConfigError(
            "training.ensemble_validation 'folds' cross-fits the members of an ensemble on "
            f"`ensemble` folds, and training.ensemble is {training.ensemble}: set ensemble "
            "to 2 or more (5 is usual), or ensemble_validation to 'shared'"
        )
    if cross_fitted and len(idx) < training.ensemble:
        warnings.warn(
            f"{len(idx)} training sample(s) are too few to cross-fit {training.ensemble} "
            "members on as many folds: they share one validation part (training.val_fraction "
            f"{training.val_fraction})",
            FallbackWarning,
            stacklevel=2,
        )
        cross_fitted = False
    if cross_fitted:
        splits = cross_fit(idx, strata(train), training.ensemble, seed, stratum_names(train))
        fit_idx = idx
    else:
        fit_idx, val_idx = holdout(
            idx, strata(train), training.val_fraction, seed, names=stratum_names(train)
        )
        splits = [(fit_idx, val_idx)] * training.ensemble
    pre = Preprocessor(preprocess.impute, preprocess.scale, preprocess.missing_indicator)
    pre.fit(train.subset(fit_idx))
    data = pre.transform(train)
    fit_part = data.subset(fit_idx)
    objectives = nn.ModuleDict(
        {
            t: TaskObjective(
                s,
                alpha=training.alpha,
                class_weights=training.class_weights,
                focal_gamma=training.focal_gamma,
                focal_detach=training.focal_detach,
            ).fit(fit_part.targets[t])
            for t, s in train.tasks.items()
        }
    )
    return _Prepared(pre, data, objectives, splits, cross_fitted)


def _run_trainer(
    module: Any,
    fit: MultimodalDataset,
    val: MultimodalDataset,
    training: TrainingConfig,
    seed: int,
    *,
    log_dir: Path | None,
    checkpoint_dir: Path | None,
    resume: bool,
) -> int:
    """Lightning's fit of `module`, resumed from `checkpoint_dir` when asked; the best epoch
    (-1 without a validation part, where the last weights are kept)."""
    import lightning as L

    from polyfuse.training.callbacks import NoProfiler
    from polyfuse.training.checkpoint import SafeCheckpointIO

    check_hardware(training)
    has_val = len(val) > 0
    callbacks, best = _callbacks(training, has_val, checkpoint_dir)
    with _quiet_lightning(), tempfile.TemporaryDirectory(prefix="polyfuse-") as scratch:
        trainer = L.Trainer(
            default_root_dir=scratch,  # Lightning's own temporary files, never the cwd
            max_epochs=training.epochs,
            accelerator=training.accelerator,
            devices=training.devices,
            num_nodes=training.nodes,
            strategy=training.strategy,
            precision=training.precision,
            logger=_logger(training.logger, log_dir),
            callbacks=callbacks,
            enable_checkpointing=checkpoint_dir is not None,
            enable_progress_bar=training.progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=1,
            deterministic=True,
            use_distributed_sampler=False,
            plugins=[SafeCheckpointIO()],
            profiler=NoProfiler(),
        )
        trainer.fit(
            module,
            make_loader(
                fit, training.batch_size, shuffle=True, seed=seed, workers=training.workers
            ),
            make_loader(val, PREDICT_BATCH, shuffle=False, workers=training.workers)
            if has_val
            else None,
            ckpt_path=_resume_checkpoint(checkpoint_dir) if resume else None,
        )
    return best.best_epoch


def check_hardware(training: TrainingConfig) -> None:
    """Refuse a GPU or MPS fit where torch sees none, or more GPUs than there are, naming the
    key and what torch sees: Lightning's own error comes as a traceback."""
    accelerator, devices = training.accelerator, training.devices
    if accelerator in ("gpu", "cuda"):
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not available:
            raise ConfigError(
                f"training.accelerator is '{accelerator}', but torch {torch.__version__} sees no "
                "CUDA GPU (torch.cuda.is_available() is False): set accelerator: cpu (or auto), "
                "or install a CUDA build of torch on a machine with a GPU"
            )
        if isinstance(devices, int) and devices > available:
            raise ConfigError(
                f"training.devices is {devices}, but torch sees {available} GPU(s): set devices: "
                f"{available} (or auto)"
            )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "training.accelerator is 'mps', but torch.backends.mps.is_available() is False "
            "(Apple silicon with macOS 12.3+ only): set accelerator: cpu (or auto)"
        )


def _callbacks(
    training: TrainingConfig, has_val: bool, checkpoint_dir: Path | None
) -> tuple[list[Any], Any]:
    """The fit's callbacks, and the one that keeps the best weights (unused without a
    validation part). Only what the run needs: the random state matters only to a checkpoint,
    so `RandomState` comes with checkpointing (each callback costs every hook of every step)."""
    from polyfuse.training.callbacks import (
        AveragedWeights,
        BestWeights,
        RandomState,
        ResumableEarlyStopping,
        ResumeCheckpoint,
    )

    watched, mode = ("val_metric", "max") if training.monitor == "metric" else ("val_loss", "min")
    best = BestWeights(watched, mode)
    callbacks: list[Any] = [RandomState()] if checkpoint_dir is not None else []
    if has_val:
        stopping = ResumableEarlyStopping(watched, mode=mode, patience=training.patience)
        callbacks += [best, stopping]
    if training.weight_averaging != "none":  # after BestWeights: it keeps the averaged weights
        callbacks.append(
            AveragedWeights(
                training.weight_averaging, training.averaging_decay, training.averaging_start
            )
        )
    if checkpoint_dir is not None:
        # not ModelCheckpoint: its `save_last` ignores `every_n_epochs` (Lightning < 2.6) or,
        # with save_top_k=0, writes only when the fit ends (>= 2.6); see ResumeCheckpoint
        callbacks.append(ResumeCheckpoint(checkpoint_dir, training.checkpoint_every))
    return callbacks, best


def _resume_checkpoint(checkpoint_dir: Path | None) -> Path | None:
    """The checkpoint a resumed fit continues from; None (a fresh start) before the first."""
    last = checkpoint_dir / "last.ckpt" if checkpoint_dir is not None else None
    if last is None or not last.is_file():
        log.info("no resume checkpoint in %s yet: training from the first epoch", checkpoint_dir)
        return None
    log.info("resuming the fit from %s", last)
    return last


def _check_finite(model: MultimodalModel, name: str, data: MultimodalDataset) -> None:
    """A fit that diverged on a step no loss saw afterwards (the last one) is not a success:
    weights, or the predictions on the first training samples, that are NaN/inf are refused
    instead of returning a model that predicts NaN."""
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if not bad and len(data):
        with torch.no_grad():
            batch = data.batch(np.arange(min(len(data), PREDICT_BATCH)))
            out = model(batch.to(next(model.parameters()).device).inputs)
        bad = [
            f"the '{t}' predictions" for t, v in out.logits.items() if not torch.isfinite(v).all()
        ]
    if bad:
        raise DataError(
            f"training '{name}' diverged: {bad[0]} became NaN or infinite; lower "
            "training.lr or check the inputs' scale"
        )


def _logger(kind: str, log_dir: Path | None):
    """A logger writing below `log_dir`; each fit (or resumed fit) gets its own `version_N`,
    so earlier logs are never deleted."""
    if log_dir is None:
        return False
    from lightning.pytorch import loggers

    if kind == "tensorboard":
        require("tensorboard", "tensorboard")
        return loggers.TensorBoardLogger(log_dir, name="")
    if kind == "mlflow":
        require("mlflow", "mlflow")
        return loggers.MLFlowLogger(save_dir=str(log_dir))
    return loggers.CSVLogger(log_dir, name="")


class _quiet_lightning:
    """Silence Lightning's start-up chatter (GPU available, …) that users cannot act on."""

    def __enter__(self) -> None:
        self._loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch")]
        self._levels = [lg.level for lg in self._loggers]
        for lg in self._loggers:
            lg.setLevel(logging.WARNING)
        self._warn = warnings.catch_warnings()
        self._warn.__enter__()
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*number of training batches.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        warnings.filterwarnings("ignore", ".*validation_step` but have no `val_dataloader.*")

    def __exit__(self, *exc: object) -> None:
        self._warn.__exit__(*exc)
        for lg, level in zip(self._loggers, self._levels, strict=True):
            lg.setLevel(level)
