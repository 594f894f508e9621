"""Export a fitted run to ONNX or TorchScript, with its input contract beside it.

    >>> from polyfuse.inference.export import export_run
    >>> export_run(Path("runs/own-data"), "onnx")        # doctest: +SKIP
    PosixPath('runs/own-data/export/model.onnx')

The exported graph is the fitted model plus its task objectives. Everything before the model
stays outside the graph and travels beside it as JSON (the run's input contract): reading
files, the fitted tabular preprocessing (imputation, scaling, missing indicators) and the text
tokenisation (`polyfuse.data.dataset.tokenize`, a Python string hash). So the graph takes the
*model* inputs — what `MultimodalModel.forward` receives after `Preprocessor.transform` and
batching — as flat tensors, one group per modality in the order of the model's specs:

    m              data: tabular (B, F) float32, preprocessed (F counts missing indicators);
                   image (B, C, H, W) or (B, C, D, H, W) float32; bag (B, N, D) float32;
                   sequence (B, N, C) float32 (NaN = not observed); text (B, N) int64 token ids
    m.present      (B,) bool: whether each sample has the modality
    m.token_mask   (B, N) bool, bag / sequence / text only: True for real tokens
    m.times        (B, N) float32, sequence only: observation times (0 where padded)

and returns the scores a user reads (`TaskObjective.scores`) as `<task>.<score>`: `prob`
(binary, multiclass, multilabel), `risk` and `survival` (survival), `pred` (regression). The
batch axis B and every token axis N are dynamic. Values of absent samples and padded tokens are
never read, as in polyfuse.

Every export is checked before it is written: the exported graph, loaded back (TorchScript with
`torch.jit.load`, ONNX with onnxruntime), is run on batches of other sizes, token counts and
missing-modality patterns than the one it was traced with, and must give the scores of the
fitted model within `ATOL`; otherwise a ConfigError names the model and the output that
differs. Beside the file `<stem>.<ext>` go `<stem>.io.json` (names, dtypes and shapes of the
inputs and outputs) and the contract files (`CONTRACT_FILES`), copied as `<stem>.<name>`.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import ModalitySpec
from polyfuse.errors import ConfigError, PolyfuseError, require
from polyfuse.io import atomic_write, write_text

if TYPE_CHECKING:
    from polyfuse.training.fit import FittedModel

ExportFormat = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript")

SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
"""The default file per format: `<run_dir>/export/model<suffix>`."""

CONTRACT_FILES: tuple[tuple[str, ...], ...] = (
    ("contract.json",),
    ("preprocess.json", "model.json"),
)
"""The input contract copied beside an export: the first group whose files all exist in the run
directory, each copied as `<stem>.<name>`."""

NOT_EXPORTABLE: dict[str, dict[str, str]] = {}
"""Registered models that cannot be exported, per format, and why (docs/deployment.md). Every
registered model exports to both formats today; a model added here is refused up front."""

ATOL = 1e-5
"""The largest absolute difference allowed between an export's scores and polyfuse's."""

ONNX_OPSET = 20
"""ONNX opset of the graph: the exporter's own (no version conversion); onnxruntime ≥ 1.17."""

CHECK_BATCHES: tuple[tuple[int, int, int], ...] = ((1, 2, 1), (7, 11, 2), (4, 1, 3))
"""(batch size, tokens per token modality, seed) of the batches every export is checked on;
the trace itself uses batch 3 and 5, 7, 9 … tokens. The second one also has a modality absent
for every sample."""

_TRACE_BATCH = 3


# ------------------------------------------------------------------------------ layout


