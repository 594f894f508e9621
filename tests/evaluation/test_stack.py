"""The stacked ensemble: its meta-learners against scikit-survival and scikit-learn, its
non-negative weights, and its nesting (nothing of an outer test fold is seen before scoring)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import survival_cohort

from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.splits import kfold
from polyfuse.errors import ConfigError
from polyfuse.training.settings import FitSettings
from polyfuse.training.stack import (
    _cox_loss,
    fit_meta,
    fit_meta_on_scores,
    score_stack_fold,
    stack_plan,
    standardise,
)

RNG = np.random.default_rng(7)


def _survival(n: int = 200, m: int = 3) -> tuple[np.ndarray, np.ndarray]:
    z = RNG.normal(size=(n, m))
    eta = 1.0 * z[:, 0] + 0.5 * z[:, 1]
    time = np.round(RNG.exponential(np.exp(-eta)) * 20) + 1  # rounded: ties
    censor = RNG.exponential(30, n) + 1
    y = np.stack([np.minimum(time, censor), (time <= censor).astype(float)], 1)
    return z, y


def test_cox_meta_equals_scikit_survival_where_the_weights_are_positive():
    sksurv = pytest.importorskip("sksurv.linear_model")
    z, y = _survival()
    z = z[:, :2]  # both true effects positive: the bound is not active
    penalty = 0.01
    meta = fit_meta("survival", z, y, penalty)
    events = y[:, 1].sum()
    # sksurv minimises -loglik + alpha/2 · |w|²; ours -loglik/events + penalty · |w|²
    ref = sksurv.CoxPHSurvivalAnalysis(alpha=2 * penalty * events, ties="breslow")
    structured = np.array(
        list(zip(y[:, 1].astype(bool), y[:, 0], strict=True)), dtype=[("e", bool), ("t", float)]
    )
    ref.fit(z, structured)
    assert (meta.weights > 0.3).all()
    np.testing.assert_allclose(meta.weights, ref.coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(meta.combine(z), z @ ref.coef_, rtol=1e-4, atol=1e-5)


def test_logistic_meta_equals_scikit_learn_where_the_weights_are_positive():
    from sklearn.linear_model import LogisticRegression

    z = RNG.normal(size=(300, 2))
    y = (0.3 + 1.2 * z[:, 0] + 0.6 * z[:, 1] + RNG.logistic(size=300) > 0).astype(float)
    penalty = 0.01
    meta = fit_meta("binary", z, y, penalty)
    # scikit-learn minimises |w|²/2 + C · Σ logloss; ours mean logloss + penalty · |w|²
    ref = LogisticRegression(C=0.5 / (penalty * len(y)), tol=1e-10, max_iter=1000).fit(z, y)
    np.testing.assert_allclose(meta.weights, ref.coef_[0], rtol=1e-3, atol=1e-4)
    assert meta.intercept == pytest.approx(ref.intercept_[0], rel=1e-3, abs=1e-4)
    np.testing.assert_allclose(meta.combine(z), ref.predict_proba(z)[:, 1], atol=1e-4)


def test_stratified_cox_meta_ignores_each_stratum_s_own_offset():
    """Risk sets within a stratum (an inner fold, whose members were fitted apart): shifting
    one stratum's scores changes nothing, while a pooled Cox model is misled by it and gives
    the predictive member less weight; and the loss is the per-stratum losses' sum."""
    z, y = _survival(300, 2)
    strata = np.repeat([0, 1, 2], 100)
    shifted = z + np.array([[0.0, 0.0], [3.0, 0.0], [-3.0, 0.0]])[strata]
    stratified = fit_meta("survival", z, y, strata=strata).weights
    np.testing.assert_allclose(
        fit_meta("survival", shifted, y, strata=strata).weights, stratified, rtol=1e-4
    )
    assert stratified[0] > 0.6
    assert fit_meta("survival", shifted, y).weights[0] < 0.5 * stratified[0]
    w = np.array([0.7, 0.2])
    whole = _cox_loss(z, y[:, 0], y[:, 1], 0.0, strata)(w)[0]
    per = [
        _cox_loss(z[strata == k], y[strata == k, 0], y[strata == k, 1], 0.0)(w)[0]
        for k in (0, 1, 2)
    ]
    events = [y[strata == k, 1].sum() for k in (0, 1, 2)]
    assert whole == pytest.approx(np.dot(per, events) / sum(events), rel=1e-10)


