"""Issue #20 end to end: a text report, a 2D image and a 3D volume train from a config through
pretrained encoders (weights the test writes), new patients are embedded by the same encoders,
and `polyfuse embed` writes files that train to exactly the same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import clean_error, run
from PIL import Image
from safetensors.torch import save_file

from polyfuse.config import load_config
from polyfuse.inference.predictor import Predictor
from polyfuse.training.experiment import run_cv, run_fit

nets = pytest.importorskip("monai.networks.nets")
pytest.importorskip("wordllama")

REPORTS = ["carcinoma of the adrenal", "benign adenoma", "invasive tumour", "no lesion seen"]


def write_site(folder: Path, n: int = 24, seed: int = 0) -> pd.DataFrame:
    """`n` patients: a report, a PNG scan, a 3D volume (.npy), an age and a label `y`; patient
    3 has no report and patient 4 no volume."""
    rng = np.random.default_rng(seed)
    (folder / "scans").mkdir(parents=True, exist_ok=True)
    y = np.arange(n) % 2
    for i in range(n):
        pixels = rng.uniform(0, 120, (20, 20)) + 100 * y[i]
        Image.fromarray(pixels.astype(np.uint8)).save(folder / "scans" / f"s{i}.png")
        volume = rng.normal(0, 1, (1, 6, 10, 10)) + y[i]
        np.save(folder / "scans" / f"v{i}.npy", volume.astype(np.float32))
    frame = pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(n)],
            "age": rng.normal(60, 10, n),
            "report": [REPORTS[(2 * (i % 2) + i // 2) % 4] for i in range(n)],
            "scan": [f"scans/s{i}.png" for i in range(n)],
            "volume": [f"scans/v{i}.npy" for i in range(n)],
            "y": y,
        }
    )
    frame.loc[3, "report"] = None
    frame.loc[4, "volume"] = None
    frame.to_csv(folder / "patients.csv", index=False)
    return frame


def write_weights(folder: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    two = nets.resnet18(spatial_dims=2, n_input_channels=3, num_classes=2)
    three = nets.resnet18(spatial_dims=3, n_input_channels=1, num_classes=2, shortcut_type="A")
    save_file(two.state_dict(), str(folder / "resnet2d.safetensors"))
    save_file(three.state_dict(), str(folder / "resnet3d.safetensors"))
    return folder / "resnet2d.safetensors", folder / "resnet3d.safetensors"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    write_site(folder)
    write_weights(folder)
    config = {
        "name": "encoded",
        "data": {
            "table": "patients.csv",
            "modalities": {
                "clinical": {"kind": "tabular", "columns": ["age"]},
                "report": {
                    "kind": "text",
                    "text_column": "report",
                    "encoder": {"name": "wordllama"},
                },
                "scan": {
                    "kind": "image",
                    "path_column": "scan",
                    "encoder": {"name": "resnet18", "weights": "resnet2d.safetensors"},
                },
                "volume": {
                    "kind": "image",
                    "path_column": "volume",
                    "encoder": {"name": "resnet18", "weights": "resnet3d.safetensors"},
                },
            },
            "tasks": {"y": {"type": "binary", "column": "y"}},
        },
        "model": {"name": "late"},
        "training": {"epochs": 3, "batch_size": 8, "progress": False, "val_fraction": 0.25},
        "cv": {"folds": 2, "repeats": 1},
        "output": "runs",
    }
    (folder / "experiment.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_text_image_and_volume_train_through_their_encoders(site):
    """The fitted model saw each modality as its embeddings (the encoders' widths),
    and the contract records each encoder with its weights' hash."""
    run_dir, fitted = run_fit(load_config(site / "experiment.yaml"), overwrite=True)
    widths = {m: s.shape for m, s in fitted.contract.specs.items()}
    assert widths == {"clinical": (1,), "report": (256,), "scan": (512,), "volume": (512,)}
    contract = (run_dir / "contract.json").read_text()
    assert '"weights_sha256"' in contract and '"wordllama"' in contract


def test_new_patients_are_embedded_by_the_training_encoders(site, tmp_path):
    """A new site's scans go through the same backbone: its predictions equal those of the
    fitted model on the same patients read in-process; a changed weights file is refused."""
    run_dir, fitted = run_fit(load_config(site / "experiment.yaml"), overwrite=True)
    new = tmp_path / "new"
    frame = write_site(new, n=6, seed=1)
    predictor = Predictor.load(run_dir)
    scores = predictor.predict(new / "patients.csv")
    assert scores.shape[0] == 6 and np.isfinite(scores["y.prob"]).all()
    data = predictor.contract.read_new(frame, root=new, where="patients.csv")
    assert data.specs["scan"].kind == "tabular"
    direct = fitted.predict(data)["y"]["prob"]
    np.testing.assert_allclose(scores["y.prob"].to_numpy(), np.ravel(direct), atol=1e-6)

    weights = site / "resnet3d.safetensors"
    saved = weights.read_bytes()
    try:
        torch.manual_seed(1)
        other = nets.resnet18(spatial_dims=3, n_input_channels=1, num_classes=2, shortcut_type="A")
        save_file(other.state_dict(), str(weights))
        result = run("predict", run_dir, new / "patients.csv", "-o", tmp_path / "p.csv")
        clean_error(result, "resnet3d.safetensors", "changed since the model was trained")
    finally:
        weights.write_bytes(saved)


def test_embed_writes_files_that_train_to_the_same_numbers(site, tmp_path):
    """`polyfuse embed` then `cv` on its experiment.yaml gives exactly the metrics of `cv` on
    the raw inputs (the same embeddings, the same folds, no encoder loaded the second time)."""
    out = tmp_path / "embedded"
    result = run("embed", site / "experiment.yaml", "-o", out)
    assert result.exit_code == 0, result.output
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert manifest.filter(like="report__wordllama_").shape[1] == 256
    assert manifest.filter(like="report__wordllama_").iloc[3].isna().all()  # no report: absent
    embedded = load_config(out / "experiment.yaml")
    assert all(m.encoder is None for m in embedded.data.modalities.values())
    _, raw = run_cv(load_config(site / "experiment.yaml"), overwrite=True)
    _, files = run_cv(embedded.model_copy(update={"name": "from-files"}), overwrite=True)
    pd.testing.assert_frame_equal(raw.folds, files.folds)

    again = run("embed", site / "experiment.yaml", "-o", out)  # a re-run: its own folder
    assert again.exit_code == 0, again.output
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    clean_error(run("embed", site / "experiment.yaml", "-o", mine), "polyfuse did not write")
    assert (mine / "notes.txt").read_text() == "keep"


def test_embed_keeps_the_modalities_it_leaves_readable(site, tmp_path):
    """A modality without an encoder still reads its files from the written experiment when
    the embeddings go inside the data root; outside it, the command refuses, naming it. A
    fine-tuned backbone has nothing to embed once: skipped, or refused when asked for."""
    from polyfuse.data.manifest import load_data

    config = yaml.safe_load((site / "experiment.yaml").read_text())
    del config["data"]["modalities"]["scan"]["encoder"]  # the scans stay pixels
    config["data"]["modalities"]["volume"]["encoder"]["trainable"] = True
    raw = site / "raw.yaml"
    raw.write_text(yaml.safe_dump(config))
    clean_error(
        run("embed", raw, "-o", tmp_path / "outside"), "modality 'scan'", "inside the data root"
    )
    clean_error(run("embed", raw, "-o", site / "e2", "-m", "volume"), "nothing to embed once")
    result = run("embed", raw, "-o", site / "e1")
    assert result.exit_code == 0, result.output
    data = load_data(load_config(site / "e1" / "experiment.yaml").data)
    assert data.specs["scan"].kind == "image" and data.specs["report"].kind == "tabular"
    assert data.specs["volume"].backbone is not None  # still fine-tuned by the model