@dataclass(frozen=True)
class TensorInfo:
    """One named input or output of an exported graph. `shape` holds sizes, or axis names for
    the dynamic axes: "batch" and "<modality>.tokens"."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    modality: str | None = None
    field: str | None = None
    task: str | None = None
    score: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        for key in ("modality", "field", "task", "score"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def _fields(spec: ModalitySpec) -> tuple[str, ...]:
    if spec.kind == "sequence":
        return ("data", "present", "token_mask", "times")
    if spec.is_tokens:
        return ("data", "present", "token_mask")
    return ("data", "present")


def input_layout(specs: dict[str, ModalitySpec]) -> list[TensorInfo]:
    """The inputs of an exported graph, in order (see the module docstring)."""
    out = []
    for m, spec in specs.items():
        tokens = f"{m}.tokens"
        for field in _fields(spec):
            name = m if field == "data" else f"{m}.{field}"
            shape: tuple[int | str, ...]
            if field == "present":
                dtype, shape = "bool", ("batch",)
            elif field == "token_mask":
                dtype, shape = "bool", ("batch", tokens)
            elif field == "times":
                dtype, shape = "float32", ("batch", tokens)
            elif spec.kind == "text":
                dtype, shape = "int64", ("batch", tokens)
            elif spec.is_tokens:
                dtype, shape = "float32", ("batch", tokens, spec.width)
            else:
                dtype, shape = "float32", ("batch", *spec.shape)
            out.append(TensorInfo(name, dtype, shape, modality=m, field=field))
    return out


def flat_inputs(
    inputs: dict[str, ModalityBatch], specs: dict[str, ModalitySpec]
) -> tuple[Tensor, ...]:
    """A batch's `inputs` (e.g. `dataset.batch(idx).inputs` after preprocessing) as the flat
    tuple of tensors an exported graph takes, in `input_layout` order."""
    out: list[Tensor] = []
    for m, spec in specs.items():
        b = inputs[m]
        for field in _fields(spec):
            value = getattr(b, field)
            if value is None:
                raise ConfigError(f"modality '{m}' ({spec.kind}) needs its {field}")
            out.append(value)
    return tuple(out)


class ExportWrapper(nn.Module):
    """Model (every member of an ensemble) + objectives over flat tensors in `input_layout`
    order → scores per task."""

    def __init__(self, members: list[nn.Module], objectives: nn.ModuleDict) -> None:
        super().__init__()
        self.members = nn.ModuleList(members).eval()
        self.objectives = objectives.eval()
        self.groups = [(m, _fields(s)) for m, s in members[0].specs.items()]

    def unflatten(self, flat: tuple[Tensor, ...]) -> dict[str, ModalityBatch]:
        """The model's `inputs` dict from the flat tensors."""
        out, i = {}, 0
        for m, fields in self.groups:
            out[m] = ModalityBatch(**dict(zip(fields, flat[i : i + len(fields)], strict=True)))
            i += len(fields)
        return out

    def scores(self, flat: tuple[Tensor, ...]) -> dict[str, Tensor]:
        """`<task>.<score>` → scores, exactly as `FittedModel.predict` computes them."""
        from polyfuse.training.fit import member_mean

        scores = member_mean(list(self.members), self.objectives, self.unflatten(flat))
        return {f"{t}.{k}": v for t, d in scores.items() for k, v in d.items()}

    def forward(self, *flat: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.scores(flat).values())

    def output_layout(self, example: tuple[Tensor, ...]) -> list[TensorInfo]:
        """The outputs of the exported graph, in order."""
        with torch.no_grad():
            scores = self.scores(example)
        out = []
        for name, v in scores.items():
            task, score = name.rsplit(".", 1)
            shape = ("batch", *v.shape[1:])
            out.append(TensorInfo(name, _dtype(v), shape, task=task, score=score))
        return out