@pytest.mark.parametrize("kind", ["survival", "binary", "regression"])
def test_a_harmful_member_gets_weight_zero_and_a_useless_one_almost(kind):
    """Column 0 predicts, column 1 is noise, column 2 predicts backwards: non-negative weights
    keep the first, shrink the noise and never turn the third upside down."""
    n = 400
    signal = RNG.normal(size=n)
    z = np.stack([signal + 0.3 * RNG.normal(size=n), RNG.normal(size=n), -signal], 1)
    if kind == "survival":
        time = RNG.exponential(np.exp(-signal)) + 0.01
        y = np.stack([time, np.ones(n)], 1)
    elif kind == "binary":
        y = (signal + 0.5 * RNG.logistic(size=n) > 0).astype(float)
    else:
        y = signal + 0.1 * RNG.normal(size=n)
    w = fit_meta(kind, z, y).weights
    assert (w >= 0).all()
    assert w[0] > 0.5 and w[2] == 0.0 and w[1] < 0.1 * w[0]


@pytest.mark.parametrize("kind", ["binary", "regression"])
def test_new_scores_are_read_with_the_out_of_fold_centre_and_scale(kind):
    """Members' raw scores far from 0 in centre and scale (a regression member predicting
    around 50, probabilities around 0.7): fitted on one part's scores, the meta-learner gives
    another part's patients predictions on the targets' scale, unbiased."""
    n = 800
    signal = RNG.normal(size=n)
    if kind == "regression":
        y = 50 + 10 * signal + RNG.normal(size=n)
        scores = 50 + 10 * signal[:, None] + 3 * RNG.normal(size=(n, 2))
    else:
        y = (RNG.random(n) < 1 / (1 + np.exp(-(2 * signal + 1)))).astype(float)
        scores = 1 / (1 + np.exp(-(2 * signal[:, None] + 1 + 0.5 * RNG.normal(size=(n, 2)))))
    fit, new = slice(0, 500), slice(500, n)
    meta, centre, scale = fit_meta_on_scores("fit", kind, scores[fit], y[fit], 0.01)
    predicted = meta.combine(standardise(scores[new], kind, centre, scale))
    tolerance = 0.6 if kind == "regression" else 0.04
    assert abs(predicted.mean() - y[new].mean()) < tolerance
    if kind == "regression":  # and the spread: the members' error, not a rescaled one
        assert np.sqrt(np.mean((predicted - y[new]) ** 2)) < 3.0


def test_plan_checks_members_and_task():
    data = survival_cohort()
    assert stack_plan(data).members == ("late", "coxnet[all]", "rsf[all]", "late-cox")
    assert stack_plan(data).inner_folds == 5  # chosen across cohorts (docs/defaults.md)
    with pytest.raises(ConfigError, match="logreg"):
        stack_plan(data, ["late", "logreg[all]"])
    with pytest.raises(ConfigError, match="lat3"):
        stack_plan(data, ["lat3", "coxnet[a]"])
    with pytest.raises(ConfigError, match="at least two"):
        stack_plan(data, ["coxnet[a]"])


def test_the_outer_test_fold_is_never_seen_before_it_is_scored(monkeypatch):
    """Changing the outer test patients' targets changes nothing the stack learns: not the
    weights, not the scores."""
    data = survival_cohort()
    split = kfold(data, 3, 1, seed=0)[0]
    plan = stack_plan(data, ["coxnet[a]", "coxnet[b]", "coxnet[all]"])
    settings = FitSettings.of(seed=0)
    first = score_stack_fold(data, split, plan, settings)
    shuffled = data.targets["os"].copy()
    shuffled[split.test] = shuffled[split.test][::-1]
    changed = MultimodalDataset(
        data.ids, data.specs, data.sources, data.tasks, {"os": shuffled}, name="toy"
    )
    second = score_stack_fold(changed, split, plan, settings)
    assert first.weights == second.weights
    np.testing.assert_array_equal(first.scores["risk"], second.scores["risk"])
    assert all(w >= 0 for w in first.weights.values())
    assert sum(first.weights.values()) > 0.2  # the members carry the signal


