"""Synthetic cohorts with known ground truth: labels driven by cross-modal interactions.

`make_interactions` draws tabular modalities of standard-normal features and a label that
depends on *products* of features across chosen modality pairs:

    s_m   = x_m · w_m                      one hidden unit-norm direction per informative modality
    score = strength · Σ_(i,j) s_i s_j / √|pairs|  +  main · Σ_m x_m · v_m / √M
    binary:     y = 1[score + ε > 0]        ε ~ N(0, noise²)
    regression: y = score + ε
    survival:   T ~ Exponential(rate e^score), censored by an independent exponential

With `main=0` (the default) every single modality, and every pair that is not listed, carries
no information about y at all (a product of independent zero-mean symmetric variables is
uncorrelated with each factor), so a model can only predict by combining the right pair:
pairwise fusion can be checked against the truth. Missing modalities are drawn after the label,
from the complete features, as in a real cohort where an unmeasured modality still existed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from polyfuse.data.dataset import ArraySource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError

SyntheticTask = Literal["binary", "regression", "survival"]


@dataclass(frozen=True)
class InteractionTruth:
    """What generated the label: the informative pairs and the hidden directions.

    Args:
        pairs: the informative modality pairs, in the order given.
        directions: the unit direction w_m of each modality that takes part in a pair.
        score: the noiseless score of every sample (before the link to the task).
    """

    pairs: tuple[tuple[str, str], ...]
    directions: dict[str, np.ndarray]
    score: np.ndarray

    @property
    def pair_names(self) -> tuple[str, ...]:
        """The pairs as "a+b", the naming of `HierarchicalFusion.pair_names`."""
        return tuple(f"{i}+{j}" for i, j in self.pairs)


def _check(
    modalities: Mapping[str, int], pairs: Sequence[tuple[str, str]], task: str, missing: float
) -> None:
    if len(modalities) < 2:
        raise ConfigError("make_interactions needs at least two modalities")
    for m, width in modalities.items():
        if int(width) < 1:
            raise ConfigError(f"make_interactions: modality '{m}' needs width >= 1, got {width}")
    if not pairs:
        raise ConfigError("make_interactions needs at least one informative pair")
    for pair in pairs:
        if len(pair) != 2 or pair[0] == pair[1]:
            raise ConfigError(f"make_interactions: {pair} is not a pair of two modalities")
        unknown = [m for m in pair if m not in modalities]
        if unknown:
            raise ConfigError(
                f"make_interactions: pair {tuple(pair)} names unknown modalities {unknown}; "
                f"have {list(modalities)}"
            )
    if task not in ("binary", "regression", "survival"):
        raise ConfigError(
            f"make_interactions: task must be binary, regression or survival, got '{task}'"
        )
    if not 0.0 <= missing < 1.0:
        raise ConfigError(f"make_interactions: missing must be in [0, 1), got {missing}")


def _unit(rng: np.random.Generator, width: int) -> np.ndarray:
    w = rng.normal(size=width)
    return w / np.linalg.norm(w)


def make_interactions(
    n: int = 500,
    modalities: Mapping[str, int] | None = None,
    pairs: Sequence[tuple[str, str]] = (("a", "b"),),
    *,
    task: SyntheticTask = "binary",
    strength: float = 1.0,
    main: float = 0.0,
    noise: float = 0.25,
    missing: float = 0.0,
    seed: int = 0,
) -> MultimodalDataset:
    """A cohort of `n` samples whose target depends on products across `pairs` of modalities.

    Args:
        n: number of samples.
        modalities: modality name → number of tabular features (default a, b, c with 8 each).
        pairs: informative modality pairs (unordered).
        task: "binary" (task "y"), "regression", or "survival" ((time, event)).
        strength: scale of the interaction score.
        main: scale of additive (unimodal) effects; 0 leaves each modality alone uninformative.
        noise: standard deviation of the noise added to the score (binary, regression).
        missing: probability that each modality is absent for a sample, drawn independently;
            every sample keeps at least one modality.
        seed: seed of the generator: the same arguments give the same cohort.

    Returns:
        A `MultimodalDataset` named "synthetic-interactions"; its `truth` attribute is an
        `InteractionTruth`. (`subset` and preprocessing return plain datasets without it.)
    """
    modalities = dict(modalities or {"a": 8, "b": 8, "c": 8})
    pairs = [tuple(p) for p in pairs]
    _check(modalities, pairs, task, missing)
    rng = np.random.default_rng(seed)
    x = {m: rng.normal(size=(n, int(w))).astype(np.float32) for m, w in modalities.items()}
    involved = list(dict.fromkeys(m for p in pairs for m in p))
    directions = {m: _unit(rng, modalities[m]) for m in involved}
    proj = {m: x[m] @ directions[m] for m in involved}
    score = strength * sum(proj[i] * proj[j] for i, j in pairs) / np.sqrt(len(pairs))
    if main:
        linear = sum(x[m] @ _unit(rng, int(w)) for m, w in modalities.items())
        score = score + main * linear / np.sqrt(len(modalities))
    eps = rng.normal(scale=noise, size=n)
    if task == "binary":
        target = (score + eps > 0).astype(np.float32)
        tasks = {"y": TaskSpec("y", "binary")}
    elif task == "regression":
        target = (score + eps).astype(np.float32)
        tasks = {"y": TaskSpec("y", "regression")}
    else:
        time = rng.exponential(1.0 / np.exp(score))
        censor = rng.exponential(np.median(time) * 2.0, size=n)
        target = np.stack([np.minimum(time, censor), (time <= censor).astype(float)], axis=1)
        tasks = {"y": TaskSpec("y", "survival")}

    names = list(modalities)
    presence = rng.random((n, len(names))) >= missing
    # A sample with no modality at all carries nothing: give it back one at random.
    empty = ~presence.any(axis=1)
    presence[np.flatnonzero(empty), rng.integers(0, len(names), int(empty.sum()))] = True
    specs = {
        m: ModalitySpec(m, "tabular", (int(w),), tuple(f"{m}{k}" for k in range(int(w))))
        for m, w in modalities.items()
    }
    sources = {m: ArraySource(x[m], presence[:, k]) for k, m in enumerate(names)}
    data = MultimodalDataset(
        [f"s{i:05d}" for i in range(n)],
        specs,
        sources,
        tasks,
        {"y": target},
        name="synthetic-interactions",
    )
    data.truth = InteractionTruth(tuple(pairs), directions, score.astype(np.float32))
    return data


__all__ = ["InteractionTruth", "make_interactions"]
