import json

import numpy as np
import pandas as pd
import pytest

from polyfuse.config import TrainingConfig
from polyfuse.data.dataset import ArraySource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError, FallbackWarning
from polyfuse.evaluation.benchmark import benchmark

pytest.importorskip("sksurv")
FAST = TrainingConfig(epochs=4, progress=False)


@pytest.fixture(scope="module")
def cohort() -> MultimodalDataset:
    rng = np.random.default_rng(1)
    n = 60
    a, b = rng.normal(size=(n, 4)), rng.normal(size=(n, 3))
    present_b = rng.uniform(size=n) < 0.7
    risk = a[:, 0] + b[:, 0] * present_b
    time = rng.exponential(np.exp(-risk)) * 50 + 1
    event = (rng.uniform(size=n) < 0.7).astype(float)
    return MultimodalDataset(
        [f"p{i}" for i in range(n)],
        {"a": ModalitySpec("a", "tabular", (4,)), "b": ModalitySpec("b", "tabular", (3,))},
        {"a": ArraySource(a, np.ones(n, bool)), "b": ArraySource(b, present_b)},
        {"os": TaskSpec("os", "survival")},
        {"os": np.stack([time, event], 1)},
        name="toy",
    )


def test_benchmark_tables_report_and_resume(cohort, tmp_path):
    out = tmp_path / "bench"
    kw = dict(models=["early", "unimodal"], folds=2, repeats=1, training=FAST, progress=False)
    first = benchmark([cohort], out=out, subgroups=["a:0@0"], **kw)
    res = first.results
    fusion = res[res["family"] == "fusion"]
    assert set(fusion["model"]) == {"early", "unimodal[a]", "unimodal[b]"}
    conds = set(fusion["condition"])
    assert {"all", "drop:a", "drop:b", "random:0.2", "random:0.8"} <= conds
    assert len(fusion.query("condition == 'all' and metric == 'c_index'")) == 3 * 2
    assert (res[res["family"] == "classical"]["condition"] == "all").all()
    # each fusion model is compared with the same (best) floor, paired over the 2 folds
    comp = first.comparisons
    assert set(comp["model"]) == {"early", "unimodal[a]", "unimodal[b]"}
    assert comp["baseline"].nunique() == 1 and comp["baseline"].iloc[0] in set(res["model"])
    assert (comp["n"] == 2).all() and (comp["verdict"] == "too few folds").all()
    # unimodal[a] never reads b: dropping b changes nothing
    ua = fusion[(fusion["model"] == "unimodal[a]") & (fusion["metric"] == "c_index")]
    assert np.allclose(
        ua[ua["condition"] == "all"]["value"].to_numpy(),
        ua[ua["condition"] == "drop:b"]["value"].to_numpy(),
    )
    eff = first.efficiency.set_index("model")
    assert eff.loc["early", "params"] > eff.loc["unimodal[a]", "params"] > 0
    assert (eff["train_seconds"] > 0).all()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and "early" in html
    # absolute risks at the cohort's median event time, monotone in each fold's risk score
    pred = first.predictions
    y = cohort.targets["os"]
    assert (pred["horizon"] == np.median(y[y[:, 1] == 1, 0])).all()
    assert pred["surv_h"].between(0, 1).all()
    for _, fold in pred.groupby(["model", "fold"]):
        assert fold["score"].rank().corr(fold["surv_h"].rank()) == pytest.approx(-1.0)
    assert "Survival calibration for toy · os" in html and "Decision curve for toy" in html
    coverage = html[html.index('<section id="uncertainty">') :].split("</section>")[0]
    low = res.query("model == 'early' and condition == 'all' and metric == 'coverage_low'")
    if len(low):  # a fold whose validation part had too few events has no bound
        assert f"{low['value'].mean():.3f}" in coverage and "aim at 90% coverage" in coverage
    feats = first.features.query("model == 'early'")
    assert set(feats["fold"]) == {0, 1} and set(feats["modality"]) == {"a", "b"}
    unread = first.features.query("model == 'unimodal[a]' and modality == 'b'")
    assert len(unread) and (unread["mean_abs"] == 0).all()  # b is never read: no attribution
    assert (
        "Feature attributions of" in html
        and "integrated gradients on the test folds of the first repeat" in html
    )
    every = html[html.index('<section id="metrics">') :].split("</section>")[0]
    uno = res.query("model == 'early' and condition == 'all' and metric == 'uno_c_index'")
    assert "uno_c_index" in every and "td_auc" in every
    assert f"{uno['value'].mean():.3f} ± {uno['value'].std():.3f}" in every
    levels = pd.read_csv(out / "subgroups.csv")
    assert set(levels["level"]) == {"< 0", "≥ 0"} and len(levels) == len(cohort)
    assert "Forest plot of c_index per subgroup level for toy · os" in html
    record = json.loads((out / "run_record.json").read_text())
    assert record["datasets"][0]["fingerprint_sha256"] == cohort.fingerprint()
    assert record["settings"]["folds"] == 2 and record["packages"]["torch"]
    assert "How this report was made" in html and cohort.fingerprint() in html
    assert record["settings_sha256"] in html and "TRIPOD+AI" in html
    curves = pd.read_csv(out / "cost_curves.csv")  # per network, not per entry
    assert list(curves["model"].unique()) == ["early", "unimodal"] and len(curves) == 2 * 6
    ok = curves.query("model == 'early' and status == 'ok'").set_index("modalities")
    assert ok.loc[16, "params"] > ok.loc[2, "params"]  # an encoder per modality
    assert "Training-step time of each network against modalities" in html
    board = (out / "leaderboard.md").read_text()
    assert board.count("unimodal[") == 2 and board.count("too few folds") == 3
    assert "With fewer than 5 paired folds no difference can be supported" in board

    # interrupted: one fold's results are lost; resume recomputes only that fold
    lost = out / "parts" / "toy" / "early" / "r0f1.results.csv"
    kept = out / "parts" / "toy" / "early" / "r0f0.results.csv"
    lost.unlink()
    stamp = kept.stat().st_mtime_ns
    with pytest.raises(ConfigError, match="already exists"):
        benchmark([cohort], out=out, **kw)
    curves_stamp = (out / "parts" / "cost_curves.csv").stat().st_mtime_ns
    second = benchmark([cohort], out=out, resume=True, **kw)
    assert kept.stat().st_mtime_ns == stamp and lost.is_file()
    assert (out / "parts" / "cost_curves.csv").stat().st_mtime_ns == curves_stamp
    cols = ["model", "repeat", "fold", "condition", "task", "metric"]
    a = first.results.sort_values(cols).reset_index(drop=True)
    b = second.results.sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[cols], b[cols])
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-6)


