import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sksurv")

from polyfuse.data.dataset import ArraySource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.data.splits import Split, kfold
from polyfuse.errors import ConfigError, FallbackWarning, MissingDependencyError
from polyfuse.evaluation.classical import (
    classical_floors,
    default_floors,
    run_classical,
    run_floors,
)
from polyfuse.training import floors
from polyfuse.training.floors import (
    CLASSICAL,
    FloorFailed,
    fit_coxnet,
    late_fusion_risk,
    make_fold,
    resolve_floor,
)

COLUMNS = ["model", "repeat", "fold", "task", "metric", "value", "status"]


@pytest.fixture(scope="module")
def acc() -> MultimodalDataset:
    import polyfuse as pf

    return pf.datasets.load("tcga-acc")


@pytest.fixture(scope="module")
def acc_rows(acc: MultimodalDataset) -> pd.DataFrame:
    return classical_floors(acc, kfold(acc, 3, 1, seed=0), seed=0)


def _toy(n: int = 120, seed: int = 0, task: str = "survival") -> MultimodalDataset:
    """Two tabular modalities, `b` absent for ~30% of samples; the target depends on both."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 4)).astype(np.float32)
    b = rng.normal(size=(n, 3)).astype(np.float32)
    a[rng.uniform(size=(n, 4)) < 0.05] = np.nan
    present_b = rng.uniform(size=n) < 0.7
    score = 1.2 * np.nan_to_num(a[:, 0]) - 1.2 * b[:, 1] * present_b
    if task == "survival":
        t = rng.exponential(np.exp(-score)) * 100 + 1
        c = rng.exponential(150, n) + 1
        target = np.stack([np.minimum(t, c), (t <= c).astype(float)], 1)
        spec = TaskSpec("os", "survival")
    elif task == "binary":
        target = (score + rng.normal(0, 0.5, n) > 0).astype(np.float32)
        spec = TaskSpec("y", "binary")
    elif task == "regression":
        target = (score + rng.normal(0, 0.5, n)).astype(np.float32)
        spec = TaskSpec("y", "regression")
    else:
        target = np.digitize(score + rng.normal(0, 0.3, n), [-0.7, 0.7]).astype(np.float32)
        spec = TaskSpec("y", "multiclass", classes=("lo", "mid", "hi"))
    return MultimodalDataset(
        [f"s{i}" for i in range(n)],
        {"a": ModalitySpec("a", "tabular", (4,)), "b": ModalitySpec("b", "tabular", (3,))},
        {"a": ArraySource(a, np.ones(n, bool)), "b": ArraySource(b, present_b)},
        {spec.name: spec},
        {spec.name: target},
        name="toy",
    )


def _c_index(rows: pd.DataFrame, model: str) -> pd.Series:
    return rows[(rows["model"] == model) & (rows["metric"] == "c_index")]["value"]


def test_default_floors_on_tcga_acc(acc: MultimodalDataset, acc_rows: pd.DataFrame) -> None:
    assert list(acc_rows.columns) == COLUMNS
    expected = [f"coxnet[{m}]" for m in acc.specs] + ["coxnet[all]", "rsf[all]", "late-cox"]
    assert list(acc_rows["model"].unique()) == expected
    assert set(acc_rows["metric"]) == {"c_index", "uno_c_index", "td_auc"}
    assert (acc_rows.groupby(["model", "metric"]).size() == 3).all()
    assert _c_index(acc_rows, "coxnet[clinical]").mean() > 0.6
    for model in ("coxnet[all]", "rsf[all]", "late-cox"):
        assert 0.6 < _c_index(acc_rows, model).mean() <= 1.0


def test_same_splits_same_numbers(acc: MultimodalDataset, acc_rows: pd.DataFrame) -> None:
    splits = kfold(acc, 3, 1, seed=0)
    again = run_floors(["coxnet[clinical]", "rsf[clinical]", "late-cox"], acc, splits, seed=0)
    for model in ("coxnet[clinical]", "late-cox"):
        pd.testing.assert_frame_equal(
            again[again["model"] == model].reset_index(drop=True),
            acc_rows[acc_rows["model"] == model].reset_index(drop=True),
        )
    rsf = run_classical("rsf[clinical]", acc, splits, seed=0)
    pd.testing.assert_frame_equal(
        rsf, again[again["model"] == "rsf[clinical]"].reset_index(drop=True)
    )


def test_late_fusion_is_mean_of_present_z_scored_risks() -> None:
    data = _toy()
    split = kfold(data, 3, 1, seed=1)[0]
    fold = make_fold(data, split, "os", seed=0)
    fused = CLASSICAL["late-cox"](fold, ("a", "b"))

    by_hand = []
    for m in ("a", "b"):
        present = fold.train.sources[m].present
        y = fold.y[present]
        x = fold.train.sources[m].values[present]
        model = fit_coxnet(x, y[:, 0], y[:, 1], fold.seed)
        train = model.predict(x, alpha=model.chosen_alpha_)
        test = model.predict(fold.test.sources[m].values, alpha=model.chosen_alpha_)
        assert train.std() > 0
        by_hand.append((test - train.mean()) / train.std())
    has_b = fold.test.sources["b"].present
    assert has_b.any() and not has_b.all()
    expected = np.where(has_b, (by_hand[0] + by_hand[1]) / 2, by_hand[0])
    np.testing.assert_allclose(fused, expected, rtol=1e-10, atol=1e-12)


def test_late_fusion_rule_skips_absent_and_constant_modalities() -> None:
    train = [np.array([0.0, 2.0]), np.array([1.0, 3.0]), np.array([5.0, 5.0])]
    test = [np.array([2.0, 0.0, 7.0]), np.array([9.0, 1.0, 7.0]), np.array([1.0, 2.0, 3.0])]
    present = np.array([[True, True, True], [True, False, True], [False, False, True]])
    # z-scores: modality 0 (mean 1, sd 1): 1, -1, 6; modality 1 (mean 2, sd 1): 7, -, 5
    # modality 2 is constant in training: never counted
    stats = [(r.mean(), r.std()) for r in train]
    np.testing.assert_allclose(late_fusion_risk(stats, test, present), [4.0, -1.0, 0.0])


def test_single_modality_coxnet_gives_absent_samples_the_training_median() -> None:
    data = _toy()
    fold = make_fold(data, kfold(data, 3, 1, seed=0)[0], "os", seed=0)
    risk = CLASSICAL["coxnet"](fold, ("b",))
    present = fold.train.sources["b"].present
    y = fold.y[present]
    x = fold.train.sources["b"].values[present]
    model = fit_coxnet(x, y[:, 0], y[:, 1], fold.seed)
    median = np.median(model.predict(x, alpha=model.chosen_alpha_))
    absent = ~fold.test.sources["b"].present
    np.testing.assert_allclose(risk[absent], median)


def test_unknown_targets_are_neither_fitted_nor_scored() -> None:
    data = _toy()
    target = data.targets["os"].copy()
    unknown = np.arange(0, len(data), 7)
    target[unknown] = np.nan
    masked = data.replace(targets={"os": target})
    splits = kfold(masked, 3, 1, seed=0)
    fold = make_fold(masked, splits[0], "os")
    assert not np.isnan(fold.y).any()
    # changing the features of unknown-target samples changes nothing
    a = masked.sources["a"].values.copy()
    a[unknown] = 100.0
    noisy = masked.replace(sources={**masked.sources, "a": ArraySource(a, np.ones(len(a), bool))})
    names = ["coxnet[all]", "late-cox"]
    pd.testing.assert_frame_equal(
        run_floors(names, masked, splits), run_floors(names, noisy, splits)
    )


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_classification_floors(task: str) -> None:
    data = _toy(task=task)
    assert default_floors(data) == ["logreg[a]", "logreg[b]", "logreg[all]", "hgb[all]"]
    rows = classical_floors(data, kfold(data, 3, 1, seed=0), seed=0)
    assert list(rows.columns) == COLUMNS
    auroc = rows[rows["metric"] == "auroc"].groupby("model")["value"].mean()
    assert set(auroc.index) == {"logreg[a]", "logreg[b]", "logreg[all]", "hgb[all]"}
    assert (auroc[["logreg[all]", "hgb[all]"]] > 0.7).all()
    assert auroc["logreg[all]"] > max(auroc["logreg[a]"], auroc["logreg[b]"])  # both carry y
    fold = make_fold(data, kfold(data, 3, 1, seed=0)[0], "y")
    p = CLASSICAL["logreg"](fold, ("a", "b"))
    if task == "binary":
        assert p.shape == (len(fold.test),)
    else:
        assert p.shape == (len(fold.test), 3)
        np.testing.assert_allclose(p.sum(1), 1.0)


def _events_only_in(data: MultimodalDataset, first: int) -> MultimodalDataset:
    """`data` with an event for the first `first` samples and every other one censored."""
    target = data.targets["os"].copy()
    target[:, 1] = 0.0
    target[:first, 1] = 1.0
    return data.replace(targets={"os": target})


def test_a_floor_that_cannot_be_fitted_is_marked_failed_not_scored() -> None:
    """Fold 0 trains on censored samples only, fold 1 on two events: no Coxnet can choose its
    penalty by 3-fold inner CV, and the forest has nothing to learn from in fold 0. Each test
    part is all events, so a floor that was scored has a finite c-index."""
    data = _events_only_in(_toy(n=60), 30)
    idx = np.arange(60)
    splits = [Split(0, 0, idx[30:], idx[:30]), Split(0, 1, idx[28:], idx[:28])]
    with pytest.warns(FallbackWarning) as caught:
        rows = run_floors(["coxnet[a]", "rsf[a]", "late-cox"], data, splits)
    assert list(rows.columns) == COLUMNS

    cox = rows[rows["model"] == "coxnet[a]"]
    assert list(cox["metric"]) == ["c_index", "c_index"]  # one row per fold, never 0.5
    assert cox["value"].isna().all()
    assert list(cox["status"]) == [
        "failed: 0 events among 30 training samples, fewer than the 3 events and 6 samples "
        "its inner CV needs",
        "failed: 2 events among 32 training samples, fewer than the 3 events and 6 samples "
        "its inner CV needs",
    ]
    rsf = rows[rows["model"] == "rsf[a]"].set_index(["fold", "metric"])
    assert rsf.loc[(0, "c_index"), "status"] == "failed: every training sample is censored"
    assert np.isnan(rsf.loc[(0, "c_index"), "value"])
    fitted = rsf.loc[1]
    assert set(fitted.index) == {"c_index", "uno_c_index", "td_auc"}
    assert (fitted["status"] == "ok").all() and np.isfinite(fitted.loc["c_index", "value"])
    late = rows[rows["model"] == "late-cox"]
    assert late["value"].isna().all()
    assert late["status"].str.startswith("failed: no modality's Coxnet could be fitted").all()

    messages = [str(w.message) for w in caught if w.category is FallbackWarning]
    assert (
        "classical floor 'coxnet[a]' (modalities a) could not be fitted on repeat 0, fold 1: "
        "2 events among 32 training samples" in " | ".join(messages)
    )
    assert any(m.startswith("classical floor 'late-cox' (modalities a, b)") for m in messages)
    assert any(
        "'rsf[a]'" in m and "fold 0: every training sample is censored" in m for m in messages
    )


def test_late_fusion_leaves_out_a_modality_whose_coxnet_cannot_be_fitted() -> None:
    """`b` is present for two events only: late-cox is `a`'s z-scored risk, with a warning."""
    data = _toy()
    event = data.targets["os"][:, 1] == 1
    present_b = ~event
    present_b[np.flatnonzero(event)[:2]] = True
    b = data.sources["b"]
    data = data.replace(sources={**data.sources, "b": ArraySource(b.values, present_b)})
    fold = make_fold(data, kfold(data, 3, 1, seed=0)[0], "os", seed=0)
    with pytest.warns(FallbackWarning) as caught:
        fused = CLASSICAL["late-cox"](fold, ("a", "b"))
    assert [str(w.message) for w in caught] == [
        "late-cox on repeat 0, fold 0 leaves out modality 'b': 2 events among "
        f"{int(fold.train.sources['b'].present.sum())} training samples, fewer than the 3 "
        "events and 6 samples its inner CV needs"
    ]
    x = fold.train.sources["a"].values  # `a` is present for every sample
    model = fit_coxnet(x, fold.y[:, 0], fold.y[:, 1], fold.seed)
    train = model.predict(x, alpha=model.chosen_alpha_)
    test = model.predict(fold.test.sources["a"].values, alpha=model.chosen_alpha_)
    np.testing.assert_allclose(fused, (test - train.mean()) / train.std(), rtol=1e-10)


