import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polyfuse.evaluation.plots import TERTILES, pareto_front, plot_km_tertiles, risk_tertiles
from polyfuse.evaluation.report import leaderboard, leaderboard_markdown, write_report
from polyfuse.tasks.metric_facts import PRIMARY, higher_is_better

PNG = b"\x89PNG\r\n\x1a\n"
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)"')
CHROMIUM = Path("/usr/bin/chromium")

# c_index per fold (repeat 0, folds 0 and 1) with all modalities.
C_INDEX = {"fusion_a": [0.70, 0.74], "fusion_b": [0.60, 0.66], "coxnet": [0.65, 0.67]}
# rmse per fold: lower is better, so fusion_b must rank first.
RMSE = {"fusion_a": [5.0, 6.0], "fusion_b": [3.0, 3.5], "ridge": [4.0, 4.0]}
AUROC = {"fusion_a": [0.80, 0.84], "fusion_b": [0.75, 0.77], "logreg": [0.78, 0.78]}
FAMILY = {"fusion_a": "fusion", "fusion_b": "fusion"}


def _rows(task: str, metric: str, table: dict[str, list[float]]) -> list[dict]:
    rows = []
    for model, values in table.items():
        family = FAMILY.get(model, "classical")
        for fold, v in enumerate(values):
            base = dict(dataset="toy", model=model, family=family, repeat=0, fold=fold, task=task)
            rows.append(dict(base, condition="all", metric=metric, value=v))
            if task == "os":
                rows.append(dict(base, condition="all", metric="ibs", value=np.nan))
            if family == "classical":
                continue
            for k, cond in enumerate(["drop:rna", "drop:clin", "random:0.2", "random:0.4"]):
                rows.append(dict(base, condition=cond, metric=metric, value=v - 0.02 * (k + 1)))
    return rows


def _survival_predictions(model: str, n: int = 90, seed: int = 0) -> pd.DataFrame:
    """Risk tertiles with very different hazards: the log-rank test must see them."""
    rng = np.random.default_rng(seed)
    score = rng.uniform(size=n)
    hazard = np.exp(4.0 * score)
    time = rng.exponential(1.0 / hazard) * 10
    event = rng.uniform(size=n) < 0.8
    return pd.DataFrame(
        dict(
            dataset="toy",
            model=model,
            repeat=0,
            fold=np.arange(n) % 2,
            id=[f"p{i}" for i in range(n)],
            task="os",
            score=score,
            time=time,
            event=event.astype(int),
            label=np.nan,
        )
    )


def _binary_predictions(model: str, n: int = 60, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, size=n)
    score = 1 / (1 + np.exp(-(2 * label - 1 + rng.normal(size=n))))
    return pd.DataFrame(
        dict(
            dataset="toy",
            model=model,
            repeat=0,
            fold=np.arange(n) % 2,
            id=[f"p{i}" for i in range(n)],
            task="grade",
            score=score,
            time=np.nan,
            event=np.nan,
            label=label,
        )
    )


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    results = pd.DataFrame(
        _rows("os", "c_index", C_INDEX)
        + _rows("age", "rmse", RMSE)
        + _rows("grade", "auroc", AUROC)
    )
    efficiency = pd.DataFrame(
        [
            dict(dataset="toy", model="fusion_a", params=1.2e6, flops_per_sample=3e7,
                 train_seconds=12.0, latency_ms_b1=1.5, latency_ms_b256=20.0,
                 peak_memory_mb=300.0),
            dict(dataset="toy", model="fusion_b", params=5e4, flops_per_sample=2e5,
                 train_seconds=3.0, latency_ms_b1=0.4, latency_ms_b256=4.0,
                 peak_memory_mb=120.0),
        ]
    )  # fmt: skip
    comparisons = pd.DataFrame(
        [
            dict(dataset="toy", model="fusion_a", task="os", metric="c_index", baseline="coxnet",
                 mean_diff=0.06, ci_low=0.01, ci_high=0.11, p_value=0.02,
                 verdict="better"),
            dict(dataset="toy", model="fusion_b", task="os", metric="c_index", baseline="coxnet",
                 mean_diff=-0.03, ci_low=-0.08, ci_high=0.02, p_value=0.4,
                 verdict="inconclusive"),
        ]
    )  # fmt: skip
    predictions = pd.concat(
        [
            _survival_predictions("fusion_a"),
            _survival_predictions("fusion_b", seed=3),
            _binary_predictions("fusion_a"),
            _binary_predictions("logreg", seed=2),
        ],
        ignore_index=True,
    )
    contributions = pd.DataFrame(
        [
            dict(dataset="toy", model=m, modality=mod, task=t, value=v)
            for m in ("fusion_a", "fusion_b")
            for t in ("os", "grade", "age")
            for mod, v in (("rna", 0.3), ("clin", 0.1))
        ]
    )
    return dict(
        results=results,
        efficiency=efficiency,
        comparisons=comparisons,
        predictions=predictions,
        contributions=contributions,
    )


