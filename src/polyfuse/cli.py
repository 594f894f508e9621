"""The `polyfuse` command: a thin shell over the Python API (no logic of its own).

Any `PolyfuseError` is printed as one short message, without a traceback, and exits with 2.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator
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


def _print_version(value: bool) -> None:
    if value:
        from polyfuse import __version__

        typer.echo(f"polyfuse {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="log what polyfuse does to stderr: -v milestones, -vv details",
        ),
    ] = 0,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Multimodal fusion learning on heterogeneous medical data."""
    if verbose:
        import logging

        from rich.logging import RichHandler

        handler = RichHandler(show_path=verbose > 1, rich_tracebacks=False)
        logger = logging.getLogger("polyfuse")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)


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


def _rows_table(title: str, header: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> Any:
    """A table of plain rows (no pandas to import)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for col in header:
        table.add_column(col)
    for row in rows:
        table.add_row(*[escape(_cell(v)) for v in row])
    return table


def _cell(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


TERMINAL_HIDDEN = ("family", "latency b1 ms", "latency b256 ms", "peak MB")
ConfigArg = Annotated[Path, typer.Argument(help="experiment YAML file")]
RunDirArg = Annotated[Path, typer.Argument(help="a run directory written by `polyfuse fit`")]
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


@contextlib.contextmanager
def _stoppable(command: str, run: Callable[[], Path]) -> Iterator[None]:
    """SIGINT/SIGTERM end the command with 130/143 and one line saying what was kept in the
    run directory `run()` (finished folds, trials, a checkpoint) and that `--resume` continues
    it. Entered before torch is imported: a signal during the imports is handled too."""
    from polyfuse.interrupt import Interrupted, interruptible, message

    try:
        with interruptible():
            yield
    except Interrupted as exc:
        typer.echo(message(exc, run(), command), err=True)
        raise typer.Exit(exc.exit_code) from None


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
    """Train one model on all samples of CONFIG's data; save it to <output>/<name>/fit/."""
    experiment = _load_with_hardware(config, locals())
    with _stoppable("fit", lambda: experiment.run_dir("fit")):
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
    """Repeated k-fold cross-validation; prints mean ± sd per metric, saves folds to
    <output>/<name>/cv/."""
    experiment = _load_with_hardware(config, locals())
    with _stoppable("cv", lambda: experiment.run_dir("cv")):
        from polyfuse.training.experiment import run_cv

        run, result = run_cv(experiment, overwrite=overwrite, resume=resume)
    summary = result.summary()[["text", "n"]].rename(columns={"text": "mean ± sd"})
    console = _console()
    console.print(_table(f"{result.model}: cross-validation", summary))
    if not result.members.empty:
        from polyfuse.training.stack import weight_summary

        weights = weight_summary(result.members).set_index("member").drop(columns="task")
        weights["left_out"] = weights["left_out"].map(str)  # a count of folds, not a float
        console.print(_table("stack: member weights over folds", weights))
    console.print(f"{result.seconds:.1f} s; per-fold metrics in {run}")


SharedStorage = Annotated[
    str | None,
    typer.Option(
        help="keep the studies in this shared storage (postgresql://… or journal:PATH) and "
        "join them as one of several workers (default: tune.storage)"
    ),
]
SharedStudy = Annotated[
    str | None,
    typer.Option(help="the shared studies' name (default: tune.study, else the config's name)"),
]


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
    storage: SharedStorage = None,
    study: SharedStudy = None,
) -> None:
    """Hyper-parameter search (optuna) in nested CV; reports outer-fold scores, writes best.yaml
    to <output>/<name>/tune/. With --storage, every process started with the same config and
    storage joins the search as a worker (docs/scaling.md)."""
    from polyfuse.config import load_config

    experiment = load_config(config)  # config errors first, before torch is imported

    def where() -> Path:
        from polyfuse.tuning.run import resolve_run

        return resolve_run(experiment, model).run_dir("tune")

    with _stoppable("tune", where):
        from polyfuse.tuning.run import run_tune

        run, result = run_tune(
            experiment,
            trials=trials,
            timeout=timeout,
            model=model,
            resume=resume,
            overwrite=overwrite,
            storage=storage,
            study=study,
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
    run_dir: RunDirArg,
    data: Annotated[
        str, typer.Argument(help="new patients: a manifest table, a .h5mu/.h5ad file or a dataset")
    ],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="CSV to write (default: in RUN_DIR)")
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(help="folder the table's file paths are relative to (default: its folder)"),
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option(help="MODALITY=PATH: the long table of a sequence modality (repeatable)"),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Predict for new patients with a fitted run; labels, where given, are scored too."""
    from polyfuse.inference.predictor import predict_run

    with _warnings_shown():
        out, metrics = predict_run(
            run_dir,
            data,
            output=output,
            overwrite=overwrite,
            root=data_root,
            tables=_pairs(table or [], "--table"),
        )
    console = _console()
    if len(metrics):
        frame = metrics.astype({"n": str}).set_index(["task", "metric"])
        console.print(_table(f"metrics on {Path(data).name} (its own labels)", frame))
    console.print(f"predictions → {out}")


@app.command()
@_friendly
def embed(
    config: ConfigArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="folder to write into")],
    modality: Annotated[
        list[str] | None,
        typer.Option("--modality", "-m", help="embed only this modality (repeatable)"),
    ] = None,
) -> None:
    """Embed CONFIG's modalities that have an `encoder` once, into OUTPUT: a manifest with the
    embeddings, slide bags, and an experiment.yaml that trains on them. Unchanged inputs are
    read back from the cache, so a re-run embeds only what changed."""
    import logging

    from polyfuse.config import load_config

    experiment = load_config(config)
    logger = logging.getLogger("polyfuse.data.embedded")  # what was embedded, how fast
    if not logger.handlers:
        from rich.logging import RichHandler

        logger.addHandler(RichHandler(show_path=False))
        logger.setLevel(logging.INFO)
        logger.propagate = False  # once, also under -v
    from polyfuse.data.embedding_files import write_embeddings

    with _warnings_shown():
        written = write_embeddings(experiment, output, modality)
    _console().print(f"embeddings → {written.parent}; train on them with: polyfuse cv {written}")


def _pairs(items: list[str], option: str) -> dict[str, Path]:
    """`NAME=PATH` options as a mapping."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"{option} {item!r}: write it as MODALITY=PATH")
        out[name] = Path(path)
    return out