def test_a_classifier_floor_on_one_training_class_is_marked_failed() -> None:
    data = _toy(task="binary")
    y = data.targets["y"]
    zeros, ones = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    split = Split(0, 0, zeros[:30], np.concatenate([zeros[30:], ones]))
    with pytest.warns(FallbackWarning, match=r"'logreg\[all\]' .*repeat 0, fold 0: .*single"):
        rows = run_floors(["logreg[all]"], data, [split])
    assert rows[["metric", "status"]].values.tolist() == [
        ["auroc", "failed: task 'y' has a single class among the training samples"]
    ]
    assert rows["value"].isna().all()


def test_a_dropped_inner_fold_warns_and_the_penalty_is_chosen_by_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _toy()
    fold = make_fold(data, kfold(data, 3, 1, seed=0)[0], "os", seed=0)
    x, time, event = fold.matrix(("a",))[0], fold.y[:, 0], fold.y[:, 1]
    real, calls = floors._coxnet, []

    def second_inner_fit_fails(ratio: float):
        calls.append(ratio)
        if len(calls) == 3:  # the outer path, then inner folds 1 and 2
            raise ArithmeticError("simulated numerical failure")
        return real(ratio)

    reference = fit_coxnet(x, time, event, fold.seed)
    monkeypatch.setattr(floors, "_coxnet", second_inner_fit_fails)
    with pytest.warns(FallbackWarning) as caught:
        model = fit_coxnet(x, time, event, fold.seed, what="the Coxnet of 'a' on repeat 0, fold 0")
    assert [str(w.message) for w in caught] == [
        "the Coxnet of 'a' on repeat 0, fold 0: inner fold 2 of 3 is left out of the penalty "
        "choice (ArithmeticError: simulated numerical failure)"
    ]
    assert model.chosen_alpha_ in model.alphas_
    np.testing.assert_array_equal(model.alphas_, reference.alphas_)


