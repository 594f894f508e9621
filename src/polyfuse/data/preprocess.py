"""Tabular preprocessing fitted on training samples only, and saved with the model as JSON.

Imputation and scaling are fitted per fold so that no statistic of a test sample leaks into
training. The state is plain lists (no pickle), so a run directory can be loaded safely.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Literal

import numpy as np

from polyfuse.data.dataset import ArraySource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec
from polyfuse.errors import DataError, DataWarning


@dataclasses.dataclass
class _Fitted:
    fill: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    indicator: np.ndarray  # indices of features that get a missing-value indicator


class Preprocessor:
    """Impute NaN, standardise, and optionally append missing-value indicators.

    Applies to tabular modalities only (images, bags and sequences are left as they are).
    Statistics are computed over the samples that have the modality. A feature with no observed
    value in training is imputed with 0; a constant feature is centred but not divided.

    Args:
        impute: "mean", "median" or "zero".
        scale: standardise each feature to zero mean and unit variance.
        missing_indicator: append a 0/1 column for each feature that had a NaN in training.
    """

    def __init__(
        self,
        impute: Literal["mean", "median", "zero"] = "mean",
        scale: bool = True,
        missing_indicator: bool = False,
    ) -> None:
        self.impute = impute
        self.scale = scale
        self.missing_indicator = missing_indicator
        self.fitted: dict[str, _Fitted] = {}

    def fit(self, dataset: MultimodalDataset) -> Preprocessor:
        self.fitted = {}
        for m, spec in dataset.specs.items():
            src = dataset.sources[m]
            if spec.kind != "tabular" or not isinstance(src, ArraySource):
                continue
            # float64 statistics: a float32 sum or square of values near ±3.4e38 overflows
            x = src.values[src.present].astype(np.float64)
            observed = ~np.isnan(x)
            _warn_empty(m, spec, observed)
            if self.impute == "zero":
                fill = np.zeros(x.shape[1], np.float32)
            elif self.impute == "median":
                fill = _nan_stat(np.nanmedian, x)
            else:
                fill = _nan_stat(np.nanmean, x)
            filled = np.where(observed, x, fill)
            mean = filled.mean(0) if self.scale and len(x) else np.zeros(x.shape[1])
            std = filled.std(0) if self.scale and len(x) else np.ones(x.shape[1])
            std = np.where(std > 1e-8, std, 1.0)
            indicator = np.flatnonzero((~observed).any(0)) if self.missing_indicator else []
            self.fitted[m] = _Fitted(
                fill.astype(np.float32),
                mean.astype(np.float32),
                std.astype(np.float32),
                np.asarray(indicator, dtype=np.int64),
            )
        return self

    def transform_specs(self, specs: dict[str, ModalitySpec]) -> dict[str, ModalitySpec]:
        """The specs after `transform` (missing indicators widen tabular modalities)."""
        out = dict(specs)
        for m, f in self.fitted.items():
            if m not in specs:
                raise DataError(f"preprocessing was fitted on modality '{m}', which the data lacks")
            spec = specs[m]
            if spec.shape[0] != len(f.fill):
                raise DataError(
                    f"modality '{m}' has {spec.shape[0]} features; preprocessing expects {len(f.fill)}"
                )
            names = list(spec.feature_names or [f"{m}_{i}" for i in range(spec.shape[0])])
            names += [f"{names[i]}_missing" for i in f.indicator]
            out[m] = dataclasses.replace(spec, shape=(len(names),), feature_names=tuple(names))
        return out

    def transform(self, dataset: MultimodalDataset) -> MultimodalDataset:
        """The dataset with fitted tabular modalities imputed and scaled (a new object)."""
        specs = self.transform_specs(dataset.specs)
        sources = dict(dataset.sources)
        for m, f in self.fitted.items():
            x = sources[m].values
            missing = np.isnan(x)
            out = np.where(missing, f.fill, x) - f.mean.astype(np.float64)  # float32 overflows
            out /= f.std
            _refuse_huge(m, out, sources[m].present, dataset.specs[m], dataset.ids)
            out = out.astype(np.float32)
            if len(f.indicator):
                out = np.concatenate([out, missing[:, f.indicator].astype(np.float32)], axis=1)
            sources[m] = ArraySource(out, sources[m].present)
        return dataset.replace(specs=specs, sources=sources)

    def fit_transform(self, dataset: MultimodalDataset) -> MultimodalDataset:
        return self.fit(dataset).transform(dataset)

    def state_dict(self) -> dict[str, Any]:
        return {
            "impute": self.impute,
            "scale": self.scale,
            "missing_indicator": self.missing_indicator,
            "fitted": {
                m: {k: v.tolist() for k, v in dataclasses.asdict(f).items()}
                for m, f in self.fitted.items()
            },
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Preprocessor:
        pre = cls(state["impute"], state["scale"], state["missing_indicator"])
        pre.fitted = {
            m: _Fitted(
                np.asarray(f["fill"], np.float32),
                np.asarray(f["mean"], np.float32),
                np.asarray(f["std"], np.float32),
                np.asarray(f["indicator"], np.int64),
            )
            for m, f in state["fitted"].items()
        }
        return pre


HUGE = 1e15
"""The largest magnitude a preprocessed tabular value may have (in standard deviations, or
raw units for an unscaled or constant feature): models square and multiply activations, and
float32 overflows into NaN losses and predictions somewhere beyond it."""


def _refuse_huge(
    m: str, z: np.ndarray, present: np.ndarray, spec: ModalitySpec, ids: list[str]
) -> None:
    bad = np.argwhere((np.abs(z) > HUGE) & present[:, None])
    if len(bad):
        i, j = (int(v) for v in bad[0])
        feature = spec.feature_names[j] if spec.feature_names else str(j)
        raise DataError(
            f"modality '{m}', sample '{ids[i]}', feature '{feature}' is {z[i, j]:g} after "
            f"preprocessing ({len(bad)} such value(s)), beyond ±{HUGE:g}: far outside the "
            "training samples' range, or unscaled; rescale the feature, keep preprocess.scale "
            "on, or check the value"
        )


def _nan_stat(fn, x: np.ndarray) -> np.ndarray:
    """A NaN-ignoring column statistic; columns never observed get 0."""
    if len(x) == 0:
        return np.zeros(x.shape[1], np.float32)
    with warnings.catch_warnings():  # "Mean of empty slice": `_warn_empty` names the columns
        warnings.simplefilter("ignore", RuntimeWarning)
        out = fn(x, axis=0)
    return np.where(np.isnan(out), 0.0, out)


def _warn_empty(m: str, spec: ModalitySpec, observed: np.ndarray) -> None:
    """Name the features without any value in the training samples: they are imputed with 0
    and carry no information, which is most often a wrong column or a failed export."""
    empty = np.flatnonzero(~observed.any(0)) if len(observed) else np.arange(observed.shape[1])
    if len(empty):
        names = spec.feature_names or tuple(f"{m}_{j}" for j in range(spec.shape[0]))
        shown = ", ".join(f"'{names[j]}'" for j in empty[:5])
        more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        warnings.warn(
            f"modality '{m}': feature(s) {shown}{more} have no value in the training samples; "
            "imputed with 0 (they carry no information: check the column)",
            DataWarning,
            stacklevel=3,
        )
