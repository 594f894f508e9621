"""Unpaired multi-cohort training: combining cohorts, the zip sampler, and heads supervised only
by their own cohort's samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from polyfuse.config import TrainingConfig, parse_config
from polyfuse.data.cohorts import combine_cohorts
from polyfuse.data.dataset import ArraySource, ListSource, MultimodalDataset
from polyfuse.data.sampling import ZipBatchSampler
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.data.splits import kfold
from polyfuse.errors import ConfigError, DataError
from polyfuse.models.registry import create_model
from polyfuse.tasks.objective import TaskObjective
from polyfuse.training.fit import make_loader, train_model
from polyfuse.training.module import FusionModule


def _cohort(n: int, seed: int, modality: str, task: TaskSpec, width: int = 5) -> MultimodalDataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width)).astype(np.float32)
    shared = rng.normal(size=(n, 3)).astype(np.float32)
    if task.type == "binary":
        y = (x[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    else:
        y = np.stack([rng.exponential(np.exp(-x[:, 0])) * 50 + 1, rng.uniform(size=n) < 0.7], 1)
    return MultimodalDataset(
        [f"p{i}" for i in range(n)],
        {
            modality: ModalitySpec(modality, "tabular", (width,)),
            "age": ModalitySpec("age", "tabular", (3,)),
        },
        {
            modality: ArraySource(x, np.ones(n, bool)),
            "age": ArraySource(shared, np.ones(n, bool)),
        },
        {task.name: task},
        {task.name: y},
        name=f"c{seed}",
    )


@pytest.fixture
def two() -> dict[str, MultimodalDataset]:
    return {
        "a": _cohort(40, 1, "rna", TaskSpec("y", "binary")),
        "b": _cohort(25, 2, "ct", TaskSpec("os", "survival")),
    }


def test_combined_cohorts_keep_their_own_modalities_and_targets(two):
    data = combine_cohorts(two)
    assert len(data) == 65 and data.ids[0] == "a:p0" and data.ids[40] == "b:p0"
    assert data.cohort.tolist() == ["a"] * 40 + ["b"] * 25
    presence = data.presence
    assert presence["rna"].tolist() == [True] * 40 + [False] * 25
    assert presence["ct"].tolist() == [False] * 40 + [True] * 25
    assert presence["age"].all()  # declared by both with the same spec: shared
    np.testing.assert_array_equal(data.sources["rna"].values[:40], two["a"].sources["rna"].values)
    assert np.isnan(data.targets["y"][40:]).all() and not np.isnan(data.targets["y"][:40]).any()
    assert data.targets["os"].shape == (65, 2) and np.isnan(data.targets["os"][:40]).all()
    sub = data.subset([0, 50])
    assert sub.cohort.tolist() == ["a", "b"]


def test_clashing_names_are_refused_unless_prefixed(two):
    two["b"] = _cohort(25, 2, "rna", TaskSpec("os", "survival"), width=7)
    with pytest.raises(DataError, match="modality 'rna' differs between cohorts 'a' and 'b'"):
        combine_cohorts(two)
    data = combine_cohorts(two, prefix=True)
    assert sorted(data.specs) == ["a_age", "a_rna", "b_age", "b_rna"]
    assert sorted(data.tasks) == ["a_y", "b_os"] and data.tasks["a_y"].name == "a_y"
    with pytest.raises(DataError, match="at least two"):
        combine_cohorts({"a": two["a"]})


def test_list_sources_are_padded_with_absent_samples():
    bag = ModalitySpec("slides", "bag", (4,))
    a = MultimodalDataset(
        ["x", "y"],
        {"slides": bag},
        {"slides": ListSource([np.ones((3, 4)), None])},
        {"t": TaskSpec("t", "binary")},
        {"t": np.array([0.0, 1.0])},
    )
    b = _cohort(3, 0, "rna", TaskSpec("t", "binary"))
    data = combine_cohorts({"a": a, "b": b})
    assert data.presence["slides"].tolist() == [True, False, False, False, False]
    assert data.batch(np.arange(5)).inputs["slides"].token_mask.shape == (5, 3)


def test_zip_sampler_puts_every_cohort_in_every_batch():
    cohort = np.array(["a"] * 23 + ["b"] * 7)
    sampler = ZipBatchSampler(cohort, 5, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5  # ceil(23 / 5): the largest cohort sets the pace
    for batch in batches:
        assert sum(cohort[i] == "b" for i in batch) == 5  # the small cohort, cycled
    seen_a = [i for b in batches for i in b if cohort[i] == "a"]
    assert sorted(seen_a) == list(range(23))  # the largest cohort exactly once per epoch
    seen_b = [i for b in batches for i in b if cohort[i] == "b"]
    assert set(seen_b) == set(range(23, 30))
    assert list(ZipBatchSampler(cohort, 5, seed=0)) == batches  # seeded


def test_folds_are_stratified_by_cohort(two):
    data = combine_cohorts(two)
    for split in kfold(data, 3, 1, seed=0):
        counts = {c: int((data.cohort[split.test] == c).sum()) for c in "ab"}
        assert counts["a"] in (13, 14) and counts["b"] in (8, 9)
    with pytest.raises(DataError, match=r"cohort 'b'.* 3 samples, fewer than 5 folds"):
        kfold(data, 5, 1, seed=0)  # b has only 3 censored patients


def test_a_head_gets_no_gradient_from_the_other_cohorts_samples(two):
    data = combine_cohorts(two)
    torch.manual_seed(0)
    model = create_model("early", data.specs, data.tasks, dim=8, dropout=0.0)
    objectives = nn.ModuleDict(
        {t: TaskObjective(s).fit(data.targets[t]) for t, s in data.tasks.items()}
    )
    module = FusionModule(model, objectives)

    def head_grads(rows) -> dict[str, torch.Tensor]:
        model.zero_grad()
        module.loss(data.batch(np.asarray(rows))).backward()
        grads = {t: h.weight.grad for t, h in model.heads.items()}
        return {t: torch.zeros(1) if g is None else g.clone() for t, g in grads.items()}

    only_b = head_grads(range(45, 60))
    assert torch.count_nonzero(only_b["y"]) == 0  # cohort a's head: untouched by b
    assert torch.count_nonzero(only_b["os"]) > 0
    mixed = head_grads([*range(0, 10), *range(45, 60)])
    only_a = head_grads(range(0, 10))
    torch.testing.assert_close(mixed["y"], only_a["y"])  # b's samples add nothing to y's head
    torch.testing.assert_close(mixed["os"], only_b["os"])


def test_training_on_two_cohorts_learns_both_tasks(two):
    data = combine_cohorts(two)
    cfg = TrainingConfig(epochs=12, batch_size=8, lr=1e-2, patience=12, progress=False)
    fitted = train_model("early", data, training=cfg, hparams={"dim": 16}, seed=0)
    metrics = fitted.evaluate(data, data.targets)
    assert metrics["y"]["auroc"] > 0.8
    assert metrics["os"]["c_index"] > 0.65
    loader = make_loader(data, 8, shuffle=True)
    assert len(loader) == 5  # ceil(40 / 8) zipped steps


def test_config_declares_cohorts(tmp_path):
    raw = {
        "data": {
            "cohorts": {"acc": {"dataset": "tcga-acc"}, "breast": {"dataset": "gse7390"}},
            "cohort_prefix": True,
        }
    }
    config = parse_config(raw)
    assert list(config.data.cohorts) == ["acc", "breast"]
    with pytest.raises(ConfigError, match="at least two cohorts"):
        parse_config({"data": {"cohorts": {"acc": {"dataset": "tcga-acc"}}}})
    with pytest.raises(ConfigError, match="exactly one of"):
        parse_config({"data": {"dataset": "tcga-acc", "cohorts": raw["data"]["cohorts"]}})
    with pytest.raises(ConfigError, match=r"data.cohorts.acc.datset: unknown key"):
        parse_config({"data": {"cohorts": {"acc": {"datset": "x"}, "b": {"dataset": "y"}}}})