def _dtype(t: Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


class _UnrolledCumprod(TorchFunctionMode):
    """ONNX has no cumulative product: `cumprod` over a fixed-size axis (the survival curve over
    its bins) becomes the same running product, one element at a time."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.cumprod, Tensor.cumprod) and not kwargs.get("dtype"):
            x = args[0]
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            steps = list(x.unbind(dim))
            for k in range(1, len(steps)):
                steps[k] = steps[k - 1] * steps[k]
            return torch.stack(steps, dim)
        return func(*args, **kwargs)


# ------------------------------------------------------------------------ example inputs


def example_inputs(
    specs: dict[str, ModalitySpec],
    batch: int,
    tokens: int | dict[str, int],
    *,
    seed: int = 0,
    absent: tuple[str, ...] = (),
) -> tuple[Tensor, ...]:
    """Random flat inputs in `input_layout` order. Each modality is absent for some samples
    (sample 0 has every modality; the last one none when batch > 2), token modalities have
    padded tokens, sequences NaN values; modalities in `absent` are absent for every sample."""
    gen = torch.Generator().manual_seed(seed)
    out: list[Tensor] = []
    for j, (m, spec) in enumerate(specs.items()):
        present = torch.rand(batch, generator=gen) < 0.7
        present[0] = True
        if batch > 1:
            present[1 + j % (batch - 1)] = False
        if batch > 2:
            present[-1] = False
        if m in absent:
            present[:] = False
        if spec.kind in ("tabular", "image"):
            out += [torch.randn(batch, *spec.shape, generator=gen), present]
            continue
        n = tokens.get(m, 1) if isinstance(tokens, dict) else tokens
        lengths = torch.randint(0, n + 1, (batch,), generator=gen)
        lengths[0] = n
        mask = torch.arange(n)[None, :] < lengths[:, None]
        if spec.kind == "text":
            ids = torch.randint(1, spec.vocab_size, (batch, n), generator=gen)
            out += [torch.where(mask, ids, 0), present, mask]
            continue
        data = torch.where(mask[..., None], torch.randn(batch, n, spec.width, generator=gen), 0.0)
        if spec.kind == "bag":
            out += [data, present, mask]
            continue
        data[torch.rand(data.shape, generator=gen) < 0.2] = float("nan")
        times = torch.sort(torch.rand(batch, n, generator=gen) * 48, dim=1).values
        out += [data, present, mask, torch.where(mask, times, 0.0)]
    return tuple(out)


def _trace_tokens(specs: dict[str, ModalitySpec]) -> dict[str, int]:
    """Distinct token counts per token modality (5, 7, 9, …), so that no two dynamic axes
    share a size in the trace."""
    return {m: 5 + 2 * k for k, m in enumerate(m for m, s in specs.items() if s.is_tokens)}


# ---------------------------------------------------------------------------- exporters

Runner = Callable[[tuple[Tensor, ...]], list[np.ndarray]]


def _trace(wrapper: ExportWrapper, example: tuple[Tensor, ...]) -> torch.jit.ScriptModule:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings: every export is checked instead
        return torch.jit.trace(wrapper, example, check_trace=False, strict=False)


def _save_torchscript(
    wrapper: ExportWrapper, example: tuple[Tensor, ...], path: Path, io: dict[str, Any]
) -> Runner:
    traced = _trace(wrapper, example)
    extra = {"polyfuse.io.json": json.dumps(io, indent=2)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript: see docs/deployment.md
        torch.jit.save(traced, str(path), _extra_files=extra)
        loaded = torch.jit.load(str(path))

    def run(flat: tuple[Tensor, ...]) -> list[np.ndarray]:
        with torch.no_grad():
            return [v.numpy() for v in loaded(*flat)]

    return run


def _save_onnx(
    wrapper: ExportWrapper, example: tuple[Tensor, ...], path: Path, io: dict[str, Any]
) -> Runner:
    """torch.export with a symbolic batch axis and token axes, translated by onnxscript.

    Not the TorchScript-based exporter (`dynamo=False`): it fixes the token count of
    `nn.MultiheadAttention` (the sequence encoder) in the graph and gave other scores for
    mcat, mult and unimodal; torch.export refuses what it cannot keep symbolic instead.
    onnxscript's graph optimiser is off (it took minutes for dfg); onnxruntime optimises the
    graph when it loads it anyway.
    """
    import logging
    import re

    onnx = require("onnx", "export")
    ort = require("onnxruntime", "export")
    require("onnxscript", "export")
    from torch.export import Dim

    inputs, outputs = io["inputs"], io["outputs"]
    dims: dict[str, Any] = {}
    for t in inputs:
        for s in t["shape"]:
            if isinstance(s, str) and s not in dims:
                dims[s] = Dim("batch" if s == "batch" else f"tokens{len(dims)}", min=1)
    dynamic = tuple(
        {a: dims[s] for a, s in enumerate(t["shape"]) if isinstance(s, str)} for t in inputs
    )
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)  # "torchvision is not installed", version notes
        with torch.no_grad(), warnings.catch_warnings(), _UnrolledCumprod():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper,
                example,
                input_names=[t["name"] for t in inputs],
                output_names=[t["name"] for t in outputs],
                dynamic_shapes=(dynamic,),  # one entry: the *flat varargs
                opset_version=ONNX_OPSET,
                dynamo=True,
                optimize=False,
                external_data=False,
                verbose=False,
            )
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)
    proto = program.model_proto
    # the graph's symbolic axes get the names io.json uses ("wsi.tokens", not "tokens1")
    names = {d.__name__: axis for axis, d in dims.items()}
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b") if names else None
    graph = proto.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if pattern is not None and dim.dim_param:
                dim.dim_param = pattern.sub(lambda m: names[m.group(1)], dim.dim_param)
    proto.doc_string = f"polyfuse export of model '{io['model']}'"
    entry = proto.metadata_props.add()
    entry.key, entry.value = "polyfuse.io", json.dumps(io)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    in_names = [t["name"] for t in inputs]
    out_names = [t["name"] for t in outputs]
    graph_inputs = [i.name for i in session.get_inputs()]
    if graph_inputs != in_names:
        raise RuntimeError(f"the graph's inputs are {graph_inputs}, expected {in_names}")

    def run(flat: tuple[Tensor, ...]) -> list[np.ndarray]:
        return session.run(out_names, {n: t.numpy() for n, t in zip(in_names, flat, strict=True)})

    return run


_SAVE = {"onnx": _save_onnx, "torchscript": _save_torchscript}


# ---------------------------------------------------------------------------- export_run


def default_output(run_dir: Path, format: ExportFormat) -> Path:
    """Where `export_run` writes when no output is given."""
    return Path(run_dir) / "export" / f"model{SUFFIX[format]}"


def contract_sources(run_dir: Path) -> tuple[str, ...]:
    """The run directory's contract files that travel with an export (`CONTRACT_FILES`)."""
    for group in CONTRACT_FILES:
        if all((Path(run_dir) / name).is_file() for name in group):
            return group
    return ()


def _companions(output: Path, contract: tuple[str, ...]) -> dict[str, Path]:
    stem = output.parent / output.stem
    out = {"io.json": Path(f"{stem}.io.json")}
    out |= {name: Path(f"{stem}.{name}") for name in contract}
    return out


def export_run(
    run_dir: Path,
    format: ExportFormat,
    output: Path | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Export the fitted run in `run_dir` to ONNX or TorchScript; returns the file written.

    Args:
        run_dir: a run directory written by `polyfuse fit` (`FittedModel.save`).
        format: "onnx" (needs the `export` extra: onnx, onnxscript, onnxruntime) or
            "torchscript" (needs nothing beyond torch).
        output: the file to write; default `<run_dir>/export/model.onnx` or
            `<run_dir>/export/model.torchscript.pt`. Beside it go `<stem>.io.json` and the
            run's input contract (`CONTRACT_FILES`), as `<stem>.<name>`.
        overwrite: replace an earlier export; without it an existing file is a ConfigError.

    Raises:
        ConfigError: an unknown format, an existing output without `overwrite`, or a model
            that cannot be exported (named, with the reason: `NOT_EXPORTABLE`, an operator
            the exporter lacks, or outputs that differ from polyfuse's by more than `ATOL`).
        DataError: `run_dir` is not a complete fitted run.
        MissingDependencyError: ONNX export without onnx, onnxscript or onnxruntime.
    """
    from polyfuse.training.fit import FittedModel

    if format not in FORMATS:
        raise ConfigError(f"unknown export format '{format}'; use one of {list(FORMATS)}")
    run_dir = Path(run_dir)
    output = default_output(run_dir, format) if output is None else Path(output)
    if output.is_dir():
        raise ConfigError(f"export output {output} is a folder; give a file name")
    contract = contract_sources(run_dir)
    files = [output, *_companions(output, contract).values()]
    existing = [str(p) for p in files if p.exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{', '.join(existing)} already exist(s); pass --overwrite (overwrite=True) to "
            "replace the export, or choose another output"
        )
    if format == "onnx":
        for module in ("onnx", "onnxscript", "onnxruntime"):
            require(module, "export")
    fitted = FittedModel.load(run_dir)
    return export_fitted(fitted, format, output, run_dir=run_dir)


def export_fitted(
    fitted: FittedModel,
    format: ExportFormat,
    output: Path,
    *,
    run_dir: Path | None = None,
) -> Path:
    """Export a `FittedModel` to `output` (written atomically, after the check) with its
    `<stem>.io.json`, and the contract files of `run_dir` when given. Overwrites."""
    name = fitted.model_name
    reason = NOT_EXPORTABLE.get(name, {}).get(format)
    if reason:
        raise ConfigError(f"model '{name}' cannot be exported to {format}: {reason}")
    if format == "onnx":
        for module in ("onnx", "onnxscript", "onnxruntime"):
            require(module, "export")
    wrapper = ExportWrapper(fitted.members, fitted.objectives)
    specs = fitted.model.specs
    example = example_inputs(specs, _TRACE_BATCH, _trace_tokens(specs), seed=0)
    contract = contract_sources(run_dir) if run_dir is not None else ()
    companions = _companions(output, contract)
    io = _io_description(fitted, format, output, wrapper, example, companions)

    def write(tmp: Path) -> None:
        try:
            run = _SAVE[format](wrapper, example, tmp, io)
        except PolyfuseError:
            raise
        except Exception as exc:  # torch.export, onnxscript and the tracer raise their own
            raise ConfigError(
                f"model '{name}' cannot be exported to {format}: the exporter failed: "
                f"{_root_cause(exc)}"
            ) from exc
        _check(wrapper, run, specs, name, format, [o["name"] for o in io["outputs"]])
        for source, target in companions.items():  # the model file is renamed into place last
            if source == "io.json":
                write_text(target, json.dumps(io, indent=2))
            else:
                src = Path(run_dir) / source  # type: ignore[arg-type]
                atomic_write(target, lambda p, src=src: shutil.copyfile(src, p))

    atomic_write(output, write)
    return output


def _root_cause(exc: BaseException) -> str:
    """The first line of the innermost cause (torch.onnx wraps torch.export's error in its
    own, whose first line only says which step failed), without terminal colour codes."""
    import re

    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = re.sub(r"\x1b\[[0-9;]*m", "", lines[0] if lines else type(exc).__name__)
    return text if len(text) <= 300 else text[:297] + "..."


def _check(
    wrapper: ExportWrapper,
    run: Runner,
    specs: dict[str, ModalitySpec],
    name: str,
    format: str,
    outputs: list[str],
) -> None:
    """The exported graph against the model on batches unlike the traced one."""
    absent_all = tuple(specs)[-1:] if len(specs) > 1 else ()
    for k, (batch, tokens, seed) in enumerate(CHECK_BATCHES):
        flat = example_inputs(specs, batch, tokens, seed=seed, absent=absent_all if k else ())
        with torch.no_grad():
            want = [v.numpy() for v in wrapper(*flat)]
            again = [v.numpy() for v in wrapper(*flat)] if k == 0 else want
        if any(
            not np.allclose(a, b, rtol=0, atol=ATOL, equal_nan=True)
            for a, b in zip(want, again, strict=True)
        ):
            raise ConfigError(
                f"model '{name}' cannot be exported to {format}: its scores are random at "
                "inference (e.g. ehpal's mc_dropout_at_inference), so no graph can be checked "
                "against them; fit it with that option off to export it"
            )
        try:
            got = run(flat)
        except Exception as exc:  # onnxruntime and TorchScript raise their own types
            line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(
                f"model '{name}' cannot be exported to {format}: the exported graph fails on a "
                f"batch of {batch} sample(s) and {tokens} token(s) ({line[:300]})"
            ) from exc
        for out, w, g in zip(outputs, want, got, strict=True):
            g = np.asarray(g)
            if w.shape != g.shape:
                how = f"has shape {g.shape} where polyfuse's has {w.shape}"
            else:  # NaN where the model gives NaN too is no difference
                diff = np.where(np.isnan(w) & np.isnan(g), 0.0, np.abs(w - g))
                err = float(np.max(diff, initial=0.0))
                if err <= ATOL:
                    continue
                how = f"differs from polyfuse's by {err:.3g} (> {ATOL:g})"
            raise ConfigError(
                f"model '{name}' cannot be exported to {format}: its '{out}' {how} on a batch of "
                f"{batch} sample(s) and {tokens} token(s); the traced graph fixed something the "
                "model computes from its inputs (batch size, token count, or which modalities "
                "are present)"
            )


def _io_description(
    fitted: FittedModel,
    format: str,
    output: Path,
    wrapper: ExportWrapper,
    example: tuple[Tensor, ...],
    companions: dict[str, Path],
) -> dict[str, Any]:
    """What `<stem>.io.json` (and the file's own metadata) says about the graph."""
    import polyfuse

    specs = fitted.model.specs
    outputs = []
    for info in wrapper.output_layout(example):
        entry = info.as_dict()
        obj = fitted.objectives[info.task]
        if info.score == "survival":
            entry["times"] = obj.cuts[1:].tolist()  # S_k is survival at the end of bin k
        if info.score == "prob" and obj.spec.classes:
            entry["classes"] = list(obj.spec.classes)
        outputs.append(entry)
    return {
        "format": format,
        "file": output.name,
        "model": fitted.model_name,
        "polyfuse": polyfuse.__version__,
        "torch": torch.__version__,
        **({"opset": ONNX_OPSET} if format == "onnx" else {}),
        "inputs": [t.as_dict() for t in input_layout(specs)],
        "outputs": outputs,
        "modalities": {
            m: {
                "kind": s.kind,
                "shape": list(s.shape),
                **({"vocab_size": s.vocab_size} if s.kind == "text" else {}),
                **({"feature_names": list(s.feature_names)} if s.feature_names else {}),
            }
            for m, s in specs.items()
        },
        "recalibration": {t: r.to_dict() for t, r in fitted.recalibration.items()},
        "conformal": {t: c.to_dict() for t, c in fitted.conformal.items()},
        "conformal_after_the_graph": (
            "per task, as polyfuse.tasks.recalibration and .conformal apply them: a binary "
            "task's prob goes through its recalibration first (platt: sigmoid(slope * "
            "logit(p) + intercept); isotonic: linear between the knots x -> y); "
            "classification sets hold the "
            "classes whose score (lac: 1 - prob; aps: the mass ranked at or above) is at most "
            "threshold; regression intervals are pred ± half_width; a survival lower bound is "
            "ConformalSurvival.lower_bound(exp(-risk)); null means infinity"
        ),
        "contract": [p.name for k, p in companions.items() if k != "io.json"],
        "before_the_graph": (
            "tabular modalities: impute, scale and append missing indicators as the contract's "
            "fitted preprocessing says; text: polyfuse.data.dataset.tokenize(text, vocab_size), "
            "padded with 0; bags and sequences: pad to the longest in the batch; absent "
            "samples: present=False (their values are never read)"
        ),
        "atol": ATOL,
    }


__all__ = [
    "CONTRACT_FILES",
    "FORMATS",
    "NOT_EXPORTABLE",
    "ExportWrapper",
    "export_fitted",
    "export_run",
    "flat_inputs",
    "input_layout",
]
