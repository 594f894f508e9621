"""`export_run`: every registered model, exported to ONNX and TorchScript, gives polyfuse's
scores (`FittedModel.predict`) within 1e-5 on new patients with absent modalities, at batch
sizes other than the traced one."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import WORDS

from polyfuse.config import PreprocessConfig, TrainingConfig
from polyfuse.data.dataset import ArraySource, ListSource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.errors import ConfigError
from polyfuse.inference import export as ex
from polyfuse.inference.export import (
    FORMATS,
    NOT_EXPORTABLE,
    contract_sources,
    export_fitted,
    export_run,
    flat_inputs,
)
from polyfuse.models.registry import create_model, list_models, model_hparams
from polyfuse.training.fit import FittedModel, train_model

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

MODELS = list_models()
ATOL = 1e-5
FAST_ONNX = ("early", "unimodal")  # early: every kind's encoder; torch.export takes 5-80 s a model
SLOW = {("ehpal", "torchscript")}  # ~20 s: hundreds of small convolutions per forward
CASES = [
    pytest.param(m, f, id=f"{m}-{f}", marks=[pytest.mark.slow] * slow)
    for m in MODELS
    for f in FORMATS
    if f not in NOT_EXPORTABLE.get(m, {})
    for slow in [(f == "onnx" and m not in FAST_ONNX) or (m, f) in SLOW]
]
REFUSED = [(m, f) for m, reasons in NOT_EXPORTABLE.items() for f in reasons]


def specs() -> dict[str, ModalitySpec]:
    """One modality of every kind, small: two images (2D, 3D), a bag, a sequence, a report."""
    return {
        "clinical": ModalitySpec("clinical", "tabular", (5,)),
        "xray": ModalitySpec("xray", "image", (1, 8, 8)),
        "ct": ModalitySpec("ct", "image", (1, 4, 8, 8)),
        "wsi": ModalitySpec("wsi", "bag", (6,)),
        "labs": ModalitySpec("labs", "sequence", (3,)),
        "report": ModalitySpec("report", "text", (), vocab_size=32),
    }


def cohort(n: int, seed: int) -> MultimodalDataset:
    """Every modality absent somewhere, sample n-1 with none and n-2 with all; NaN in the
    tabular features (imputed, with missing indicators) and sequences; an empty bag and an
    empty report among present samples; every task type."""
    rng = np.random.default_rng(seed)
    sp = specs()
    presence = rng.random((n, len(sp))) < 0.7
    for j in range(len(sp)):
        presence[j % (n - 2), j] = False
    presence[n - 2], presence[n - 1] = True, False
    sources = {}
    for j, (m, spec) in enumerate(sp.items()):
        present = presence[:, j]
        if spec.kind in ("tabular", "image"):
            values = rng.normal(size=(n, *spec.shape)).astype(np.float32)
            if spec.kind == "tabular":
                values[rng.random(values.shape) < 0.15] = np.nan
            sources[m] = ArraySource(values, present)
        elif spec.kind == "bag":
            sizes = rng.integers(1, 6, n)
            sizes[n - 2] = 0
            sources[m] = ListSource(
                [
                    rng.normal(size=(int(k), spec.width)).astype(np.float32) if p else None
                    for k, p in zip(sizes, present, strict=True)
                ]
            )
        elif spec.kind == "sequence":
            items = []
            for p in present:
                t = int(rng.integers(1, 7))
                values = rng.normal(size=(t, spec.width)).astype(np.float32)
                values[rng.random(values.shape) < 0.25] = np.nan
                times = np.sort(rng.uniform(0, 48, t)).astype(np.float32)
                items.append((values, times) if p else None)
            sources[m] = ListSource(items)
        else:
            texts = [" ".join(rng.choice(WORDS, int(rng.integers(1, 9)))) for _ in range(n)]
            texts[n - 2] = ""
            sources[m] = ListSource([t if p else None for t, p in zip(texts, present, strict=True)])
    tasks = {
        "response": TaskSpec("response", "binary"),
        "subtype": TaskSpec("subtype", "multiclass", classes=("a", "b", "c")),
        "flags": TaskSpec("flags", "multilabel", classes=("x", "y")),
        "os": TaskSpec("os", "survival", n_bins=3),
        "pfs": TaskSpec("pfs", "survival", survival_head="cox"),
        "age": TaskSpec("age", "regression"),
    }
    survival = np.stack([rng.uniform(1, 60, n), np.arange(n) % 2], axis=1)
    targets = {
        "response": (np.arange(n) % 2).astype(np.float32),
        "subtype": (np.arange(n) % 3).astype(np.float32),
        "flags": rng.integers(0, 2, (n, 2)).astype(np.float32),
        "os": survival,
        "pfs": survival[::-1].copy(),
        "age": rng.normal(60, 10, n),
    }
    ids = [f"s{seed}-{i:02d}" for i in range(n)]
    return MultimodalDataset(ids, sp, sources, tasks, targets, name="export-toy")


SMALL: dict[str, dict] = {
    "ehpal": {"width": 0.125, "grid_size": 4, "adapter_dim": 8},
    "healnet": {
        "depth": 1,
        "num_latents": 8,
        "latent_dim": 16,
        "cross_dim_head": 16,
        "latent_dim_head": 16,
        "latent_heads": 2,
    },
    "perceiver": {"depth": 1, "num_latents": 8, "latent_dim": 16, "token_dim": 16},
    "synergies": {"depth": 1, "heads": 2, "num_latents": 8},
    "mcat": {"layers": 1},
}


def small(name: str) -> dict:
    """Small widths (a faster test, the same code paths)."""
    known = model_hparams(name)
    common = {k: v for k, v in {"dim": 16, "hidden": (16,)}.items() if k in known}
    return common | SMALL.get(name, {})


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory: pytest.TempPathFactory):
    """`run_dirs(model)`: a saved run of `model`. `early` is trained for one epoch; every other
    model takes its place untrained (random weights, the same fitted preprocessing and task
    state): the export does not care how the weights were found, and no fit is repeated."""
    made: dict[str, Path] = {}
    trained = train_model(
        "early",
        cohort(14, seed=0),
        hparams=small("early"),
        training=TrainingConfig(epochs=1, batch_size=7, progress=False),
        preprocess=PreprocessConfig(missing_indicator=True),
        seed=0,
    )

    def get(name: str) -> Path:
        if name not in made:
            fitted = trained
            if name != "early":
                torch.manual_seed(0)
                hparams = small(name)
                model = create_model(name, trained.model.specs, trained.tasks, **hparams)
                fitted = dataclasses.replace(
                    trained, model_name=name, hparams=hparams, members=[model]
                )
            made[name] = tmp_path_factory.mktemp(f"run-{name}")
            fitted.save(made[name])
        return made[name]

    return get


def run_export(path: Path, io: dict, flat: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
    """Outputs by name: onnxruntime for ONNX, torch.jit.load for TorchScript."""
    names = [o["name"] for o in io["outputs"]]
    if io["format"] == "onnx":
        ort = pytest.importorskip("onnxruntime")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        # the graph's inputs are io.json's, names and shapes (dynamic axes by name) alike
        graph = [(i.name, i.shape) for i in session.get_inputs()]
        assert graph == [(i["name"], i["shape"]) for i in io["inputs"]]
        feed = {i["name"]: t.numpy() for i, t in zip(io["inputs"], flat, strict=True)}
        return dict(zip(names, session.run(names, feed), strict=True))
    module = torch.jit.load(str(path))
    with torch.no_grad():
        return {n: v.numpy() for n, v in zip(names, module(*flat), strict=True)}


def exported_scores(path: Path, fitted: FittedModel, data: MultimodalDataset, rows: list):
    """The exported graph's scores on `data`, batch by batch (`rows`: index arrays)."""
    io = json.loads(path.with_name(path.stem + ".io.json").read_text())
    prepared = fitted.preprocessor.transform(data)
    parts = [
        run_export(path, io, flat_inputs(prepared.batch(idx).inputs, fitted.model.specs))
        for idx in rows
    ]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@pytest.mark.parametrize(("name", "fmt"), CASES)
