"""Per-feature attributions by integrated gradients: which values moved this patient's score.

Modality contributions (`attribution.py`) say how much each modality matters; a clinician
also asks which features — which lab value, which gene, which pixels. Integrated gradients
(Sundararajan et al. 2017; captum's `IntegratedGradients`) attribute a score to each input
value: the path integral of the gradient from a baseline to the input, so that the
attributions of a patient add up to score(input) − score(baseline) (completeness).

Choices, where the method leaves them open:

* The inputs are the model's, after the fitted preprocessing: a tabular value is its
  standardised value, so the baseline 0 is the training mean of every feature (and an absent
  modality stays absent: it has no values to attribute).
* The score is what a user reads, before any squashing: the logit of a binary task (the
  log-odds; a probability saturates and flattens attributions), the logit of each patient's
  predicted class for a multiclass task, the risk of a survival task (the Cox log-hazard, or
  the discrete model's risk), the prediction of a regression task. An ensemble's score is its
  members' mean, whose attributions are the mean of theirs (integrated gradients is linear).
* Sequences are attributed per value and summed over time into one value per channel, with
  the per-time map kept; images keep their per-pixel map (summed over channels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from polyfuse.data.dataset import ModalityBatch, MultimodalDataset
from polyfuse.errors import ConfigError, require
from polyfuse.tasks import losses
from polyfuse.training.fit import FittedModel

ATTRIBUTED = ("tabular", "sequence", "image")
"""Modality kinds with continuous inputs to integrate along (bags are read by attention and
text by tokens, neither along a straight path)."""
STEPS = 32
BATCH = 64


@dataclass
class Attributions:
    """Integrated-gradient attributions of one task's score, per modality: `values[m]` is
    (n, *input shape) for the patients of `ids`; `delta` is each patient's completeness
    error (sum of attributions − (score − baseline score)), a check on the integral."""

    task: str
    ids: list[str]
    values: dict[str, np.ndarray]
    kinds: dict[str, str]
    present: dict[str, np.ndarray]
    delta: np.ndarray
    images: dict[str, np.ndarray]
    """The preprocessed input of each image modality, to draw its attributions over."""

    def per_feature(self, modality: str) -> np.ndarray:
        """(n, F): a tabular modality's attributions; a sequence's (n, T, C) summed over
        time per channel; an image's (n, C, ...) summed over its pixels per channel."""
        v = self.values[modality]
        if self.kinds[modality] == "sequence":
            return v.sum(1)
        return v.reshape(len(v), v.shape[1], -1).sum(-1)


def _score(fitted: FittedModel, task: str, logits: torch.Tensor) -> torch.Tensor:
    """The differentiable score a user reads, per sample (see the module docstring)."""
    spec = fitted.tasks[task]
    if spec.type == "survival":
        discrete = fitted.objectives[task].curve_times is not None
        return losses.discrete_risk(logits) if discrete else logits.reshape(-1)
    if spec.type == "multiclass":
        return logits.gather(1, logits.argmax(1, keepdim=True)).reshape(-1)
    if spec.type == "multilabel":
        raise ConfigError(f"task '{task}' is multilabel: attribute one label's score instead")
    return logits.reshape(-1)