def test_stack_fold_with_a_fusion_member_learns():
    from polyfuse.tasks.metrics import harrell_c_index

    data = survival_cohort(120)
    split = kfold(data, 3, 1, seed=1)[0]
    plan = stack_plan(data, ["late", "coxnet[all]"], hparams={"late": {"dim": 8}})
    settings = FitSettings.of(seed=0).replace(
        training=FitSettings().training.model_copy(update={"epochs": 5, "progress": False})
    )
    out = score_stack_fold(data, split, plan, settings)
    y = data.targets["os"][split.test]
    assert harrell_c_index(out.scores["risk"], y[:, 0], y[:, 1]) > 0.7
    assert set(out.weights) == {"late", "coxnet[all]"}


def test_a_cross_fitted_member_is_fitted_once_per_inner_fold_unless_the_user_names_it():
    """`late` cross-fits three members on its own; in a stack the inner folds already do."""
    import polyfuse.training.stack as stack

    data = survival_cohort(60)
    plan = stack.plan_from_options(data, {"members": ["late", "coxnet[all]"], "inner_folds": 2})
    plan = dataclasses.replace(plan, hparams={"late": {"dim": 4}})
    quick = FitSettings().training.model_copy(update={"epochs": 2, "progress": False})
    _, fits = stack.fit_members(data, plan, FitSettings.of(seed=0).replace(training=quick))
    assert [len(f.members) for f in fits["late"]] == [1, 1]
    named = quick.model_copy(update={"ensemble": 2})
    _, fits = stack.fit_members(data, plan, FitSettings.of(seed=0).replace(training=named))
    assert [len(f.members) for f in fits["late"]] == [2, 2]


def test_benchmark_scores_the_stack_and_reports_its_weights(tmp_path):
    """`stack` in a benchmark: scored on the outer folds with the others, compared with the best
    floor, its weights in the tables and the report."""
    pytest.importorskip("sksurv")
    from polyfuse.config import TrainingConfig
    from polyfuse.evaluation.benchmark import benchmark

    data = survival_cohort(80)
    result = benchmark(
        [data],
        models=["late", "stack"],
        folds=2,
        repeats=1,
        out=tmp_path / "bench",
        training=TrainingConfig(epochs=3, progress=False),
        hparams={"late": {"dim": 8}, "stack": {"members": ["late", "coxnet[all]"]}},
        progress=False,
    )
    res = result.results
    stack = res[(res["model"] == "stack") & (res["metric"] == "c_index")]
    assert len(stack) == 2 and (stack["family"] == "stack").all() and stack["value"].gt(0.6).all()
    assert "stack" in set(result.comparisons["model"])
    weights = result.stack
    assert set(weights["member"]) == {"late", "coxnet[all]"} and len(weights) == 4
    assert weights["weight"].ge(0).all() and weights["weight"].gt(0).any()
    cost = result.efficiency.set_index("model")
    assert cost.loc["stack", "train_seconds"] > 0 and np.isnan(cost.loc["stack", "params"])
    out = tmp_path / "bench"
    assert (out / "stack_weights.csv").is_file()
    assert "Stacked ensemble: member weights" in (out / "leaderboard.md").read_text()
    assert "Weights of stack on toy" in (out / "report.html").read_text()


def test_mean_meta_shares_one_weight_and_unknown_options_are_refused():
    from polyfuse.training.stack import plan_from_options

    data = survival_cohort()
    split = kfold(data, 3, 1, seed=0)[0]
    plan = plan_from_options(data, {"members": ["coxnet[a]", "coxnet[b]"], "meta": "mean"})
    weights = score_stack_fold(data, split, plan, FitSettings.of(seed=0)).weights
    assert weights["coxnet[a]"] == weights["coxnet[b]"] > 0
    with pytest.raises(ConfigError, match="did you mean 'inner_folds'"):
        plan_from_options(data, {"inner_fold": 5})
    with pytest.raises(ConfigError, match="'fit' or 'mean'"):
        plan_from_options(data, {"meta": "median"})


