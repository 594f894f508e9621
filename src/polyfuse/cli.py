"""The `polyfuse` command: a thin shell over the Python API (no logic of its own).

Any `PolyfuseError` is printed as one short message, without a traceback, and exits with 2.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from polyfuse.errors import ConfigError, PolyfuseError

app = typer.Typer(
    name="polyfuse",
    help="Multimodal fusion learning on heterogeneous medical data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a PolyfuseError into a one-line message on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PolyfuseError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _console():
    """A console; when output is not a terminal (a log, CI), wide enough for whole tables."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def _table(title: str, frame) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for col in [frame.index.name or "", *frame.columns]:
        table.add_column(str(col))
    for idx, row in frame.iterrows():
        label = " / ".join(map(str, idx)) if isinstance(idx, tuple) else str(idx)
        table.add_row(escape(label), *[escape(_cell(v)) for v in row])
    return table


def _cell(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


TERMINAL_HIDDEN = ("family", "latency b1 ms", "latency b256 ms", "peak MB")
ConfigArg = Annotated[Path, typer.Argument(help="experiment YAML file")]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="replace the results of an existing run directory")
]


HW = "hardware (overrides the config's training section)"
Accelerator = Annotated[str | None, typer.Option(help="cpu, gpu, mps or auto", rich_help_panel=HW)]
Devices = Annotated[
    str | None, typer.Option(help="devices (processes) per node, or auto", rich_help_panel=HW)
]
Nodes = Annotated[int | None, typer.Option(min=1, help="machines (multi-node)", rich_help_panel=HW)]
Strategy = Annotated[str | None, typer.Option(help="auto, ddp or ddp_spawn", rich_help_panel=HW)]
Precision = Annotated[
    str | None, typer.Option(help="32-true, bf16-mixed or 16-mixed (GPU)", rich_help_panel=HW)
]
Workers = Annotated[
    int | None, typer.Option(min=0, help="data-loader processes per device", rich_help_panel=HW)
]


HARDWARE = ("accelerator", "devices", "nodes", "strategy", "precision", "workers")


def _load_with_hardware(config: Path, options: dict[str, Any]) -> Any:
    """The experiment of `config` (validated before torch is imported) with the hardware
    options given on the command line; `options` is the command's arguments, of which the
    `HARDWARE` ones that were set count."""
    from polyfuse.config import TrainingConfig, load_config

    experiment = load_config(config)
    given = {k: options[k] for k in HARDWARE if options.get(k) is not None}
    if "devices" in given and str(given["devices"]).isdigit():
        given["devices"] = int(given["devices"])
    if not given:
        return experiment
    fields = experiment.training.model_dump(exclude_unset=True) | given
    try:
        training = TrainingConfig(**fields)
    except ValueError as exc:
        raise ConfigError(f"invalid hardware option: {exc}") from None
    return experiment.model_copy(update={"training": training})


@app.command()
@_friendly
def fit(
    config: ConfigArg,
    overwrite: Overwrite = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue an interrupted fit from its checkpoint")
    ] = False,
    accelerator: Accelerator = None,
    devices: Devices = None,
    nodes: Nodes = None,
    strategy: Strategy = None,
    precision: Precision = None,
    workers: Workers = None,
) -> None:
    """Train one model on all samples of CONFIG's data; save it to runs/<name>/."""
    experiment = _load_with_hardware(config, locals())
    from polyfuse.training.experiment import run_fit

    run, fitted = run_fit(experiment, overwrite=overwrite, resume=resume)
    _console().print(f"fitted [bold]{fitted.model_name}[/] → {run}")


@app.command()
@_friendly
def cv(
    config: ConfigArg,
    overwrite: Overwrite = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="skip the folds an interrupted run already finished")
    ] = False,
    accelerator: Accelerator = None,
    devices: Devices = None,
    nodes: Nodes = None,
    strategy: Strategy = None,
    precision: Precision = None,
    workers: Workers = None,
) -> None:
    """Repeated k-fold cross-validation; prints mean ± sd per metric, saves folds to the run dir."""
    experiment = _load_with_hardware(config, locals())
    from polyfuse.training.experiment import run_cv

    run, result = run_cv(experiment, overwrite=overwrite, resume=resume)
    summary = result.summary()[["text", "n"]].rename(columns={"text": "mean ± sd"})
    console = _console()
    console.print(_table(f"{result.model}: cross-validation", summary))
    console.print(f"{result.seconds:.1f} s; per-fold metrics in {run}")