def integrated_gradients(
    fitted: FittedModel, dataset: MultimodalDataset, task: str, *, steps: int = STEPS
) -> Attributions:
    """Integrated gradients of `task`'s score for every patient of `dataset`, on each
    continuous modality they have (tabular, sequence, image), baseline 0 (the training mean)."""
    captum = require("captum.attr", "explain")
    if task not in fitted.tasks:
        raise ConfigError(f"unknown task '{task}'; the model predicts {list(fitted.tasks)}")
    data = fitted.preprocessor.transform(dataset)
    names = [m for m, s in data.specs.items() if s.kind in ATTRIBUTED]
    if not names:
        raise ConfigError("integrated gradients need a tabular, sequence or image modality")
    for member in fitted.members:
        member.eval()
    values: dict[str, list[np.ndarray]] = {m: [] for m in names}
    images: dict[str, list[np.ndarray]] = {m: [] for m in names if data.specs[m].kind == "image"}
    deltas = []
    for start in range(0, len(data), BATCH):
        batch = data.batch(np.arange(start, min(start + BATCH, len(data))))
        rest = batch.inputs

        def forward(*tensors: torch.Tensor, rest=rest) -> torch.Tensor:
            n = len(tensors[0])
            inputs = {m: _repeat(b, n) for m, b in rest.items()}
            for m, t in zip(names, tensors, strict=True):
                inputs[m] = ModalityBatch(
                    t, inputs[m].present, inputs[m].token_mask, inputs[m].times
                )
            scores = [
                _score(fitted, task, member(inputs).logits[task]) for member in fitted.members
            ]
            # an input the model never reads (unimodal[a]'s b) stays in the graph, gradient 0
            unread = sum(0.0 * t.reshape(n, -1).sum(1) for t in tensors)
            return torch.stack(scores).mean(0) + unread

        given = tuple(rest[m].data.float() for m in names)
        ig = captum.IntegratedGradients(forward)
        attributions, delta = ig.attribute(
            given,
            baselines=tuple(torch.zeros_like(t) for t in given),
            n_steps=steps,
            internal_batch_size=BATCH * 4,
            return_convergence_delta=True,
        )
        for m, a, b in zip(names, attributions, given, strict=True):
            present = rest[m].present.reshape(-1, *[1] * (b.dim() - 1))
            values[m].append((a * present).detach().numpy())
            if m in images:
                images[m].append(b.numpy())
        deltas.append(delta.detach().numpy())
    return Attributions(
        task,
        list(dataset.ids),
        {m: np.concatenate(v) for m, v in values.items()},
        {m: data.specs[m].kind for m in names},
        {m: data.sources[m].present for m in names},
        np.concatenate(deltas),
        {m: np.concatenate(v) for m, v in images.items()},
    )


def _repeat(b: ModalityBatch, n: int) -> ModalityBatch:
    """A modality's batch tiled to `n` rows (captum stacks the path's steps along the batch)."""
    k = n // len(b.present)

    def tile(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.repeat(k, *[1] * (t.dim() - 1))

    return ModalityBatch(tile(b.data), tile(b.present), tile(b.token_mask), tile(b.times))


def _names(attributions: Attributions, fitted: FittedModel, modality: str) -> list[str]:
    """The features of a modality as the model reads them (after preprocessing: one-hot
    levels, missing indicators), else `<modality>[j]`."""
    width = attributions.per_feature(modality).shape[1]
    specs = fitted.preprocessor.transform_specs(fitted.raw_specs)
    names = specs[modality].feature_names if modality in specs else None
    return list(names[:width]) if names else [f"{modality}[{j}]" for j in range(width)]


def patient_rows(attributions: Attributions, fitted: FittedModel) -> pd.DataFrame:
    """Every patient's attribution per feature, long: id, modality, feature, attribution
    (patients without the modality have none)."""
    frames = []
    for m in attributions.values:
        has = attributions.present[m]
        per = attributions.per_feature(m)[has]
        names = _names(attributions, fitted, m)
        frames.append(
            pd.DataFrame(
                {
                    "id": np.repeat(np.asarray(attributions.ids)[has], per.shape[1]),
                    "modality": m,
                    "feature": np.tile(names, len(per)),
                    "attribution": per.reshape(-1),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def feature_table(attributions: Attributions, fitted: FittedModel) -> pd.DataFrame:
    """Per modality and feature: mean |attribution| over the patients who have the modality,
    and the mean signed attribution (which way the feature pushes the score), largest first."""
    long = patient_rows(attributions, fitted)
    grouped = long.groupby(["modality", "feature"], sort=False)["attribution"]
    table = pd.DataFrame(
        {"mean_abs": grouped.apply(lambda a: a.abs().mean()), "mean": grouped.mean()}
    ).reset_index()
    return table.sort_values("mean_abs", ascending=False, kind="stable").reset_index(drop=True)
