"""The benchmark's leaderboard (Markdown) and a self-contained HTML report with its figures.

`write_report` turns the benchmark tables (results, efficiency, comparisons, predictions,
contributions) into `leaderboard.md`, `leaderboard.csv`, `report.html` and `figures/*.png`.
The HTML embeds every figure as a base64 `data:` URI and uses only inline CSS, so it opens
anywhere (offline, attached to an e-mail, in a sandboxed viewer) with nothing missing.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from polyfuse.errors import DataError, MissingDependencyError
from polyfuse.io import atomic_write, write_text
from polyfuse.tasks.metric_facts import higher_is_better, primary_metric
from polyfuse.training.stack import weight_summary

EFFICIENCY = [
    "params",
    "flops_per_sample",
    "train_seconds",
    "latency_ms_b1",
    "latency_ms_b256",
    "peak_memory_mb",
]
PREDICTION_COLUMNS = (
    "dataset",
    "model",
    "task",
    "score",
    "time",
    "event",
    "label",
    "horizon",
    "surv_h",
)
ROC_MODELS = 6  # curves on one ROC chart; more would be unreadable without colour


def leaderboard(
    results: pd.DataFrame, efficiency: pd.DataFrame, comparisons: pd.DataFrame
) -> pd.DataFrame:
    """One row per dataset × model × task on the primary metric, best first.

    Mean and sample sd (ddof=1) over every repeat × fold with all modalities; `rank` 1 is the
    best within a dataset × task (ties share the better rank), floors included. The paired
    difference against the best classical floor comes from `comparisons`; efficiency columns
    are NaN for classical floors, which are not profiled.
    """
    rows = []
    base = results[results["condition"] == "all"]
    for (dataset, task), part in base.groupby(["dataset", "task"], sort=True):
        metric = primary_metric(part["metric"].unique())
        scores = part[part["metric"] == metric]
        status = scores["status"] if "status" in scores else pd.Series("ok", index=scores.index)
        scores = scores.assign(null=status.fillna("ok").str.startswith("null"))
        stats = scores.groupby("model").agg(
            family=("family", "first"),
            mean=("value", "mean"),
            sd=("value", "std"),
            n=("value", "count"),
            null=("null", "sum"),
        )
        stats = stats.reset_index()
        stats.insert(0, "dataset", dataset)
        stats.insert(1, "task", task)
        stats.insert(3, "metric", metric)
        stats["rank"] = stats["mean"].rank(ascending=not higher_is_better(metric), method="min")
        rows.append(stats)
    if not rows:
        raise DataError("no results with condition 'all' to rank")
    lb = pd.concat(rows, ignore_index=True)

    comp_cols = ["diff_vs_floor", "ci_low", "ci_high", "p_value", "verdict", "baseline"]
    comp = comparisons.rename(columns={"mean_diff": "diff_vs_floor"})
    # reindex: a benchmark without floors passes a comparisons table with no columns at all.
    comp = comp.reindex(columns=["dataset", "model", "task", "metric", *comp_cols])
    lb = lb.merge(
        comp,
        on=["dataset", "model", "task", "metric"],
        how="left",
    )
    eff = efficiency.reindex(columns=["dataset", "model", *EFFICIENCY])
    lb = lb.merge(eff.drop_duplicates(["dataset", "model"]), on=["dataset", "model"], how="left")
    lb["rank"] = lb["rank"].astype("Int64")
    lb = lb.sort_values(["dataset", "task", "rank", "model"], na_position="last")
    order = ["dataset", "task", "rank", "model", "family", "metric", "mean", "sd", "n", "null"]
    return lb[order + comp_cols + EFFICIENCY].reset_index(drop=True)


# ---------------------------------------------------------------------------- formatting


def _num(x: float, digits: int = 3) -> str:
    return "—" if x is None or pd.isna(x) else f"{x:.{digits}f}"


def _si(x: float, unit: str = "") -> str:
    """1234567 → '1.23 M' (SI prefixes; readable for params and FLOPs)."""
    if x is None or pd.isna(x):
        return "—"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def _p(p: float) -> str:
    if p is None or pd.isna(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _mean_sd(mean: float, sd: float) -> str:
    """`0.801 ± 0.040`; "failed" for a model no fold could score (a floor that could not be
    fitted: results.csv says why in its `status` column)."""
    if pd.isna(mean):
        return "failed"
    return f"{_num(mean)} ± {_num(sd)}" if not pd.isna(sd) else _num(mean)


def _formatted(part: pd.DataFrame) -> pd.DataFrame:
    """The display strings of one dataset × task block of the leaderboard."""
    metric = part["metric"].iloc[0]

    def diff(r) -> str:
        if pd.isna(r.diff_vs_floor):
            return "—"
        return f"{r.diff_vs_floor:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"

    return pd.DataFrame(
        {
            "rank": [str(r) if not pd.isna(r) else "—" for r in part["rank"]],
            "model": part["model"].astype(str),
            "family": part["family"].astype(str),
            f"{metric} mean ± sd": [
                _mean_sd(r.mean, r.sd) + _null_note(r.null, r.n) for r in part.itertuples()
            ],
            "Δ vs best floor [CI]": [diff(r) for r in part.itertuples()],
            "p": [_p(p) for p in part["p_value"]],
            "vs floor": [v if isinstance(v, str) else "—" for v in part["verdict"]],
            "params": [_si(x) for x in part["params"]],
            "FLOPs/sample": [_si(x) for x in part["flops_per_sample"]],
            "train s": [_num(x, 1) for x in part["train_seconds"]],
            "latency b1 ms": [_num(x, 2) for x in part["latency_ms_b1"]],
            "latency b256 ms": [_num(x, 1) for x in part["latency_ms_b256"]],
            "peak MB": [_num(x, 0) for x in part["peak_memory_mb"]],
        }
    )


def _null_note(null: float, n: float) -> str:
    """ " (null model)" where a floor gave every test patient the same score (its inner CV
    shrank every coefficient to 0): its 0.500 is no ranking at all, not a fitted one."""
    if pd.isna(null) or not null:
        return ""
    return " (null model)" if null == n else f" (null model in {int(null)} of {int(n)} folds)"


def _heading(part: pd.DataFrame) -> str:
    dataset, task, metric = part["dataset"].iloc[0], part["task"].iloc[0], part["metric"].iloc[0]
    direction = "higher" if higher_is_better(metric) else "lower"
    return f"{dataset} · {task} — {metric} ({direction} is better)"


def _floor_note(part: pd.DataFrame) -> str:
    """What Δ, its interval, p and "vs floor" are; a warning when the folds are too few."""
    floors = part["baseline"].dropna().unique()
    if not len(floors):
        return ""
    from polyfuse.evaluation.stats import MIN_PAIRS

    note = (
        f"Δ: paired difference against the best classical floor ({', '.join(map(str, floors))})"
        " on the same folds, with the 95% interval and p of the corrected resampled t-test "
        "(Nadeau–Bengio), which allows for the overlap of training sets; 'vs floor' says what "
        "that test supports."
    )
    if (part["verdict"] == "too few folds").any():
        note += (
            f" With fewer than {MIN_PAIRS} paired folds no difference can be supported: run "
            "more folds or repeats."
        )
    return note


def _blocks(lb: pd.DataFrame):
    yield from (part for _, part in lb.groupby(["dataset", "task"], sort=False))


def leaderboard_blocks(lb: pd.DataFrame):
    """(heading, display table) for each dataset × task: what a terminal shows."""
    for part in _blocks(lb):
        yield _heading(part), _formatted(part)


def leaderboard_markdown(lb: pd.DataFrame) -> str:
    """The leaderboard as Markdown: one table per dataset × task, best model first."""
    lines = ["# Leaderboard", ""]
    for part in _blocks(lb):
        table = _formatted(part)
        lines += [f"## {_heading(part)}", ""]
        if note := _floor_note(part):
            lines += [note, ""]
        lines += [*_markdown_table(table, left=3), ""]
    return "\n".join(lines)


def _markdown_table(table: pd.DataFrame, left: int) -> list[str]:
    """A Markdown table, its first `left` columns left-aligned and the rest right-aligned."""
    cells = [list(table.columns), *table.to_numpy().tolist()]
    cells = [[str(c).replace("|", "\\|") for c in row] for row in cells]
    lines = ["| " + " | ".join(cells[0]) + " |"]
    lines.append("|" + "|".join("---" if j < left else "---:" for j in range(len(cells[0]))) + "|")
    return lines + ["| " + " | ".join(row) + " |" for row in cells[1:]]


def stack_markdown(stack: pd.DataFrame) -> str:
    """The stacked ensembles' member weights as Markdown (mean ± sd over folds)."""
    summary = weight_summary(stack)
    table = pd.DataFrame(
        {
            "dataset": summary["dataset"],
            "task": summary["task"],
            "member": summary["member"],
            "weight": [_mean_sd(m, s) for m, s in zip(summary["mean"], summary["sd"], strict=True)],
            "left out (folds)": summary["left_out"].astype(int),
        }
    )
    title = "## Stacked ensemble: member weights (mean ± sd over folds)"
    return "\n".join([title, "", *_markdown_table(table, left=3), ""])