def test_a_coxnet_that_cannot_be_fitted_raises_instead_of_predicting_zeros() -> None:
    with pytest.raises(FloorFailed, match="2 events among 40 training samples"):
        fit_coxnet(np.ones((40, 3)), np.arange(40.0), np.r_[1.0, 1.0, np.zeros(38)], seed=0)


def test_floor_names_resolve() -> None:
    data = _toy()
    assert resolve_floor("coxnet", data)[1:] == (("a", "b"), "coxnet[all]")
    assert resolve_floor("coxnet[all]", data)[2] == "coxnet[all]"
    assert resolve_floor("rsf[b, a]", data)[1:] == (("b", "a"), "rsf[b,a]")
    assert resolve_floor("late-cox", data)[2] == "late-cox"
    assert resolve_floor("late-cox[a]", data)[2] == "late-cox[a]"
    with pytest.raises(ConfigError, match="did you mean 'coxnet'"):
        resolve_floor("coxnt[a]", data)
    with pytest.raises(ConfigError, match="not tabular modalities"):
        resolve_floor("coxnet[c]", data)
    with pytest.raises(ConfigError, match="serves"):
        run_classical("logreg", data, kfold(data, 3, 1))


def test_missing_bench_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sksurv.linear_model", None)
    data = _toy()
    with pytest.raises(MissingDependencyError, match=r"polyfuse\[bench\]"):
        run_classical("coxnet[a]", data, kfold(data, 3, 1))