def test_export_matches_predict(name, fmt, run_dirs, tmp_path) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    run_dir = run_dirs(name)
    out = export_run(run_dir, fmt, tmp_path / f"{name}{ex.SUFFIX[fmt]}")
    assert out.is_file()
    fitted = FittedModel.load(run_dir)
    new = cohort(9, seed=1)  # new patients; the trace used 3
    want = fitted.predict(new, calibrated=False)  # the conformal outputs are not in the graph
    rows = [np.array([8]), np.array([0, 1]), np.arange(2, 8)]  # batches of 1, 2 and 6
    got = exported_scores(out, fitted, new, rows)
    order = np.concatenate(rows)
    flat_want = {f"{t}.{k}": v[order] for t, d in want.items() for k, v in d.items()}
    assert got.keys() == flat_want.keys()
    for k, v in flat_want.items():
        assert got[k].shape == v.shape, k
        np.testing.assert_allclose(got[k], v, atol=ATOL, rtol=0, err_msg=k)
    # the sample without any modality, and one without xray, are among them
    assert not new.presence.iloc[8].any() and not new.presence["xray"].all()


def test_files_beside_the_export(run_dirs, tmp_path) -> None:
    run_dir = run_dirs("early")
    out = export_run(run_dir, "torchscript", tmp_path / "deploy" / "early.pt")
    io = json.loads((tmp_path / "deploy" / "early.io.json").read_text())
    assert io["model"] == "early" and io["format"] == "torchscript" and io["file"] == "early.pt"
    names = [i["name"] for i in io["inputs"]]
    assert names[:2] == ["clinical", "clinical.present"]
    assert names[-3:] == ["report", "report.present", "report.token_mask"]
    assert names[9:13] == ["labs", "labs.present", "labs.token_mask", "labs.times"]
    shapes = {i["name"]: i["shape"] for i in io["inputs"]}
    assert shapes["wsi"] == ["batch", "wsi.tokens", 6]
    assert shapes["clinical"][0] == "batch" and shapes["clinical"][1] > 5  # + indicators
    dtypes = {i["name"]: i["dtype"] for i in io["inputs"]}
    assert dtypes["report"] == "int64" and dtypes["xray.present"] == "bool"
    outputs = {o["name"]: o for o in io["outputs"]}
    assert set(outputs) == {
        "response.prob",
        "subtype.prob",
        "flags.prob",
        "os.risk",
        "os.survival",
        "pfs.risk",
        "age.pred",
    }
    assert (
        outputs["os.survival"]["shape"] == ["batch", 3]
        and len(outputs["os.survival"]["times"]) == 3
    )
    assert outputs["subtype.prob"]["classes"] == ["a", "b", "c"]
    copied = [p.name for p in sorted((tmp_path / "deploy").iterdir())]
    for name in contract_sources(run_dir):
        assert f"early.{name}" in copied
        assert (tmp_path / "deploy" / f"early.{name}").read_bytes() == (run_dir / name).read_bytes()
    assert io["contract"] == [f"early.{n}" for n in contract_sources(run_dir)]
    # the layout travels inside the file too
    extra = {"polyfuse.io.json": ""}
    torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["polyfuse.io.json"])["inputs"] == io["inputs"]