class _warnings_shown:
    """Print polyfuse's data warnings as `warning: ...` lines (no source location)."""

    def __enter__(self) -> None:
        import warnings

        from polyfuse.errors import DataWarning

        self._catch = warnings.catch_warnings(record=True)
        self._seen = self._catch.__enter__()
        warnings.simplefilter("always", DataWarning)
        self._category = DataWarning

    def __exit__(self, *exc: object) -> None:
        import warnings

        self._catch.__exit__(*exc)
        for w in self._seen:
            if issubclass(w.category, self._category):
                typer.echo(f"warning: {w.message}", err=True)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


@app.command()
@_friendly
def serve(
    run_dir: RunDirArg,
    host: Annotated[
        str, typer.Option(help="address to listen on (the default: this machine only)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    data_root: Annotated[
        Path | None,
        typer.Option(
            help="folder that file paths in requests are relative to (default: none, and "
            "requests naming a file are refused)"
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="processes, each with the model and a share of the cores")
    ] = 1,
) -> None:
    """Serve a fitted run over HTTP: /health, /metadata, /predict (the `serve` extra; see
    docs/deployment.md)."""
    from polyfuse.inference.serve import serve_run  # imports fastapi: not for `--help`

    serve_run(run_dir, host=host, port=port, data_root=data_root, workers=workers)


@app.command()
@_friendly
def export(
    run_dir: RunDirArg,
    format: Annotated[str, typer.Option("--format", help="onnx or torchscript")] = "onnx",
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="file to write (default: RUN_DIR/export/model.*)"),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Export a fitted run as one ONNX or TorchScript graph (checked against polyfuse's own
    scores before it is written), with its input contract beside it (docs/deployment.md)."""
    if format not in ("onnx", "torchscript"):
        raise ConfigError(f"--format {format!r}: use onnx or torchscript")
    from polyfuse.inference.export import export_run

    out = export_run(run_dir, format, output, overwrite=overwrite)  # type: ignore[arg-type]
    _console().print(f"exported → {out}", markup=False)


BenchmarkModels = Annotated[
    list[str] | None,
    typer.Option(
        "--models",
        "-m",
        help="models to run: -m early,late or -m early -m late (default: the suite's)",
    ),
]
BenchmarkDatasets = Annotated[
    list[str] | None,
    typer.Option("--datasets", "-d", help="bundled cohorts: -d a,b or -d a -d b"),
]
Suite = Annotated[
    str,
    typer.Option(
        help="default: TCGA-ACC with the baselines and core methods; "
        "full: every registered model on every available cohort"
    ),
]
TuneTrials = Annotated[
    int,
    typer.Option(
        min=0,
        help="tune every model with this many optuna trials inside each outer fold "
        "(inner CV on the training part) before scoring it; 0: no tuning",
    ),
]
Executor = Annotated[
    str,
    typer.Option(
        help="where folds are trained: local (processes on this machine) or dask (tasks on the "
        "Dask cluster at --address; the cluster extra, docs/scaling.md)"
    ),
]
Address = Annotated[
    str | None,
    typer.Option(help="the Dask scheduler for --executor dask, e.g. tcp://node01:8786"),
]


@app.command()
@_friendly
def benchmark(
    models: BenchmarkModels = None,
    datasets: BenchmarkDatasets = None,
    suite: Suite = "default",
    config: Annotated[
        Path | None,
        typer.Option(
            help="experiment YAML: benchmark on its data, training and preprocessing, with its "
            "model.params for its model"
        ),
    ] = None,
    folds: int = 5,
    repeats: int = 3,
    seed: int = 0,
    out: Annotated[
        Path | None,
        typer.Option(
            help="output directory (default: runs/benchmark; with --config "
            "<output>/<name>/benchmark)"
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="skip the folds already done in OUT")] = False,
    overwrite: Overwrite = False,
    classical: Annotated[bool, typer.Option(help="run the classical floors")] = True,
    workers: Annotated[
        int | None,
        typer.Option(help="folds trained at once (default: one per CPU core; local executor)"),
    ] = None,
    executor: Executor = "local",
    address: Address = None,
    tune_trials: TuneTrials = 0,
    subgroups: Annotated[
        list[str] | None,
        typer.Option(
            "--subgroup",
            help="report performance per level of modality:column (repeat the option): "
            "clinical:gender, clinical:age@50,65 (bands at 50 and 65), clinical:age (tertiles); "
            "default: a bundled cohort's own",
        ),
    ] = None,
) -> None:
    """The main job: every model and the classical floors on identical folds, with a report."""
    # every name, the config and the output folder are checked before any data are read
    experiment, names, hparams = _benchmark_inputs(config, models, datasets, suite)
    from polyfuse.evaluation.executors import check_executor

    check_executor(executor, address)
    if out is None:
        out = experiment.run_dir("benchmark") if experiment is not None else Path("runs/benchmark")
    from polyfuse.io import check_run_dir

    check_run_dir(out, overwrite=overwrite, resume=resume)
    tuning = None
    if tune_trials:
        from polyfuse.config import TuneConfig

        base = experiment.tune if experiment is not None else TuneConfig()
        tuning = base.model_copy(update={"trials": tune_trials})

    with _stoppable("benchmark", lambda: out):
        result = _run_benchmark(
            suite,
            _names(datasets),
            config,
            models=names,
            folds=folds,
            repeats=repeats,
            seed=seed,
            out=out,
            hparams=hparams,
            classical=classical,
            resume=resume,
            overwrite=overwrite,
            workers=workers or os.cpu_count() or 1,
            tune=tuning,
            subgroups=subgroups or None,  # typer gives [] for an option not given
            executor=executor,
            address=address,
        )
    _print_benchmark(result, tuning)


def _benchmark_inputs(
    config: Path | None, models: list[str] | None, datasets: list[str] | None, suite: str
) -> tuple[Any, list[str] | None, dict[str, dict[str, Any]] | None]:
    """(experiment config or None, model names, per-model hyper-parameters), every name checked
    before any data are read."""
    from polyfuse.config import STACK, load_config
    from polyfuse.datasets import dataset_info
    from polyfuse.evaluation.suites import suite_models
    from polyfuse.models.registry import check_hparams

    experiment = load_config(config) if config is not None else None
    names = suite_models(suite, _names(models))
    for name in names or []:
        if name != STACK:  # the stacked ensemble is not a network
            check_hparams(name, {})  # the name; a built-in model is not imported
    for name in _names(datasets) or []:
        dataset_info(name)
    if experiment is None:
        return None, names, None
    own = experiment.model
    if own.name == STACK:
        from polyfuse.training.stack import check_options

        check_options(own.params)
    else:
        check_hparams(own.name, own.params)
    if own.params and names is not None and own.name not in names:
        _console().print(
            f"note: {config}'s model.params are for '{own.name}', which this benchmark does "
            f"not run ({', '.join(names)}); add -m {own.name} to include it",
            markup=False,
        )
    return experiment, names, {own.name: own.params} if own.params else None


def _print_benchmark(result: Any, tuning: Any) -> None:
    """The leaderboard per dataset × task, and where the report is."""
    from polyfuse.evaluation.report import leaderboard_blocks

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


def _run_benchmark(suite: str, datasets: list[str] | None, config: Path | None, **options: Any):
    """Read the benchmark's data (the long part before training, and before torch is
    imported), then run it."""
    from polyfuse.evaluation.suites import suite_datasets

    chosen, training, preprocess = suite_datasets(suite, datasets, config)
    from polyfuse.evaluation.benchmark import benchmark as run_benchmark

    return run_benchmark(chosen, training=training, preprocess=preprocess, **options)


def _names(values: list[str] | None) -> list[str] | None:
    """Names from repeated options and comma lists alike: `-m a,b -m c` → [a, b, c]."""
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",")]
    if any(not n for n in names):
        raise ConfigError(f"an empty name in {','.join(values)!r}; write -m a,b or -m a -m b")
    return list(dict.fromkeys(names))


@app.command()
@_friendly
def profile(
    config: Annotated[
        Path | None, typer.Argument(help="experiment YAML (default: the bundled TCGA-ACC)")
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option("--models", "-m", help="models: -m early,late or -m early -m late"),
    ] = None,
    curves: Annotated[
        bool,
        typer.Option(
            "--curves",
            help="cost curves instead: step time and peak memory against modalities and "
            "tokens per modality, on synthetic bags (cost_curves.csv and PNGs in --out)",
        ),
    ] = False,
    modalities: Annotated[
        str, typer.Option(help="--curves: modality counts, comma-separated")
    ] = "2,4,8,16",
    tokens: Annotated[
        str, typer.Option(help="--curves: tokens per modality, comma-separated")
    ] = "16,64,256",
    out: Annotated[Path, typer.Option(help="--curves: output folder")] = Path("runs/profile"),
) -> None:
    """Parameters, FLOPs, latency and peak memory per model, without training."""
    import pandas as pd

    from polyfuse.evaluation.suites import suite_datasets
    from polyfuse.models.registry import check_hparams, list_models
    from polyfuse.progress import Progress

    names = _names(models) or list_models()
    for name in names:
        check_hparams(name, {})  # the name, before the data are read
    hparams: dict[str, dict[str, Any]] = {}
    if config is not None:
        from polyfuse.config import load_config

        cfg = load_config(config)
        check_hparams(cfg.model.name, cfg.model.params)
        hparams = {cfg.model.name: cfg.model.params}
    if curves:
        sizes = (_counts(modalities, "--modalities"), _counts(tokens, "--tokens"))
        return _profile_curves(names, hparams, *sizes, out)
    chosen, _, _ = suite_datasets("default", None, config)
    data = chosen[0]
    from polyfuse.evaluation.profile import profile_models  # torch: after the data

    rows = []
    with Progress(True) as bar:
        bar.add("profiling", len(names))
        for name in names:
            bar.describe(f"profiling {name}")
            own = {name: hparams[name]} if name in hparams else None
            rows.append(profile_models([name], data, hparams=own))
            bar.advance()
    _console().print(_table(f"profile on {data.name}", pd.concat(rows)))


def _counts(text: str, option: str) -> tuple[int, ...]:
    """Positive integers from a comma list: "2,4,8" → (2, 4, 8)."""
    try:
        counts = tuple(int(v) for v in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise ConfigError(f"{option} takes positive integers separated by commas, got {text!r}")
    return counts


def _profile_curves(
    names: list[str],
    hparams: dict[str, dict[str, Any]],
    modalities: tuple[int, ...],
    tokens: tuple[int, ...],
    out: Path,
) -> None:
    """`profile --curves`: measure every size of every model, write the CSV and the figures."""
    from polyfuse.evaluation.cost_curves import cost_curve, plot_cost_curves, sizes
    from polyfuse.io import atomic_write
    from polyfuse.progress import Progress

    points = sizes(modalities, tokens)
    with Progress(True) as bar:
        bar.add("cost curves", len(names) * len(points))

        def step(name: str, m: int, t: int) -> None:
            bar.describe(f"{name}: {m} modalities × {t} tokens")
            bar.advance()

        frame = cost_curve(names, modalities, tokens, hparams=hparams, on_size=step)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "cost_curves.csv"
    atomic_write(csv, lambda p: frame.to_csv(p, index=False))
    figures = plot_cost_curves(frame, out / "cost_curves.png")
    _console().print(_table("cost curves (synthetic bags, batch 8)", frame.set_index("model")))
    for path in [csv, *figures]:
        typer.echo(f"wrote {path}")


@app.command()
@_friendly
def explain(
    run_dir: RunDirArg,
    data: Annotated[
        str | None,
        typer.Option(help="explain on this table or dataset (default: the run's validation part)"),
    ] = None,
    patients: Annotated[
        list[str] | None,
        typer.Option("--patient", help="a patient to write a page for (repeatable; default: ten)"),
    ] = None,
) -> None:
    """Per-modality contributions with intervals, per-feature attributions, attention maps and
    a page per patient, for a fitted run (PNG, CSV and HTML files)."""
    from polyfuse.explain.report import explain_run

    files = explain_run(run_dir, data, patients)
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
    """List the registered models and their hyper-parameters (or one model's search space).

    Built-in models are listed from the registry's table, without importing them (or torch);
    a model an installed package declares (entry point `polyfuse.models`) is imported."""
    from polyfuse.models.registry import list_models

    if space is not None:
        from polyfuse.search_space import describe
        from polyfuse.tuning.space import model_space

        dims = describe(model_space(space))
        title = f"{space}: search space (narrow it with tune.space)"
        _console().print(_rows_table(title, ("parameter", "searched over"), dims.items()))
        return
    rows = [(m, _hparams(m)) for m in list_models()]
    _console().print(_rows_table("models", ("model", "hyper-parameters (defaults)"), rows))


def _hparams(name: str) -> str:
    """A model's hyper-parameters with their defaults; a model an installed package declares
    but that cannot be imported is listed with the reason, not hiding the others."""
    from polyfuse.models.registry import model_hparams

    try:
        params = model_hparams(name)
    except Exception as exc:  # a broken plugin: any error its import raises
        return f"(cannot be imported: {type(exc).__name__}: {exc})"
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


@app.command()
@_friendly
def datasets() -> None:
    """List the bundled cohorts: size, modalities and missingness per modality (and which
    modalities are for training only: the label was defined from them)."""
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
            f"{m}: {r['kind']} {r['shape']}, {r['missing']:.0%} missing"
            + (" (train only: defines the label)" if m in info.train_only else "")
            for m, r in desc.iterrows()
        )
        tasks = ", ".join(f"{t}:{s.type}" for t, s in data.tasks.items())
        rows.append(dict(dataset=name, samples=str(len(data)), modalities=mods, tasks=tasks))
    frame = pd.DataFrame(rows).set_index("dataset").fillna("")
    _console().print(_table("datasets", frame))


def main() -> None:
    """Entry point; also makes `python -m polyfuse` work.

    The current directory is searched for a model named `module:Class` in a config (after the
    installed packages), as `python -m polyfuse` searches it (before them)."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        app()
    except ConfigError as exc:  # raised while typer parses, outside a command
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