def test_regression_floors_are_ridge_and_boosting_on_the_same_preprocessing() -> None:
    """`ridge[all]` is scikit-learn's RidgeCV on the fold's standardised, imputed matrix; both
    floors explain most of a linear target, the fusion of both modalities more than either."""
    from sklearn.linear_model import RidgeCV

    data = _toy(task="regression")
    assert default_floors(data) == ["ridge[a]", "ridge[b]", "ridge[all]", "hgb[all]"]
    splits = kfold(data, 3, 1, seed=0)
    rows = classical_floors(data, splits, seed=0)
    r2 = rows[rows["metric"] == "r2"].groupby("model")["value"].mean()
    assert r2["ridge[all]"] > 0.6 and r2["hgb[all]"] > 0.4
    assert r2["ridge[all]"] > max(r2["ridge[a]"], r2["ridge[b]"])
    fold = make_fold(data, splits[0], "y")
    x_train, x_test = fold.matrix(("a", "b"))
    ours = CLASSICAL["ridge"](fold, ("a", "b"))
    reference = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x_train, fold.y).predict(x_test)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)
    constant = data.replace(targets={"y": np.ones(len(data), np.float32)})
    with pytest.warns(FallbackWarning, match="all equal"):
        failed = run_floors(["ridge[a]"], constant, splits[:1])
    assert failed["status"].str.startswith("failed").all()


def test_a_floor_that_ranks_nobody_is_marked_a_null_model(monkeypatch) -> None:
    """A Coxnet whose inner CV shrinks every coefficient to 0 gives one risk to all: its 0.500
    is scored, marked, and the leaderboard says so instead of passing it off as a fit."""
    from polyfuse.evaluation.report import leaderboard, leaderboard_markdown

    null = floors.ClassicalFloor(
        "coxnet", floors.SURVIVAL, lambda f, m: {}, lambda s, p, m: np.zeros(len(p.data))
    )
    monkeypatch.setitem(floors.CLASSICAL, "coxnet", null)
    data = _toy()
    rows = run_floors(["coxnet[a]", "rsf[all]"], data, kfold(data, 3, 1, seed=0))
    cox = rows[(rows["model"] == "coxnet[a]") & (rows["metric"] == "c_index")]
    assert (cox["value"] == 0.5).all() and cox["status"].str.startswith("null model").all()
    assert (rows[rows["model"] == "rsf[all]"]["status"] == "ok").all()
    results = rows.assign(dataset="toy", family="classical", condition="all")
    board = leaderboard_markdown(leaderboard(results, pd.DataFrame(), pd.DataFrame()))
    assert "0.500 ± 0.000 (null model)" in board