@app.command()
@_friendly
def tune(
    config: ConfigArg,
    trials: Annotated[
        int | None,
        typer.Option(
            min=1, help="trials per search, one search per outer fold (default: tune.trials)"
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0.001, help="seconds for the whole run (default: none)")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="tune this registered model instead of the config's")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue an interrupted search in its run directory")
    ] = False,
    overwrite: Overwrite = False,
) -> None:
    """Hyper-parameter search (optuna) in nested CV; reports outer-fold scores, writes best.yaml."""
    from polyfuse.config import load_config

    experiment = load_config(config)  # config errors first, before torch is imported
    from polyfuse.tuning.run import run_tune

    run, result = run_tune(
        experiment, trials=trials, timeout=timeout, model=model, resume=resume, overwrite=overwrite
    )
    target = result.target
    summary = result.summary().xs(target.task, level="task")
    summary = summary[["text", "n"]].rename(columns={"text": "mean ± sd"})
    console = _console()
    console.print(_table(f"{result.model}: outer-fold scores, nested CV ({target.task})", summary))
    searches = len(result.chosen)
    trials_run = int(result.chosen["trials"].sum()) if searches else 0
    best = run / "best.yaml"
    where = f"best configuration: {best}" if best.is_file() else f"each fold's choice: {run}"
    console.print(
        f"{trials_run} trials in {searches} searches, {result.seconds:.0f} s; the reported scores "
        f"are outer folds only; {where}",
        markup=False,
    )