def test_default_output_and_overwrite(run_dirs, tmp_path) -> None:
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(run_dirs("late"), run_dir)
    out = export_run(run_dir, "torchscript")
    assert out == run_dir / "export" / "model.torchscript.pt" and out.is_file()
    before = out.read_bytes()
    with pytest.raises(ConfigError, match=r"already exist.*overwrite"):
        export_run(run_dir, "torchscript")
    assert out.read_bytes() == before
    (run_dir / "export" / "model.torchscript.pt").unlink()  # a companion alone also blocks
    with pytest.raises(ConfigError, match=r"model\.torchscript\.io\.json"):
        export_run(run_dir, "torchscript")
    assert export_run(run_dir, "torchscript", overwrite=True).is_file()
    with pytest.raises(ConfigError, match="unknown export format 'tflite'"):
        export_run(run_dir, "tflite")  # type: ignore[arg-type]


def test_contract_sources_prefers_contract_json(tmp_path) -> None:
    assert contract_sources(tmp_path) == ()
    (tmp_path / "preprocess.json").write_text("{}")
    assert contract_sources(tmp_path) == ()
    (tmp_path / "model.json").write_text("{}")
    assert contract_sources(tmp_path) == ("preprocess.json", "model.json")
    (tmp_path / "contract.json").write_text("{}")
    assert contract_sources(tmp_path) == ("contract.json",)


def test_not_exportable_models_are_refused(run_dirs, tmp_path) -> None:
    """Each model `NOT_EXPORTABLE` lists (none today) is refused up front, with its reason."""
    for name, fmt in REFUSED:
        with pytest.raises(ConfigError, match=f"model '{name}' cannot be exported to {fmt}: "):
            export_run(run_dirs(name), fmt, tmp_path / f"{name}.{fmt}")
        assert NOT_EXPORTABLE[name][fmt]


def test_listed_model_is_refused_with_its_reason(run_dirs, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(NOT_EXPORTABLE, "early", {"onnx": "it needs an operator ONNX lacks"})
    with pytest.raises(ConfigError, match="'early' cannot be exported to onnx: it needs an"):
        export_run(run_dirs("early"), "onnx", tmp_path / "early.onnx")
    assert not (tmp_path / "early.onnx").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_trace_that_fixed_the_presence_pattern_is_refused(fmt, run_dirs, tmp_path) -> None:
    """A model that branches in Python on which samples have a modality traces into a graph
    that keeps the traced branch: the check against the model catches it, nothing is written."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    fitted = FittedModel.load(run_dirs("early"))
    forward = fitted.model.forward

    def branching(inputs):
        out = forward(inputs)
        if bool(inputs["xray"].present.all()):  # never true in the traced batch
            out.logits = {t: v + 1.0 for t, v in out.logits.items()}
        return out

    fitted.model.forward = branching
    # TorchScript keeps the traced branch (caught by the check: outputs differ); torch.export
    # refuses the value-dependent branch outright
    why = "differs from polyfuse's" if fmt == "torchscript" else "exporter failed.*data-dependent"
    with pytest.raises(ConfigError, match=f"model 'early' cannot be exported to {fmt}: .*{why}"):
        export_fitted(fitted, fmt, tmp_path / "early.bin")
    assert list(tmp_path.iterdir()) == []


def test_random_scores_are_refused(run_dirs, tmp_path) -> None:
    """Scores that change from run to run (Monte-Carlo dropout) cannot be checked: refused."""
    fitted = FittedModel.load(run_dirs("early"))
    forward = fitted.model.forward

    def noisy(inputs):
        out = forward(inputs)
        out.logits = {t: v + 0.1 * torch.randn_like(v) for t, v in out.logits.items()}
        return out

    fitted.model.forward = noisy
    with pytest.raises(ConfigError, match=r"'early' cannot be exported to torchscript: .*random"):
        export_fitted(fitted, "torchscript", tmp_path / "early.pt")
    assert list(tmp_path.iterdir()) == []