def test_floors_that_cannot_be_fitted_are_marked_failed_and_not_ranked(cohort, tmp_path):
    """4 events in 60 samples: each training fold holds 2, too few for a Coxnet to choose its
    penalty by 3-fold inner CV. Scored as zeros they would have entered at c-index 0.5."""
    target = cohort.targets["os"].copy()
    target[:, 1] = 0.0
    target[[0, 15, 30, 45], 1] = 1.0
    rare = cohort.replace(targets={"os": target})
    kw = dict(models=["early"], folds=2, repeats=1, training=FAST, progress=False)
    with pytest.warns(FallbackWarning, match=r"'coxnet\[a\]' \(modalities a\) could not be fitted"):
        result = benchmark([rare], out=tmp_path / "b", **kw)
    res = result.results.query("condition == 'all'")
    coxnet = res[res["model"].isin(["coxnet[a]", "coxnet[b]", "coxnet[all]", "late-cox"])]
    assert len(coxnet) == 4 * 2 and coxnet["value"].isna().all()
    assert coxnet["status"].str.startswith("failed: ").all()
    scored = res[~res.index.isin(coxnet.index)]
    assert (scored["status"] == "ok").all() and scored["value"].notna().any()
    saved = pd.read_csv(tmp_path / "b" / "results.csv")
    assert saved.query("model == 'coxnet[a]'")["status"].str.startswith("failed: 2 events").all()
    board = result.leaderboard().set_index("model")
    assert board.loc["coxnet[a]", "n"] == 0 and np.isnan(board.loc["coxnet[a]", "mean"])
    assert np.isfinite(board.loc["rsf[all]", "mean"])
    # the paired comparison is against the one floor that was fitted
    assert list(result.comparisons["baseline"]) == ["rsf[all]"]
    row = next(
        r for r in (tmp_path / "b" / "leaderboard.md").read_text().splitlines() if "coxnet[a]" in r
    )
    assert "| failed |" in row.replace("  ", " ") and "0.500" not in row