def _html_table(part: pd.DataFrame) -> str:
    table = _formatted(part)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for row, rank in zip(table.to_numpy().tolist(), part["rank"], strict=True):
        cls = ' class="best"' if not pd.isna(rank) and rank == 1 else ""
        cells = "".join(
            f"<td{' class=num' if j >= 3 else ''}>{html.escape(str(c))}</td>"
            for j, c in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    rows = "".join(body)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


# ---------------------------------------------------------------------------- the report

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#111;line-height:1.45}
h1{border-bottom:2px solid #111}h2{margin-top:2em;border-bottom:1px solid #999}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1.5em;width:100%}
.scroll{overflow-x:auto}
th,td{border:1px solid #bbb;padding:.25em .5em;text-align:left;white-space:nowrap}
th{background:#eee;white-space:normal;vertical-align:bottom}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{font-weight:bold}
figure{margin:1em 0 2em}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.9em;color:#333}.note{color:#444;font-style:italic}
nav ul{columns:2}
"""


def _slug(*parts: object) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", str(p)).strip("-") or "x" for p in parts)


def _img(path: Path, alt: str, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _best_fusion(part: pd.DataFrame) -> str | None:
    fusion = part[(part["family"] != "classical") & part["rank"].notna()]
    return None if fusion.empty else str(fusion.sort_values("rank")["model"].iloc[0])


HOW_TO_READ = """
<ul>
<li><b>Leaderboard.</b> Each row is a model's primary metric over every repeat × fold of the
same cross-validation splits (mean ± sample sd), with all modalities available at test time.
Rank 1 (bold) is best. Δ is the paired difference against the best classical floor on the same
folds, with the 95% interval and p-value of the corrected resampled t-test (Nadeau and Bengio,
2003, in Bouckaert and Frank's form for repeated k-fold CV): folds share training patients, so
their differences are not independent, and the test widens the interval accordingly. "vs floor"
is better or worse only where that test supports it (p &lt; 0.05), inconclusive otherwise, and
"too few folds" below 5 paired folds. Efficiency columns are per fusion model; classical floors
are not profiled.</li>
<li><b>Kaplan–Meier.</b> Patients are split into thirds of the best fusion model's predicted risk
(cut within each test fold, one repeat pooled, so each patient counts once), with 95%
confidence bands (Greenwood, log-log) and the numbers still at risk beneath; times are in the
unit the data name. Well-separated curves and a small log-rank p mean the risk score stratifies
outcome; where few patients remain at risk, the curves say little.</li>
<li><b>ROC.</b> Pooled test-fold probabilities; the AUC of the pooled curve can differ slightly
from the fold mean in the leaderboard. The dotted diagonal is chance.</li>
<li><b>Calibration.</b> The reliability diagram bins patients by predicted probability and
shows the fraction that had the outcome (Wilson 95% intervals); points on the diagonal mean the
probabilities can be taken at face value. The Brier score is the mean squared error of the
probabilities (lower is better); the calibration intercept (ideal 0) says whether risks are too
high or too low overall, the slope (ideal 1) whether they are too extreme (below 1) or too timid.
The decision curve gives the net benefit (true positives minus false positives weighted by the
odds of the threshold, per patient) of acting on the model at each threshold probability, beside
treating everyone and no one (Vickers and Elkin, 2006). For survival tasks both are read at a
horizon, the cohort's median event time: each model's risk score becomes a predicted survival
past it through a Cox model on the score fitted on each training part (slope and Breslow
baseline), compared per risk tertile with Kaplan–Meier; a model that overfits its training part
predicts too extreme survival here. Classical floors and the stack have no such absolute risks
in this report.</li>
<li><b>Uncertainty.</b> Each fitted model gives, beside its prediction, a split-conformal
prediction set (classification), interval (regression) or lower bound on the event time
(survival), calibrated on its validation part to hold the truth for 1 − α of patients. The
table measures how often they did on the test folds; a model whose coverage falls well short
of the aim gives sets that cannot be trusted at that level.</li>
<li><b>Subgroups.</b> The primary metric of the best-ranked models within each level of the
chosen columns (sex, stage, age band...), on the pooled test folds of one repeat, with 95%
bootstrap intervals over the level's patients; the dashed line is the model on all patients.
Levels with fewer than 20 patients or 10 events (or minority-class patients) are marked too
small to judge: their intervals are too wide to show a difference.</li>
<li><b>Metric vs FLOPs.</b> Stars joined by a line are Pareto-optimal: no other model is both
cheaper and better. Horizontal dashed lines are classical floors (no FLOPs counted).</li>
<li><b>Cost against the size of the data.</b> Each network's training-step time and peak
memory (batch 8, synthetic bags of 32 features) as the number of modalities and the tokens per
modality grow, log-log: which model still fits a cohort with more modalities, or longer bags or
sequences, than this one, before anything is trained. Gaps are sizes a model cannot take.</li>
<li><b>Robustness.</b> Left: how the metric degrades as modalities go missing at random at
inference. Right: the metric when one modality is absent for every patient; a large shift means
the model leans on that modality.</li>
<li><b>Contributions.</b> Mean absolute change of the best fusion model's prediction when a
modality is removed: what the model uses, not what is causally important.</li>
<li><b>Stacked ensemble.</b> <code>stack</code> combines its members' scores with
non-negative weights learnt on inner folds of each training part (out-of-fold scores, z-scored),
so a weight is per standard deviation of that member's score; it is scored on the outer test
folds only, like every other model.</li>
</ul>
"""


def write_report(
    out_dir: Path,
    *,
    results: pd.DataFrame,
    efficiency: pd.DataFrame,
    comparisons: pd.DataFrame,
    predictions: pd.DataFrame,
    contributions: pd.DataFrame,
    stack: pd.DataFrame | None = None,
    record: dict[str, Any] | None = None,
    subgroups: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
    cost_curves: pd.DataFrame | None = None,
    title: str = "polyfuse benchmark",
) -> dict[str, Path]:
    """Write `leaderboard.md|csv`, `figures/*.png` and a self-contained `report.html`; with
    `stack` (the stacked ensemble's weights per fold), `stack_weights.csv` and its figure;
    with `record` (`record.run_record`), how the benchmark was made and the TRIPOD+AI items;
    with `subgroups` (dataset, id, subgroup, level), performance per subgroup level; with
    `features` (per fold: dataset, model, task, modality, feature, mean_abs, mean), the best
    fusion model's feature attributions on the test folds of the first repeat; with `cost_curves`
    (`cost_curves.cost_curve` rows), each network's step time and memory against modalities
    and tokens.

    Returns `{relative name: path}` of everything written (e.g. `"figures/km_acc_os.png"`).
    """
    out_dir = Path(out_dir)
    predictions = predictions.reindex(
        columns=sorted({*predictions.columns, *PREDICTION_COLUMNS}, key=str)
    )
    contributions = contributions.reindex(columns=["dataset", "model", "modality", "task", "value"])
    lb = leaderboard(results, efficiency, comparisons)
    markdown = leaderboard_markdown(lb)
    if stack is not None and not stack.empty:
        markdown += "\n" + stack_markdown(stack)
    write_text(out_dir / "leaderboard.md", markdown)
    atomic_write(out_dir / "leaderboard.csv", lambda p: lb.to_csv(p, index=False))
    figures = _Figures(out_dir / "figures")
    figures.written["leaderboard.md"] = out_dir / "leaderboard.md"
    figures.written["leaderboard.csv"] = out_dir / "leaderboard.csv"
    units = _time_units(record)
    for part in _blocks(lb):
        block = _Block.of(part, results, predictions, contributions)
        figures.sections["metrics"].append(_metrics_table(block))
        figures.sections["uncertainty"].append(_uncertainty_table(block, _nominal(record)))
        _km_figure(figures, block, units.get((block.dataset, block.task)))
        _roc_figure(figures, block)
        _calibration_figures(figures, block)
        _survival_calibration_figures(figures, block, units.get((block.dataset, block.task)))
        if subgroups is not None:
            _subgroup_figure(figures, block, subgroups)
        _pareto_figure(figures, block)
        _robustness_figure(figures, block)
        _contributions_figure(figures, block)
        if features is not None and not features.empty:
            _features_figure(figures, block, features)
    if stack is not None and not stack.empty:
        _stack_weights(figures, stack, out_dir)
    if cost_curves is not None and not cost_curves.empty:
        _cost_curve_figures(figures, cost_curves)
    figures.sections["made"] = _record_html(record) if record is not None else []
    figures.sections["tripod"] = [_tripod_html()]
    write_text(out_dir / "report.html", _html(title, lb, figures.sections, results))
    figures.written["report.html"] = out_dir / "report.html"
    return figures.written


class _Figures:
    """The report's figures as they are drawn: files written, and HTML per section."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.written: dict[str, Path] = {}
        self.sections: dict[str, list[str]] = {
            k: []
            for k in (
                "metrics",
                "km",
                "roc",
                "calibration",
                "uncertainty",
                "subgroups",
                "pareto",
                "cost",
                "robustness",
                "contributions",
                "features",
                "stack",
            )
        }

    def add(self, kind: str, path: Path, alt: str, caption: str) -> None:
        self.written[f"figures/{path.name}"] = path
        self.sections[kind].append(_img(path, alt, caption))

    def note(self, kind: str, text: str) -> None:
        self.sections[kind].append(f"<p class=note>{html.escape(text)}</p>")


@dataclass(frozen=True)
class _Block:
    """One dataset × task of the leaderboard, with the rows of every table that belong to it."""

    part: pd.DataFrame  # leaderboard rows, best first
    results: pd.DataFrame
    predictions: pd.DataFrame
    contributions: pd.DataFrame
    dataset: str
    task: str
    metric: str
    best: str | None  # the best fusion model

    @classmethod
    def of(
        cls,
        part: pd.DataFrame,
        results: pd.DataFrame,
        predictions: pd.DataFrame,
        contributions: pd.DataFrame,
    ) -> _Block:
        dataset, task, metric = (str(part[c].iloc[0]) for c in ("dataset", "task", "metric"))

        def rows(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[(frame["dataset"] == dataset) & (frame["task"] == task)]

        return cls(
            part=part,
            results=rows(results),
            predictions=rows(predictions),
            contributions=rows(contributions),
            dataset=dataset,
            task=task,
            metric=metric,
            best=_best_fusion(part),
        )

    @property
    def label(self) -> str:
        return f"{self.dataset} · {self.task}"

    def file(self, kind: str) -> str:
        return f"{kind}_{_slug(self.dataset, self.task)}.png"


def _metrics_table(block: _Block) -> str:
    """Every metric of the block's task, mean ± sd over folds with all modalities, models in
    leaderboard order: Uno's c, time-dependent AUC and the integrated Brier score beside the
    c-index; AUPRC, balanced accuracy and F1 beside the AUROC."""
    rows = block.results[block.results["condition"] == "all"]
    stats = rows.groupby(["model", "metric"], sort=False)["value"].agg(["mean", "std"])
    metrics = list(dict.fromkeys(rows["metric"]))
    head = "<tr><th>model</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in metrics) + "</tr>"
    body = []
    for model in block.part["model"]:
        cells = [
            _mean_sd(*stats.loc[(model, m)])
            if (model, m) in stats.index and not pd.isna(stats.loc[(model, m), "mean"])
            else "—"  # not computed for this model (a floor has no IBS), or undefined
            for m in metrics
        ]
        body.append(
            f"<tr><td>{html.escape(str(model))}</td>"
            + "".join(f"<td class=num>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
        )
    return (
        f"<h3>{html.escape(block.label)}</h3><div class=scroll><table>{head}{''.join(body)}"
        "</table></div>"
    )


COVERAGE = ("coverage", "coverage_low", "coverage_high", "set_size", "interval_width")


def _nominal(record: dict[str, Any] | None) -> float | None:
    """The coverage the conformal outputs aim at, 1 − training.conformal (None: unknown)."""
    alpha = (record or {}).get("settings", {}).get("training", {}).get("conformal")
    return None if alpha is None else 1 - alpha


def _uncertainty_table(block: _Block, nominal: float | None) -> str:
    """The measured coverage of each model's conformal sets, intervals or bounds on the test
    folds (mean ± sd, folds), against the coverage they aim at; "" where none has them."""
    rows = block.results[
        (block.results["condition"] == "all") & block.results["metric"].isin(COVERAGE)
    ]
    if rows.empty:
        return ""
    metrics = [m for m in COVERAGE if m in set(rows["metric"])]
    stats = rows.groupby(["model", "metric"])["value"].agg(["mean", "std", "count"])
    head = "<tr><th>model</th>" + "".join(f"<th>{m}</th>" for m in metrics) + "<th>folds</th></tr>"
    body = []
    for model in [m for m in block.part["model"] if m in set(rows["model"])]:
        cells = [
            _mean_sd(*stats.loc[(model, m), ["mean", "std"]]) if (model, m) in stats.index else "—"
            for m in metrics
        ]
        folds = int(stats.loc[model]["count"].max())
        body.append(
            f"<tr><td>{html.escape(str(model))}</td>"
            + "".join(f"<td class=num>{c}</td>" for c in cells)
            + f"<td class=num>{folds}</td></tr>"
        )
    aim = f"{nominal:.0%}" if nominal is not None else "1 − α"
    note = (
        f"{html.escape(block.label)}: the sets, intervals or event-time bounds aim at {aim} "
        "coverage, calibrated on each fit's validation part, and are measured here on the test "
        "folds. For survival, censoring leaves coverage between coverage_low and "
        "coverage_high. A fold whose validation part was too small for a finite set or bound "
        "has none, so 'folds' can be fewer than the folds run."
    )
    return f"<p>{note}</p><div class=scroll><table>{head}{''.join(body)}</table></div>"


def _time_units(record: dict[str, Any] | None) -> dict[tuple[str, str], str]:
    """(dataset, task) → the unit of its survival times, where the data name one."""
    if record is None:
        return {}
    return {
        (d["name"], task): spec["time_unit"]
        for d in record["datasets"]
        for task, spec in d["tasks"].items()
        if spec.get("time_unit")
    }


def _km_figure(figures: _Figures, block: _Block, time_unit: str | None) -> None:
    """Kaplan–Meier curves by tertile of the best fusion model's risk (survival tasks)."""
    if block.metric != "c_index" or block.best is None:
        return
    from polyfuse.evaluation.plots import plot_km_tertiles

    rows = block.predictions[block.predictions["model"] == block.best]
    if rows.dropna(subset=["score", "time", "event"]).empty:
        figures.note("km", f"{block.label}: no predictions.")
        return
    title = f"{block.label}: {block.best}, risk tertiles"
    try:
        path, p = plot_km_tertiles(
            rows, figures.directory / block.file("km"), title=title, time_unit=time_unit
        )
    except MissingDependencyError as exc:
        figures.note("km", str(exc))
        return
    p_text = "n/a" if math.isnan(p) else f"{p:.2g}"
    figures.add(
        "km",
        path,
        f"Kaplan–Meier survival curves for {block.label}, patients split into "
        f"tertiles of risk predicted by {block.best}; log-rank p = {p_text}",
        f"{block.label}: best fusion model {block.best}; log-rank p = {p_text}.",
    )


def _roc_figure(figures: _Figures, block: _Block) -> None:
    """ROC curves of the best-ranked models (binary tasks; a note for other AUROC tasks)."""
    if block.metric != "auroc":
        return
    from polyfuse.evaluation.plots import plot_roc

    pred = block.predictions
    if len(pred["label"].dropna().unique()) != 2:
        figures.note("roc", f"{block.label}: ROC is drawn for binary tasks only.")
        return
    models = [m for m in block.part["model"] if m in set(pred["model"])][:ROC_MODELS]
    path = plot_roc(
        pred, figures.directory / block.file("roc"), models=models, title=f"{block.label}: ROC"
    )
    figures.add(
        "roc",
        path,
        f"ROC curves for {block.label} of the top {len(models)} models: " + ", ".join(models),
        f"{block.label}: the {len(models)} best-ranked models with predictions.",
    )


CALIBRATED_MODELS = 3  # reliability and decision curves: more would be unreadable in grey


def _calibration_figures(figures: _Figures, block: _Block) -> None:
    """Binary tasks: every model's Brier score and calibration intercept and slope, and the
    reliability diagram and decision curve of the best-ranked models."""
    pred = block.predictions
    if block.metric != "auroc" or len(pred["label"].dropna().unique()) != 2:
        return
    from polyfuse.evaluation.calibration_plots import (
        calibration_summary,
        plot_decision_curve,
        plot_reliability,
    )

    models = [m for m in block.part["model"] if m in set(pred["model"])]
    summary = calibration_summary(pred, models)
    shown = models[:CALIBRATED_MODELS]
    path = plot_reliability(
        pred, figures.directory / block.file("reliability"), models=shown, title=block.label
    )
    figures.add(
        "calibration",
        path,
        f"Reliability diagram for {block.label} of {', '.join(shown)}",
        f"{block.label}: observed against predicted probability, quantile bins, Wilson 95% "
        "intervals; on the diagonal, a predicted risk means what it says.",
    )
    path = plot_decision_curve(
        pred, figures.directory / block.file("decision"), models=shown, title=block.label
    )
    figures.add(
        "calibration",
        path,
        f"Decision curve for {block.label} of {', '.join(shown)}, treat all and treat none",
        f"{block.label}: net benefit of acting on each model's risk at each threshold; a model "
        "helps where its curve lies above both treat all and treat none.",
    )
    figures.sections["calibration"].append(_calibration_table(block.label, summary))


def _survival_calibration_figures(figures: _Figures, block: _Block, time_unit: str | None) -> None:
    """Survival tasks: predicted against Kaplan–Meier survival at the horizon by risk tertile,
    and the decision curve there, for the best-ranked models with absolute risks."""
    pred = block.predictions
    if block.metric != "c_index" or pred["surv_h"].isna().all():
        return
    from polyfuse.evaluation.calibration_plots import (
        plot_survival_calibration,
        plot_survival_decision_curve,
        survival_calibration_summary,
    )

    with_risks = set(pred.dropna(subset=["surv_h"])["model"])
    shown = [m for m in block.part["model"] if m in with_risks][:CALIBRATED_MODELS]
    summary = survival_calibration_summary(pred, shown)
    if summary.empty:
        return
    horizon = f"{summary['horizon'].iloc[0]:g} {time_unit or '(time unit not given)'}"
    path = plot_survival_calibration(
        summary, figures.directory / block.file("survcal"), title=f"{block.label} at {horizon}"
    )
    figures.add(
        "calibration",
        path,
        f"Survival calibration for {block.label} at {horizon} of {', '.join(shown)}",
        f"{block.label}: mean predicted survival past {horizon} (the median event time) "
        "against Kaplan–Meier observed survival, per tertile of predicted risk, 95% CIs.",
    )
    path = plot_survival_decision_curve(
        pred,
        figures.directory / block.file("survdecision"),
        models=shown,
        title=f"{block.label}: decision curve at {horizon}",
    )
    figures.add(
        "calibration",
        path,
        f"Decision curve for {block.label} at {horizon} of {', '.join(shown)}",
        f"{block.label}: net benefit of acting on the predicted probability of the event by "
        f"{horizon}, counted with Kaplan–Meier (Vickers et al., 2008).",
    )


SUBGROUP_KIND = {"c_index": "survival", "auroc": "binary", "rmse": "regression"}


def _subgroup_figure(figures: _Figures, block: _Block, subgroups: pd.DataFrame) -> None:
    """The primary metric per subgroup level of the best-ranked models, with bootstrap CIs: a
    forest plot and a table, levels too small to judge flagged."""
    from polyfuse.evaluation.plots import one_repeat
    from polyfuse.evaluation.subgroups import METRICS, plot_subgroups, subgroup_metrics

    groups = subgroups[subgroups["dataset"] == block.dataset]
    kind = SUBGROUP_KIND.get(block.metric)
    if kind is None or groups.empty:
        return
    outcome = ["time", "event"] if kind == "survival" else ["label"]
    pred = block.predictions.dropna(subset=["score", *outcome])  # known outcomes only
    if kind == "binary" and pred["label"].nunique() != 2:
        return
    models = [m for m in block.part["model"] if m in set(pred["model"])][:CALIBRATED_MODELS]
    pooled = pd.concat([one_repeat(pred[pred["model"] == m], None) for m in models])
    table = subgroup_metrics(pooled, groups, kind)
    overall = {
        m: METRICS[kind][1](
            {c: part[c].to_numpy(float) for c in ("score", "time", "event", "label")}
        )
        for m, part in pooled.groupby("model")
    }
    path = plot_subgroups(
        table, figures.directory / block.file("subgroups"), title=block.label, overall=overall
    )
    figures.add(
        "subgroups",
        path,
        f"Forest plot of {block.metric} per subgroup level for {block.label}: {', '.join(models)}",
        f"{block.label}: {block.metric} per level on the pooled test folds (one repeat), 95% "
        "bootstrap intervals; hollow markers, '(small)': too few patients or events to judge.",
    )
    head = "<tr><th>subgroup</th><th>level</th><th>model</th><th>n</th><th>events</th>"
    head += f"<th>{html.escape(block.metric)} [95% CI]</th><th></th></tr>"
    rows = "".join(
        f"<tr><td>{html.escape(r.subgroup)}</td><td>{html.escape(str(r.level))}</td>"
        f"<td>{html.escape(r.model)}</td><td class=num>{r.n}</td><td class=num>{r.events}</td>"
        f"<td class=num>{_num(r.value)} [{_num(r.ci_low)}, {_num(r.ci_high)}]</td>"
        f"<td>{'too small to judge' if r.small else ''}</td></tr>"
        for r in table.itertuples()
    )
    figures.sections["subgroups"].append(f"<div class=scroll><table>{head}{rows}</table></div>")


def _calibration_table(label: str, summary: pd.DataFrame) -> str:
    head = "<tr><th>model</th><th>n</th><th>Brier</th><th>intercept</th><th>slope</th></tr>"
    rows = "".join(
        f"<tr><td>{html.escape(str(r.model))}</td><td class=num>{r.n}</td>"
        + "".join(f"<td class=num>{_num(v)}</td>" for v in (r.brier, r.intercept, r.slope))
        + "</tr>"
        for r in summary.itertuples()
    )
    return (
        f"<p>{html.escape(label)}: calibration of the pooled test-fold probabilities (one "
        "repeat). Intercept 0 and slope 1 are perfect; a slope below 1 means predictions too "
        f"extreme, above 1 too timid.</p><div class=scroll><table>{head}{rows}</table></div>"
    )


def _pareto_figure(figures: _Figures, block: _Block) -> None:
    """The primary metric against FLOPs per sample, Pareto front marked."""
    from polyfuse.evaluation.plots import plot_pareto

    metric = block.metric
    path = plot_pareto(
        block.part,
        figures.directory / block.file("pareto"),
        title=f"{block.label}: {metric} versus FLOPs",
    )
    fusion = block.part[block.part["family"] != "classical"]["model"].tolist()
    figures.add(
        "pareto",
        path,
        f"{metric} versus FLOPs per sample (log scale) for {block.label}, fusion models "
        f"{', '.join(fusion)}; Pareto front marked; classical floors as lines",
        f"{block.label}: mean {metric} against FLOPs per sample.",
    )


def _cost_curve_figures(figures: _Figures, curves: pd.DataFrame) -> None:
    """Step time and peak memory of every network against modalities and tokens."""
    from polyfuse.evaluation.cost_curves import plot_cost_curves

    time_path, memory_path = plot_cost_curves(curves, figures.directory / "cost_curves.png")
    figures.add(
        "cost",
        time_path,
        "Training-step time of each network against modalities and tokens per modality",
        "Training step (forward and backward, batch 8) against the number of modalities and "
        "the tokens per modality, log-log.",
    )
    figures.add(
        "cost",
        memory_path,
        "Peak memory of each network against modalities and tokens per modality",
        "Peak tensor memory of the same step, parameters and inputs included, log-log.",
    )


def _robustness_figure(figures: _Figures, block: _Block) -> None:
    """The metric under missing modalities, when the benchmark ran such conditions."""
    res = block.results
    if not (res[res["family"] != "classical"]["condition"] != "all").any():
        return
    from polyfuse.evaluation.plots import plot_robustness

    metric = block.metric
    path = plot_robustness(
        res,
        figures.directory / block.file("robustness"),
        metric=metric,
        title=f"{block.label}: robustness",
    )
    figures.add(
        "robustness",
        path,
        f"Robustness of fusion models on {block.label}: {metric} versus random modality "
        f"removal rate, and {metric} with each modality dropped",
        f"{block.label}: {metric} under missing modalities at inference.",
    )


def _contributions_figure(figures: _Figures, block: _Block) -> None:
    """The best fusion model's per-modality contribution (mean |change| when one is removed)."""
    contrib = block.contributions[block.contributions["model"] == block.best]
    if block.best is None or contrib.empty:
        return
    from polyfuse.explain.report import plot_contributions

    means = contrib.groupby("modality")["value"].mean().sort_values(ascending=False)
    table = pd.DataFrame({"modality": means.index, "task": block.task, "mean": means.to_numpy()})
    path = plot_contributions(table, figures.directory / block.file("contributions"))
    figures.add(
        "contributions",
        path,
        f"Per-modality contribution of {block.best} on {block.label}: "
        + ", ".join(f"{m} {v:.3g}" for m, v in means.items()),
        f"{block.label}: {block.best}, mean |change of prediction| when each modality is removed.",
    )


def _features_figure(figures: _Figures, block: _Block, features: pd.DataFrame) -> None:
    """The best fusion model's most attributed features on its test folds: mean |attribution|
    over folds with a 95% interval across folds (t), and which way each pushes the score."""
    rows = features[
        (features["dataset"] == block.dataset)
        & (features["task"] == block.task)
        & (features["model"] == block.best)
    ]
    if rows.empty:
        return
    from scipy.stats import t as student

    from polyfuse.explain.report import TOP_FEATURES, plot_features

    g = rows.groupby(["modality", "feature"], sort=False)
    table = g.agg(mean_abs=("mean_abs", "mean"), sd=("mean_abs", "std"), n=("mean_abs", "count"))
    table["mean"] = g["mean"].mean()
    half = student.ppf(0.975, (table["n"] - 1).clip(lower=1)) * table["sd"] / table["n"] ** 0.5
    table["ci_low"], table["ci_high"] = table["mean_abs"] - half, table["mean_abs"] + half
    table = table.sort_values("mean_abs", ascending=False).reset_index()
    path = plot_features(table, block.task, figures.directory / block.file("features"))
    top = table.head(TOP_FEATURES)
    figures.add(
        "features",
        path,
        f"Feature attributions of {block.best} on {block.label}: "
        + ", ".join(f"{f} {v:.3g}" for f, v in zip(top["feature"], top["mean_abs"], strict=True)),
        f"{block.label}: {block.best}, integrated gradients on the test folds of the first "
        "repeat (each patient once) from the training mean; bars: mean |attribution| over "
        f"{int(table['n'].max())} folds with 95% intervals, dots: the mean signed attribution "
        "(which way the feature moves the score).",
    )


def _stack_weights(figures: _Figures, stack: pd.DataFrame, out_dir: Path) -> None:
    """The stack's weights: `stack_weights.csv` (per fold), a bar chart and a table per stack."""
    from polyfuse.figures import figure, save

    atomic_write(out_dir / "stack_weights.csv", lambda p: stack.to_csv(p, index=False))
    figures.written["stack_weights.csv"] = out_dir / "stack_weights.csv"
    summary = weight_summary(stack)
    for (dataset, model, task), part in summary.groupby(["dataset", "model", "task"], sort=False):
        fig, ax = figure(6.0, 0.8 + 0.4 * len(part))
        ax.barh(
            part["member"],
            part["mean"],
            xerr=part["sd"].fillna(0),
            color="0.6",
            edgecolor="black",
            capsize=3,
        )
        ax.invert_yaxis()
        ax.set_xlabel("weight per sd of the member's out-of-fold score (mean ± sd over folds)")
        ax.set_title(f"{model} on {dataset} · {task}")
        path = save(fig, figures.directory / f"stack_{_slug(dataset, model, task)}.png")
        text = ", ".join(f"{m} {w:.3f}" for m, w in zip(part["member"], part["mean"], strict=True))
        figures.add(
            "stack",
            path,
            f"Weights of {model} on {dataset} ({task}): {text}",
            f"{dataset} · {task}: the meta-learner's non-negative weight of each member; a "
            "member at 0 adds nothing the others do not already give.",
        )


def _record_html(record: dict[str, Any]) -> list[str]:
    """The run record as tables: the run, the settings, the data."""
    settings = record["settings"]
    run = {
        "date (UTC)": record["date"],
        "command": record["command"] + (" (resumed)" if record["resumed"] else ""),
        "python, platform": f"{record['python']}, {record['platform']}",
        **{f"{name} version": version for name, version in record["packages"].items()},
        "seed": settings["seed"],
        "folds × repeats": f"{settings['folds']} × {settings['repeats']}",
        "settings SHA-256": record["settings_sha256"],
    }
    rows = [
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in run.items()
    ]
    data = [
        "<tr><th>dataset</th><th>samples</th><th>modalities (samples with each)</th>"
        "<th>tasks</th><th>fingerprint (SHA-256)</th></tr>"
    ]
    for d in record["datasets"]:
        modalities = ", ".join(f"{m} ({n})" for m, n in d["modalities"].items())
        tasks = ", ".join(
            f"{t} ({', '.join(v for v in spec.values() if v)})" for t, spec in d["tasks"].items()
        )
        cells = (d["name"], d["samples"], modalities, tasks, d["fingerprint_sha256"])
        data.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    detail = html.escape(json.dumps(settings, indent=1, sort_keys=True, default=str))
    return [
        f"<div class=scroll><table>{''.join(rows)}</table></div>",
        f"<div class=scroll><table>{''.join(data)}</table></div>",
        f"<details><summary>every setting (run_record.json)</summary><pre>{detail}</pre></details>",
    ]


def _tripod_html() -> str:
    """The TRIPOD+AI items and where this report covers each."""
    from polyfuse.evaluation.record import TRIPOD_AI

    head = "<tr><th>TRIPOD+AI item</th><th>topic</th><th>where</th></tr>"
    rows = "".join(
        f"<tr><td>{html.escape(i)}</td><td>{html.escape(t)}</td><td>{html.escape(w)}</td></tr>"
        for i, t, w in TRIPOD_AI
    )
    return (
        "<p>Items of the TRIPOD+AI checklist (Collins et al., BMJ 2024) that a benchmark can "
        "speak to, and where this report does; the study's design, setting, ethics and "
        f"interpretation are its author's to report.</p><div class=scroll><table>{head}{rows}"
        "</table></div>"
    )


def _html(
    title: str, lb: pd.DataFrame, sections: dict[str, list[str]], results: pd.DataFrame
) -> str:
    folds = results[["repeat", "fold"]].drop_duplicates()
    n_models = lb["model"].nunique()
    summary = (
        f"{n_models} models on {lb['dataset'].nunique()} dataset(s), "
        f"{results['repeat'].nunique()} repeat(s) × {results['fold'].nunique()} fold(s) "
        f"({len(folds)} splits), identical splits for every model."
    )
    titles = {
        "leaderboard": "Leaderboard",
        "metrics": "Every metric",
        "km": "Kaplan–Meier curves by predicted-risk tertile",
        "roc": "ROC curves",
        "calibration": "Calibration and decision curves",
        "uncertainty": "Uncertainty: conformal coverage",
        "subgroups": "Performance in subgroups",
        "pareto": "Metric versus FLOPs",
        "cost": "Cost against the size of the data",
        "robustness": "Robustness to missing modalities",
        "contributions": "Modality contributions of the best fusion model",
        "features": "Feature attributions of the best fusion model",
        "stack": "Stacked ensemble: member weights",
        "made": "How this report was made",
        "tripod": "Reporting checklist (TRIPOD+AI)",
        "how": "How to read this report",
    }
    empty = {
        "km": "No survival task in this benchmark.",
        "roc": "No classification task in this benchmark.",
        "calibration": "No binary or survival task with absolute risks in this benchmark.",
        "subgroups": "No subgroups were asked for (benchmark --subgroup modality:column).",
        "uncertainty": "No model had conformal outputs (training.conformal: null).",
        "pareto": "",
        "cost": "No cost curves were measured.",
        "robustness": "No missing-modality conditions were evaluated.",
        "contributions": "No contributions were computed for the best fusion models.",
        "stack": "No stacked ensemble in this benchmark.",
        "features": "No feature attributions (they need captum, the explain extra, and a "
        "tabular, sequence or image modality).",
        "made": "No record of the run was given to the report.",
    }
    board = []
    for part in _blocks(lb):
        board.append(f"<h3>{html.escape(_heading(part))}</h3>")
        if note := _floor_note(part):
            board.append(f"<p>{html.escape(note)}</p>")
        board.append(_html_table(part))
    body = {"leaderboard": board, **sections, "how": [HOW_TO_READ]}
    nav = "".join(f'<li><a href="#{k}">{html.escape(v)}</a></li>' for k, v in titles.items())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(summary)}</p>",
        f"<nav><ul>{nav}</ul></nav>",
    ]
    for key, heading in titles.items():
        content = body[key] or [f"<p class=note>{html.escape(empty.get(key, ''))}</p>"]
        parts.append(f'<section id="{key}"><h2>{html.escape(heading)}</h2>')
        parts += content
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


__all__ = [
    "leaderboard",
    "leaderboard_markdown",
    "write_report",
]
