import numpy as np

from polyfuse.data.dataset import ArraySource, ListSource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec
from polyfuse.evaluation.robustness import conditions, random_removal


def _data(n=400):
    rng = np.random.default_rng(0)
    return MultimodalDataset(
        [str(i) for i in range(n)],
        {m: ModalitySpec(m, "tabular", (2,)) for m in "abc"}
        | {"t": ModalitySpec("t", "text", (), vocab_size=16)},
        {
            "a": ArraySource(rng.normal(size=(n, 2)), np.ones(n, bool)),
            "b": ArraySource(rng.normal(size=(n, 2)), rng.uniform(size=n) < 0.5),
            "c": ArraySource(rng.normal(size=(n, 2)), np.ones(n, bool)),
            "t": ListSource(["some words"] * n),
        },
        {},
        {},
    )


def presence(data):
    return np.stack([s.present for s in data.sources.values()], 1)


def expected_removal(present: np.ndarray, rate: float) -> float:
    """The expected fraction removed under the keep-one rule: a sample with k modalities loses
    each with probability `rate`, except that one comes back when all k went (rate**k)."""
    k = present.sum(1)
    return float((k * rate - rate**k).sum() / k.sum())


def test_random_removal_rate_and_at_least_one_kept():
    data = _data()
    before = presence(data)
    for rate in (0.0, 0.5, 0.9, 1.0):
        after = presence(random_removal(data, rate, seed=1))
        assert not (after & ~before).any()  # nothing appears
        assert after.any(1).all()  # every sample keeps a modality
        removed = (before & ~after).sum() / before.sum()
        # ~1,400 present cells: the sampling error is about 0.013, so 0.04 is three of them
        assert abs(removed - expected_removal(before, rate)) < 0.04, (rate, removed)
    # at rate 1 the keep-one rule is all that acts: exactly one modality per sample is left
    np.testing.assert_array_equal(presence(random_removal(data, 1.0, seed=1)).sum(1), 1)
    np.testing.assert_array_equal(presence(random_removal(data, 0.0, 1)), before)
    np.testing.assert_array_equal(
        presence(random_removal(data, 0.5, 3)), presence(random_removal(data, 0.5, 3))
    )


def test_conditions_cover_each_modality_and_rate():
    data = _data(20)
    names = [c for c, _ in conditions(data, rates=(0.2, 0.8))]
    assert names == ["all", "drop:a", "drop:b", "drop:c", "drop:t", "random:0.2", "random:0.8"]
    dropped = dict(conditions(data))["drop:t"]
    assert not dropped.sources["t"].present.any()
    assert dropped.sources["a"].present.all()