def test_the_survival_meta_learner_is_stratified_by_inner_fold_unless_told_not_to(monkeypatch):
    """`fit_stack` hands the Cox meta-learner each sample's inner fold (the fold whose
    members scored it), a partition of the training part; `stratify: false` pools them."""
    import polyfuse.training.stack as stack

    data = survival_cohort()
    split = kfold(data, 3, 1, seed=0)[0]
    seen = []
    original = stack.fit_meta

    def spy(kind, z, y, penalty=0.01, strata=None):
        seen.append(strata)
        return original(kind, z, y, penalty, strata)

    monkeypatch.setattr(stack, "fit_meta", spy)
    members = ["coxnet[a]", "coxnet[b]"]
    for options in ({"members": members}, {"members": members, "stratify": False}):
        plan = stack.plan_from_options(data, options)
        score_stack_fold(data, split, plan, FitSettings.of(seed=0))
    stratified, pooled = seen
    assert pooled is None
    train = data.subset(split.train)
    plan = stack.plan_from_options(train, {"members": members})
    ids = stack.inner_fold_ids(train, plan, seed=0)
    np.testing.assert_array_equal(stratified, ids)
    assert sorted(np.unique(ids)) == list(range(plan.inner_folds))
    for k, inner in enumerate(kfold(train, plan.inner_folds, 1, 0)):
        assert (ids[inner.test] == k).all()


def test_members_score_new_patients_with_the_fits_the_meta_learner_was_fitted_on():
    """By default a member is its inner-fold fits, each of which scored its own inner test
    fold out of fold, and new patients get their mean; `refit: true` keeps one fit on all."""
    import polyfuse.training.stack as stack

    data = survival_cohort()
    members = ["coxnet[a]", "rsf[all]"]
    settings = FitSettings.of(seed=0)
    plan = stack.plan_from_options(data, {"members": members, "inner_folds": 3})
    oof, fits = stack.fit_members(data, plan, settings)
    assert [len(fits[m]) for m in members] == [3, 3]
    for k, inner in enumerate(kfold(data, 3, 1, 0)):
        part = data.subset(inner.test)
        for j, m in enumerate(members):
            np.testing.assert_allclose(
                stack._fit_scores(fits[m][k], part, plan), oof[inner.test, j]
            )
    scores = stack.member_scores(fits["rsf[all]"], data, plan)
    each = [stack._fit_scores(f, data, plan) for f in fits["rsf[all]"]]
    np.testing.assert_allclose(scores, np.mean(each, 0))
    assert np.ptp(each, axis=0).max() > 0  # the fits differ, so the mean is not any one of them
    refit = stack.plan_from_options(data, {"members": members, "inner_folds": 3, "refit": True})
    again, single = stack.fit_members(data, refit, settings)
    np.testing.assert_allclose(again, oof)
    assert [len(single[m]) for m in members] == [1, 1]


def test_a_floor_that_cannot_be_fitted_leaves_the_stack_of_that_fold():
    """Five events in 90 patients: a Coxnet cannot choose its penalty by inner CV on the stack's
    3 inner folds; the fold's stack goes on with the forest, says so, and weighs Coxnet NaN."""
    pytest.importorskip("sksurv")
    from polyfuse.errors import FallbackWarning

    data = survival_cohort()
    y = data.targets["os"].copy()
    y[:, 1] = 0.0
    y[np.argsort(y[:, 0])[:5], 1] = 1.0
    data = data.replace(targets={"os": y})
    split = kfold(data, 3, 1, seed=0)[0]
    plan = stack_plan(data, ["coxnet[a]", "rsf[all]"], inner_folds=3)
    with pytest.warns(FallbackWarning, match=r"stack member 'coxnet\[a\]'"):
        fold = score_stack_fold(data, split, plan, FitSettings.of(seed=0))
    assert np.isnan(fold.weights["coxnet[a]"]) and fold.weights["rsf[all]"] >= 0
    assert np.isfinite(fold.scores["risk"]).all() and len(fold.scores["risk"]) == len(split.test)
