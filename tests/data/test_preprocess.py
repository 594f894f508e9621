import numpy as np
import pytest

from polyfuse.data.dataset import ArraySource, MultimodalDataset
from polyfuse.data.preprocess import Preprocessor
from polyfuse.data.specs import ModalitySpec


def _data(values, present):
    values = np.asarray(values, np.float32)
    spec = ModalitySpec("x", "tabular", (values.shape[1],), ("a", "b"))
    return MultimodalDataset(
        [str(i) for i in range(len(values))],
        {"x": spec},
        {"x": ArraySource(values, np.asarray(present))},
        {},
        {},
    )


def test_fitted_on_training_rows_only_and_ignores_absent_samples():
    train = _data([[1, np.nan], [3, 4], [100, 100]], [True, True, False])
    pre = Preprocessor("mean", scale=True).fit(train)
    # absent row (100, 100) must not count: mean of a = 2, b observed once = 4
    np.testing.assert_allclose(pre.fitted["x"].fill, [2, 4])
    test = _data([[2, np.nan], [5, 5]], [True, True])
    out = pre.transform(test).sources["x"].values
    # a: mean 2, std 1 → (2-2)/1 = 0, (5-2)/1 = 3 ; b: imputed train [4, 4] → std 0 → divide by 1
    np.testing.assert_allclose(out, [[0, 0], [3, 1]], atol=1e-6)


def test_median_zero_and_missing_indicator_widen_the_spec():
    train = _data([[1, np.nan], [2, 4], [10, 6]], [True, True, True])
    pre = Preprocessor("median", scale=False, missing_indicator=True).fit(train)
    np.testing.assert_allclose(pre.fitted["x"].fill, [2, 5])
    out = pre.transform(train)
    assert out.specs["x"].shape == (3,)
    assert out.specs["x"].feature_names == ("a", "b", "b_missing")
    np.testing.assert_allclose(out.sources["x"].values[:, 2], [1, 0, 0])
    np.testing.assert_allclose(out.sources["x"].values[0, 1], 5)
    zero = Preprocessor("zero", scale=False).fit(train).transform(train)
    assert zero.sources["x"].values[0, 1] == 0


def test_state_dict_round_trip_gives_identical_transform():
    train = _data([[1, np.nan], [3, 4], [7, 2]], [True, True, True])
    pre = Preprocessor("mean", missing_indicator=True).fit(train)
    again = Preprocessor.from_state_dict(pre.state_dict())
    np.testing.assert_array_equal(
        pre.transform(train).sources["x"].values, again.transform(train).sources["x"].values
    )


def test_width_mismatch_is_a_clear_error():
    pre = Preprocessor().fit(_data([[1, 2]], [True]))
    other = MultimodalDataset(
        ["0"],
        {"x": ModalitySpec("x", "tabular", (3,))},
        {"x": ArraySource(np.zeros((1, 3)), np.ones(1, bool))},
        {},
        {},
    )
    with pytest.raises(Exception, match="'x' has 3 features"):
        pre.transform(other)


def test_a_feature_without_any_training_value_is_named_in_a_warning():
    """Issue #15, finding 9: numpy's 'Mean of empty slice' never said which column."""
    import warnings

    from polyfuse.errors import DataWarning

    train = _data([[1, np.nan], [3, np.nan]], [True, True])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        pre = Preprocessor("mean").fit(train)
    assert [str(w.message) for w in seen if w.category is RuntimeWarning] == []
    [warning] = [w for w in seen if w.category is DataWarning]
    assert "modality 'x': feature(s) 'b' have no value" in str(warning.message)
    assert pre.fitted["x"].fill.tolist() == [2.0, 0.0]