@pytest.fixture(scope="module")
def report(tables, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("bench")
    return out, write_report(out, **tables)


def test_primary_metrics_and_direction():
    assert PRIMARY["survival"] == "c_index"
    assert PRIMARY["binary"] == "auroc"
    assert PRIMARY["regression"] == "rmse"
    assert higher_is_better("c_index") and higher_is_better("auroc")
    assert not higher_is_better("rmse") and not higher_is_better("ibs")


def test_leaderboard_order_and_values(tables):
    lb = leaderboard(tables["results"], tables["efficiency"], tables["comparisons"])
    os_ = lb[lb["task"] == "os"].set_index("model")
    assert list(os_.index) == ["fusion_a", "coxnet", "fusion_b"]
    assert list(os_["rank"]) == [1, 2, 3]
    assert (os_["metric"] == "c_index").all()
    # mean and sample sd (ddof=1) of [0.70, 0.74], by hand.
    assert os_.loc["fusion_a", "mean"] == pytest.approx(0.72)
    assert os_.loc["fusion_a", "sd"] == pytest.approx(np.sqrt((0.02**2 + 0.02**2) / 1))
    assert os_.loc["fusion_b", "mean"] == pytest.approx(0.63)
    assert os_.loc["fusion_b", "sd"] == pytest.approx(np.sqrt(2 * 0.03**2))
    assert os_.loc["fusion_a", "n"] == 2
    assert os_.loc["fusion_a", "diff_vs_floor"] == pytest.approx(0.06)
    assert os_.loc["fusion_a", "ci_low"] == pytest.approx(0.01)
    assert os_.loc["fusion_a", "p_value"] == pytest.approx(0.02)
    assert os_.loc["fusion_a", "baseline"] == "coxnet"
    assert os_.loc["fusion_a", "params"] == 1.2e6
    assert os_.loc["fusion_b", "flops_per_sample"] == 2e5
    # Classical floors are ranked but carry no efficiency or comparison.
    assert np.isnan(os_.loc["coxnet", "params"])
    assert np.isnan(os_.loc["coxnet", "diff_vs_floor"])
    # One row per dataset × model × task.
    assert len(lb) == 9
    assert not lb.duplicated(["dataset", "model", "task"]).any()


def test_regression_ranks_lower_first(tables):
    lb = leaderboard(tables["results"], tables["efficiency"], tables["comparisons"])
    age = lb[lb["task"] == "age"]
    assert list(age["model"]) == ["fusion_b", "ridge", "fusion_a"]
    assert list(age["rank"]) == [1, 2, 3]
    assert (age["metric"] == "rmse").all()


def test_leaderboard_without_comparisons_or_efficiency(tables):
    lb = leaderboard(tables["results"], pd.DataFrame(), pd.DataFrame())
    assert lb["diff_vs_floor"].isna().all() and lb["params"].isna().all()
    assert lb.groupby("task")["rank"].min().eq(1).all()


def test_markdown_contains_every_model(tables):
    lb = leaderboard(tables["results"], tables["efficiency"], tables["comparisons"])
    md = leaderboard_markdown(lb)
    for model in ["fusion_a", "fusion_b", "coxnet", "ridge", "logreg"]:
        assert f"| {model} |" in md
    assert "0.720 ± 0.028" in md
    assert "+0.060 [+0.010, +0.110]" in md
    assert "rmse (lower is better)" in md
    assert "1.2 M" in md  # params, SI prefix


def test_report_embeds_every_figure_as_valid_png(report):
    from PIL import Image

    out, written = report
    html = (out / "report.html").read_text()
    figures = sorted(k for k in written if k.startswith("figures/"))
    kinds = {Path(k).name.split("_")[0] for k in figures}
    assert kinds == {
        "km", "roc", "reliability", "decision", "pareto", "robustness", "contributions"
    }  # fmt: skip
    assert html.count('<img src="data:image/png;base64,') == len(figures)
    embedded = IMG.findall(html)
    assert len(embedded) == len(figures)
    for data, alt in embedded:
        raw = base64.b64decode(data, validate=True)
        assert raw.startswith(PNG)
        with Image.open(io.BytesIO(raw)) as im:
            im.load()  # decodes the whole image: a truncated PNG fails here
            assert im.width > 100 and im.height > 100
        assert len(alt) > 20
    # The PNGs are also kept next to the HTML, byte-identical to the embedded ones.
    on_disk = {(out / k).read_bytes() for k in figures}
    assert {base64.b64decode(d) for d, _ in embedded} == on_disk
    assert (out / "leaderboard.md").read_text().startswith("# Leaderboard")


def test_report_has_no_external_resources(report):
    out, _ = report
    html = (out / "report.html").read_text()
    # ':' never occurs in base64, so this cannot match inside an embedded image.
    assert "http:" not in html and "https:" not in html
    assert "<link" not in html and "<script" not in html and "url(" not in html
    sources = re.findall(r'src="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    for section in ["leaderboard", "km", "roc", "pareto", "robustness", "contributions", "how"]:
        assert f'<section id="{section}">' in html


def test_km_logrank_separates_clear_risk_groups(tmp_path):
    pred = _survival_predictions("m", n=120)
    path, p = plot_km_tertiles(pred, tmp_path / "km.png")
    assert path.read_bytes().startswith(PNG)
    assert p < 0.05


def test_km_logrank_without_signal_is_not_significant(tmp_path):
    pred = _survival_predictions("m", n=120)
    pred["score"] = np.random.default_rng(7).permutation(pred["score"].to_numpy())
    _, p = plot_km_tertiles(pred, tmp_path / "km.png")
    assert p > 0.05


def test_km_uses_one_repeat_so_patients_count_once(tmp_path):
    pred = _survival_predictions("m", n=60)
    twice = pd.concat([pred, pred.assign(repeat=1)], ignore_index=True)
    _, p_once = plot_km_tertiles(pred, tmp_path / "a.png")
    _, p_twice = plot_km_tertiles(twice, tmp_path / "b.png")
    assert p_twice == pytest.approx(p_once)


def test_tertiles_are_cut_within_each_fold():
    # Fold 1's scores are all larger than fold 0's; pooled cut points would put fold 0 in
    # the low tertile only. Cut within folds, each fold fills all three tertiles.
    pred = pd.DataFrame(
        dict(repeat=0, fold=[0] * 6 + [1] * 6, score=np.r_[np.arange(6), 100 + np.arange(6)])
    )
    t = risk_tertiles(pred)
    assert list(t[:6]) == [0, 0, 1, 1, 2, 2]
    assert list(t[6:]) == [0, 0, 1, 1, 2, 2]


def test_pareto_front():
    cost = np.array([1.0, 2.0, 3.0, 3.0, 10.0, np.nan])
    score = np.array([0.6, 0.5, 0.7, 0.65, 0.8, 0.99])
    assert pareto_front(cost, score).tolist() == [True, False, True, False, True, False]
    err = np.array([5.0, 4.0, 6.0, 3.0, 3.0, 1.0])
    assert pareto_front(cost, err, higher_better=False).tolist() == [
        True, True, False, True, False, False
    ]  # fmt: skip


def _chromium(tmp_path: Path, *args: str) -> str:
    """Headless Chromium with the flags this machine's closed network needs; its stdout."""
    if not CHROMIUM.exists():
        if os.environ.get("POLYFUSE_BROWSER_TESTS") == "required":  # CI installs it
            pytest.fail(f"{CHROMIUM} is missing, and POLYFUSE_BROWSER_TESTS=required")
        pytest.skip(f"needs {CHROMIUM} (Debian's chromium package; .ci/run installs it)")
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        *args,
    ]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    finally:
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


PROBE = (
    "<script>var probeErrors = 0;"
    "window.addEventListener('error', function () { probeErrors += 1; }, true);"
    "window.addEventListener('load', function () {"
    "var imgs = Array.prototype.slice.call(document.images);"
    "var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; });"
    "var ids = Array.prototype.map.call(document.querySelectorAll('section'),"
    " function (s) { return s.id; }).join(',');"
    "var d = document.createElement('div'); d.id = 'probe';"
    "d.textContent = 'images=' + imgs.length + ' broken=' + broken.length"
    " + ' errors=' + probeErrors + ' sections=' + ids;"
    "document.body.appendChild(d); });</script>"
)
SECTIONS = (
    "leaderboard", "metrics", "km", "roc", "calibration", "uncertainty", "subgroups", "pareto",
    "cost", "robustness",
    "contributions", "features", "stack", "made", "tripod", "how",
)  # fmt: skip
SCREENSHOTS = Path(__file__).parents[2] / "artifacts" / "report"
"""Where the browser test keeps its screenshots (ignored by git): a person can look."""


def test_report_renders_in_headless_chromium(report, tmp_path):
    """In a real browser: every image decodes, no script error, every section is there; and
    screenshots at a laptop's and a wide screen's width are kept for a person to look at."""
    out, written = report
    n_figures = sum(k.startswith("figures/") for k in written)
    page = tmp_path / "report_probe.html"
    html = (out / "report.html").read_text()
    page.write_text(html.replace("<head>", "<head>" + PROBE, 1))
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    found = re.search(
        r'<div id="probe">images=(\d+) broken=(\d+) errors=(\d+) sections=([\w,]+)', dom
    )
    assert found, dom[-2000:]
    assert int(found.group(1)) == n_figures and int(found.group(2)) == 0
    assert int(found.group(3)) == 0
    assert found.group(4).split(",") == [s for s in SECTIONS if f'id="{s}"' in html]
    assert set(SECTIONS) <= set(found.group(4).split(","))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, width in (("laptop", 1366), ("wide", 1920)):
        shot = SCREENSHOTS / f"report_{name}.png"
        shot.unlink(missing_ok=True)
        _chromium(tmp_path, f"--screenshot={shot}", f"--window-size={width},3000", page.as_uri())
        from PIL import Image

        with Image.open(shot) as image:
            assert image.size == (width, 3000)
            assert len(set(image.convert("L").getdata())) > 20  # a page was drawn, not a blank


def test_numbers_at_risk_by_hand():
    from polyfuse.evaluation.plots import numbers_at_risk

    time = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    group = np.array([0, 0, 1, 1, 2, 2])
    table = numbers_at_risk(time, group, [0.0, 2.0, 4.5, 6.0])
    assert list(table.index) == ["low risk", "intermediate risk", "high risk"]
    assert table.to_numpy().tolist() == [[2, 1, 0, 0], [2, 2, 0, 0], [2, 2, 2, 1]]


def test_km_figure_carries_the_time_unit_and_the_numbers_at_risk(tmp_path, monkeypatch):
    """The figure's axes as drawn: the unit on the time axis, the table under the curves, a
    95% band around each curve that contains it."""
    import matplotlib.figure
    from matplotlib.collections import PolyCollection

    drawn = {}
    monkeypatch.setattr(
        "polyfuse.evaluation.plots.save", lambda fig, path: drawn.setdefault("fig", fig) and path
    )
    plot_km_tertiles(_survival_predictions("m", n=120), tmp_path / "km.png", time_unit="days")
    fig = drawn["fig"]
    assert isinstance(fig, matplotlib.figure.Figure)
    curves, table = fig.axes
    assert table.get_xlabel() == "time (days)" and table.get_title(loc="left") == "number at risk"
    numbers = [int(t.get_text()) for t in table.texts]
    assert max(numbers) == 40 and min(numbers) >= 0  # 40 patients a tertile at time 0
    bands = [c for c in curves.collections if isinstance(c, PolyCollection)]
    assert len(bands) == len(TERTILES)  # one confidence band per tertile


def test_calibration_section_states_each_models_calibration(report, tables):
    """The table's Brier, intercept and slope are those of the pooled test-fold probabilities,
    computed independently: scikit-learn's Brier and an unpenalised logistic fit's slope."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss

    out, _ = report
    html = (out / "report.html").read_text()
    section = html[html.index('<section id="calibration">') :]
    section = section[: section.index("</section>")]
    for model in ("fusion_a", "logreg"):
        rows = tables["predictions"].query("task == 'grade' and model == @model")
        p, y = rows["score"].to_numpy(), rows["label"].to_numpy()
        logit = np.log(p / (1 - p))[:, None]
        slope = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(logit, y).coef_[0, 0]
        cells = re.search(
            rf"<td>{model}</td><td class=num>(\d+)</td>" + r"<td class=num>([-\d.]+)</td>" * 3,
            section,
        )
        assert cells is not None, section[:2000]
        assert int(cells[1]) == len(y)
        assert float(cells[2]) == pytest.approx(brier_score_loss(y, p), abs=5e-4)
        assert float(cells[4]) == pytest.approx(slope, abs=5e-4)
    assert section.count("<img") == 2 and "treat all" in section