@app.command()
@_friendly
def predict(
    run_dir: Annotated[Path, typer.Argument(help="a run directory written by `polyfuse fit`")],
    data: Annotated[str, typer.Argument(help="a manifest table (CSV/Parquet) or a dataset name")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="CSV to write (default: in RUN_DIR)")
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Predict risk / probabilities for new samples with a fitted run."""
    from polyfuse.training.predict import predict_run

    out = predict_run(run_dir, data, output=output, overwrite=overwrite)
    _console().print(f"predictions → {out}")


@app.command()
@_friendly
def benchmark(
    models: Annotated[
        list[str] | None, typer.Option("--models", "-m", help="models to run (default: all)")
    ] = None,
    datasets: Annotated[
        list[str] | None, typer.Option("--datasets", "-d", help="bundled cohorts")
    ] = None,
    suite: Annotated[
        str,
        typer.Option(
            help="default: TCGA-ACC with the baselines and core methods; "
            "full: every registered model on every available cohort"
        ),
    ] = "default",
    config: Annotated[
        Path | None, typer.Option(help="experiment YAML: benchmark on its data and training")
    ] = None,
    folds: int = 5,
    repeats: int = 3,
    seed: int = 0,
    out: Annotated[Path, typer.Option(help="output directory")] = Path("runs/benchmark"),
    resume: Annotated[bool, typer.Option(help="skip the folds already done in OUT")] = False,
    overwrite: Overwrite = False,
    classical: Annotated[bool, typer.Option(help="run the classical floors")] = True,
    workers: Annotated[
        int | None, typer.Option(help="folds trained at once (default: one per CPU core)")
    ] = None,
    tune_trials: Annotated[
        int,
        typer.Option(
            min=0,
            help="tune every model with this many optuna trials inside each outer fold "
            "(inner CV on the training part) before scoring it; 0: no tuning",
        ),
    ] = 0,
) -> None:
    """The main job: every model and the classical floors on identical folds, with a report."""
    from polyfuse.evaluation.benchmark import benchmark as run_benchmark
    from polyfuse.evaluation.report import leaderboard_blocks
    from polyfuse.evaluation.suites import suite_datasets, suite_models

    tuning = None
    if tune_trials:
        from polyfuse.config import TuneConfig, load_config

        base = load_config(config).tune if config is not None else TuneConfig()
        tuning = base.model_copy(update={"trials": tune_trials})
    chosen, training, preprocess = suite_datasets(suite, datasets, config)
    result = run_benchmark(
        chosen,
        models=suite_models(suite, models),
        folds=folds,
        repeats=repeats,
        seed=seed,
        out=out,
        training=training,
        preprocess=preprocess,
        classical=classical,
        resume=resume,
        overwrite=overwrite,
        workers=workers or os.cpu_count() or 1,
        tune=tuning,
    )
    console = _console()
    for heading, table in leaderboard_blocks(result.leaderboard()):
        shown = [c for c in table.columns if c not in TERMINAL_HIDDEN]
        console.print(_table(heading, table[shown].set_index("rank")))
    if tuning is not None:
        console.print(
            f"every model tuned with {tuning.trials} trials ({tuning.inner_folds}-fold inner CV) "
            "inside each outer fold; chosen configurations in tuning.csv",
            markup=False,
        )
    console.print(f"{result.seconds:.0f} s; report: {result.out / 'report.html'}", markup=False)


@app.command()
@_friendly
def profile(
    config: Annotated[
        Path | None, typer.Argument(help="experiment YAML (default: the bundled TCGA-ACC)")
    ] = None,
    models: Annotated[list[str] | None, typer.Option("--models", "-m")] = None,
) -> None:
    """Parameters, FLOPs, latency and peak memory per model, without training."""
    from polyfuse.evaluation.profile import profile_models
    from polyfuse.evaluation.suites import suite_datasets
    from polyfuse.models.registry import list_models

    chosen, _, _ = suite_datasets("default", None, config)
    data = chosen[0]
    hparams = {}
    if config is not None:
        from polyfuse.config import load_config

        cfg = load_config(config)
        hparams = {cfg.model.name: cfg.model.params}
    table = profile_models(models or list_models(), data, hparams=hparams)
    _console().print(_table(f"profile on {data.name}", table))


@app.command()
@_friendly
def explain(
    run_dir: Annotated[Path, typer.Argument(help="a run directory written by `polyfuse fit`")],
    data: Annotated[
        str | None, typer.Option(help="explain on this table or dataset instead of the run's")
    ] = None,
) -> None:
    """Per-modality contributions and attention maps of a fitted run (PNG + CSV files)."""
    from polyfuse.explain.report import explain_run

    files = explain_run(run_dir, data)
    console = _console()
    for f in files:
        console.print(f"  {f}")


@app.command()
@_friendly
def models(
    space: Annotated[
        str | None,
        typer.Option(help="show the search space `polyfuse tune` uses for this model"),
    ] = None,
) -> None:
    """List the registered models and their hyper-parameters (or one model's search space)."""
    import pandas as pd

    from polyfuse.models.registry import list_models, model_hparams

    if space is not None:
        from polyfuse.tuning.space import describe, model_space

        dims = describe(model_space(space))
        frame = pd.DataFrame({"searched over": list(dims.values())}, index=pd.Index(dims))
        frame.index.name = "parameter"
        _console().print(_table(f"{space}: search space (narrow it with tune.space)", frame))
        return

    frame = pd.DataFrame(
        {"hyper-parameters (defaults)": [_hparams(model_hparams(m)) for m in list_models()]},
        index=pd.Index(list_models(), name="model"),
    )
    _console().print(_table("models", frame))


def _hparams(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


@app.command()
@_friendly
def datasets() -> None:
    """List the bundled cohorts: size, modalities and missingness per modality."""
    import pandas as pd

    from polyfuse.datasets import DATASETS
    from polyfuse.errors import MissingDependencyError

    rows = []
    for name, info in DATASETS.items():
        try:
            data = info.load()
        except MissingDependencyError:
            rows.append(dict(dataset=name, samples="-", modalities=f"needs [{info.extra}]"))
            continue
        desc = data.describe()
        mods = "\n".join(
            f"{m}: {r['kind']} {r['shape']}, {r['missing']:.0%} missing" for m, r in desc.iterrows()
        )
        tasks = ", ".join(f"{t}:{s.type}" for t, s in data.tasks.items())
        rows.append(dict(dataset=name, samples=str(len(data)), modalities=mods, tasks=tasks))
    frame = pd.DataFrame(rows).set_index("dataset").fillna("")
    _console().print(_table("datasets", frame))


def main() -> None:
    """Entry point; also makes `python -m polyfuse` work."""
    try:
        app()
    except ConfigError as exc:  # raised while typer parses, outside a command
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