def test_an_unknown_subgroup_fails_before_any_work(cohort, tmp_path):
    with pytest.raises(ConfigError, match="unknown modality 'c'"):
        benchmark([cohort], models=["early"], out=tmp_path / "b", subgroups=["c:0"])
    assert not (tmp_path / "b").exists()


def test_unknown_model_fails_before_any_work(cohort, tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'early'"):
        benchmark([cohort], models=["eraly"], out=tmp_path / "b", progress=False)
    assert not (tmp_path / "b" / "parts").exists()


def test_folds_in_worker_processes_give_the_same_results(cohort, tmp_path):
    kw = dict(models=["early"], folds=2, repeats=1, training=FAST, progress=False, classical=False)
    one = benchmark([cohort], out=tmp_path / "one", **kw)
    two = benchmark([cohort], out=tmp_path / "two", workers=2, **kw)
    cols = ["model", "repeat", "fold", "condition", "task", "metric"]
    a = one.results.sort_values(cols).reset_index(drop=True)
    b = two.results.sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[cols], b[cols])
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-4, atol=1e-4)


def test_features_are_attributed_on_the_first_repeat_only(cohort, tmp_path):
    """Each patient once, by the fit that did not train on it: the second repeat's folds would
    attribute the same patients again."""
    kw = dict(models=["early"], folds=2, repeats=2, training=FAST, progress=False, classical=False)
    result = benchmark([cohort], out=tmp_path / "b", **kw)
    assert set(result.results["repeat"]) == {0, 1}
    attributed = result.features[["repeat", "fold"]].drop_duplicates()
    assert sorted(map(tuple, attributed.to_numpy())) == [(0, 0), (0, 1)]


def test_suites_choose_models():
    from polyfuse.evaluation.suites import DEFAULT_MODELS, suite_models

    assert suite_models("default", None) == list(DEFAULT_MODELS)
    assert suite_models("full", None) is None  # every registered model
    assert suite_models("full", ["early"]) == ["early"]
    with pytest.raises(ConfigError, match="unknown suite"):
        suite_models("fast", None)


def test_every_task_gets_its_floors_and_its_comparison(cohort, tmp_path):
    """A survival, a binary and a regression task: each has its type's floors and each model
    is compared with the best floor of that task (the floors once ran for the first only)."""
    y = cohort.targets["os"]
    a = cohort.sources["a"].values
    data = cohort.replace(
        tasks={
            **cohort.tasks,
            "high": TaskSpec("high", "binary"),
            "level": TaskSpec("level", "regression"),
        },
        targets={"os": y, "high": (a[:, 0] > 0).astype(float), "level": 2 * a[:, 0] + a[:, 1]},
    )
    result = benchmark(
        [data], models=["early"], folds=2, repeats=1, training=FAST, progress=False,
        out=tmp_path / "bench",
    )  # fmt: skip
    floors = result.results.query("family == 'classical'")
    assert set(floors.query("task == 'high'")["model"]) == {
        "logreg[a]", "logreg[b]", "logreg[all]", "hgb[all]"
    }  # fmt: skip
    assert set(floors.query("task == 'level'")["model"]) == {
        "ridge[a]", "ridge[b]", "ridge[all]", "hgb[all]"
    }  # fmt: skip
    level = floors.query("task == 'level' and metric == 'r2' and model == 'ridge[all]'")
    assert level["value"].gt(0.9).all()  # an exactly linear target
    comp = result.comparisons.set_index("task")
    assert set(comp.index) == {"os", "high", "level"}
    assert comp.loc["level", "baseline"] in {"ridge[a]", "ridge[all]", "hgb[all]"}
