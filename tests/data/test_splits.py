import warnings

import numpy as np
import pytest

from polyfuse.data.dataset import ArraySource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.data.splits import cross_fit, holdout, kfold, strata, stratum_names
from polyfuse.errors import DataError, FallbackWarning


def _survival(n=40, events=10):
    rng = np.random.default_rng(0)
    event = np.zeros(n)
    event[rng.choice(n, events, replace=False)] = 1
    y = np.stack([rng.uniform(1, 100, n), event], 1)
    return MultimodalDataset(
        [f"s{i}" for i in range(n)],
        {"x": ModalitySpec("x", "tabular", (2,))},
        {"x": ArraySource(rng.normal(size=(n, 2)), np.ones(n, bool))},
        {"os": TaskSpec("os", "survival")},
        {"os": y},
    )


def test_folds_partition_samples_and_stratify_events():
    data = _survival()
    splits = kfold(data, folds=5, repeats=3, seed=1)
    assert len(splits) == 15
    for r in range(3):
        tests = np.concatenate([s.test for s in splits if s.repeat == r])
        assert sorted(tests.tolist()) == list(range(40))
    for s in splits:
        assert not set(s.train) & set(s.test)
        assert data.targets["os"][s.test, 1].sum() == 2  # 10 events over 5 folds
    # repeats shuffle differently; the same seed reproduces exactly
    assert not np.array_equal(splits[0].test, splits[5].test)
    again = kfold(data, folds=5, repeats=3, seed=1)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(splits, again, strict=True))


def test_too_few_samples_or_events_for_the_folds():
    with pytest.raises(DataError, match="3 events, fewer than 5 folds"):
        kfold(_survival(events=3), folds=5)
    with pytest.raises(DataError, match="4 samples, fewer than 5 folds"):
        kfold(_survival(n=4, events=2), folds=5)


def test_holdout_is_stratified_and_disjoint():
    labels = np.array([0] * 30 + [1] * 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a split that can be stratified takes no fallback
        train, val = holdout(np.arange(40), labels, 0.25, seed=0)
    assert len(val) == 10 and not set(train) & set(val)
    assert labels[val].sum() in (2, 3)
    assert len(holdout(np.arange(40), labels, 0.0, 0)[1]) == 0


def test_a_rare_class_is_named_by_its_label_not_its_index():
    """Issue #15, finding 9: 'class 2' told the user nothing."""
    n = 30
    y = np.array([0] * 14 + [1] * 14 + [2] * 2, dtype=np.float32)
    data = MultimodalDataset(
        [f"s{i}" for i in range(n)],
        {"x": ModalitySpec("x", "tabular", (1,))},
        {"x": ArraySource(np.zeros((n, 1)), np.ones(n, bool))},
        {"grade": TaskSpec("grade", "multiclass", ("low", "mid", "high"))},
        {"grade": y},
    )
    with pytest.raises(DataError, match="task 'grade': class 'high' has 2 samples"):
        kfold(data, folds=5)


def test_holdout_that_cannot_be_stratified_says_why_and_splits_at_random():
    labels = np.array([0] * 9 + [1])
    with pytest.warns(FallbackWarning, match=r"not stratified: stratum 1 has 1 sample"):
        train, val = holdout(np.arange(10), labels, 0.2, seed=0)
    assert len(val) == 2 and sorted([*train, *val]) == list(range(10))
    with pytest.warns(FallbackWarning, match=r"validation part's 1 sample\(s\) cannot hold all 3"):
        holdout(np.arange(9), np.arange(9) % 3, 0.1, seed=0)


def test_an_unstratifiable_holdout_names_the_class_and_task():
    n = 12
    y = np.array([0] * 11 + [1], dtype=np.float32)
    data = MultimodalDataset(
        [f"s{i}" for i in range(n)],
        {"x": ModalitySpec("x", "tabular", (1,))},
        {"x": ArraySource(np.zeros((n, 1)), np.ones(n, bool))},
        {"relapse": TaskSpec("relapse", "binary", ("no", "yes"))},
        {"relapse": y},
    )
    with pytest.warns(FallbackWarning, match=r"class 'yes' of task 'relapse' has 1 sample"):
        holdout(np.arange(n), strata(data), 0.25, seed=0, names=stratum_names(data))
    surv = np.stack([np.arange(1.0, n + 1), y], 1)
    survival = data.replace(tasks={"os": TaskSpec("os", "survival")}, targets={"os": surv})
    assert stratum_names(survival) == {
        0: "the censored samples of task 'os'",
        1: "the events of task 'os'",
    }


def test_holdout_of_one_sample_is_refused():
    with pytest.raises(DataError, match=r"1 training sample\(s\) cannot be split.*val_fraction"):
        holdout(np.arange(1), None, 0.2, seed=0)


def test_cross_fit_folds_are_the_first_repeat_of_kfold_and_partition_the_samples():
    data = _survival()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # stratifiable: no fallback
        pairs = cross_fit(np.arange(40), strata(data), 5, seed=1)
    for (fit, val), split in zip(pairs, kfold(data, folds=5, seed=1), strict=True):
        np.testing.assert_array_equal(val, split.test)
        np.testing.assert_array_equal(fit, split.train)
        assert data.targets["os"][val, 1].sum() == 2  # 10 events over 5 folds
    # on a subset, the folds are of the subset's own indices
    subset = np.arange(10, 40)
    held = np.concatenate([val for _, val in cross_fit(subset, strata(data), 3, seed=1)])
    assert sorted(held.tolist()) == subset.tolist()


def test_cross_fit_that_cannot_be_stratified_falls_back_to_random_folds():
    labels = np.array([0] * 10 + [1] * 2)
    with pytest.warns(FallbackWarning, match=r"ensemble's 3 folds .* not stratified: the events"):
        pairs = cross_fit(np.arange(12), labels, 3, 0, names={1: "the events"})
    assert sorted(np.concatenate([v for _, v in pairs]).tolist()) == list(range(12))
    with pytest.raises(DataError, match=r"2 training sample\(s\) cannot be split into 3 folds"):
        cross_fit(np.arange(2), None, 3, seed=0)
