"""Fine-tuned pretrained backbones (`encoder: {trainable: true}`): the model holds the
backbone, its weights train with the model's, and a model that reads pixels its own way
refuses it rather than silently ignoring it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

from polyfuse.config import load_config
from polyfuse.data.dataset import ModalityBatch
from polyfuse.data.specs import Backbone, ModalitySpec, TaskSpec
from polyfuse.embed.images import BackboneNet
from polyfuse.errors import ConfigError
from polyfuse.inference.predictor import Predictor
from polyfuse.models.registry import create_model, list_models, model_class
from polyfuse.training.experiment import run_fit

nets = pytest.importorskip("monai.networks.nets")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "resnet.safetensors"
    save_file(
        nets.resnet18(spatial_dims=2, n_input_channels=3, num_classes=3).state_dict(), str(path)
    )
    return path


@pytest.fixture(scope="module")
def vit_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    vit = nets.ViT(
        in_channels=3,
        img_size=(64, 64),
        patch_size=16,
        hidden_size=384,
        mlp_dim=1536,
        num_layers=12,
        num_heads=6,
        classification=False,
        spatial_dims=2,
    )
    path = tmp_path_factory.mktemp("w") / "vit_s.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    return path


def specs_with(backbone: Backbone) -> dict[str, ModalitySpec]:
    return {
        "clinical": ModalitySpec("clinical", "tabular", (3,)),
        "scan": ModalitySpec("scan", "image", (1, 32, 32), backbone=backbone),
    }


TASKS = {"y": TaskSpec("y", "binary")}


def batch(n: int = 4) -> dict[str, ModalityBatch]:
    g = torch.Generator().manual_seed(0)
    present = torch.tensor([True, True, False, True][:n])
    scan = torch.rand(n, 1, 32, 32, generator=g) * 255 * present.view(-1, 1, 1, 1)
    return {
        "clinical": ModalityBatch(torch.randn(n, 3, generator=g), torch.ones(n, dtype=torch.bool)),
        "scan": ModalityBatch(scan, present),
    }


@pytest.mark.parametrize("name", list_models())
def test_every_model_fine_tunes_the_backbone_or_refuses_it(name, weights):
    """A model that says it fine-tunes holds the backbone and its gradient reaches the
    backbone's first layer; any other refuses, naming the modality and the frozen way out."""
    specs = specs_with(Backbone("resnet18", str(weights), (32, 32)))
    if not model_class(name).fine_tunes_backbones:
        with pytest.raises(ConfigError, match=r"'scan'.*trainable: false"):
            create_model(name, specs, TASKS)
        return
    model = create_model(name, specs, TASKS, **({"modality": "scan"} if name == "unimodal" else {}))
    backbones = [m for m in model.modules() if isinstance(m, BackboneNet)]
    assert len(backbones) == 1
    model.train()
    out = model(batch())
    out.logits["y"].sum().backward()
    grad = backbones[0].net.conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_batch_norm_keeps_its_pretrained_statistics_while_fine_tuning(weights):
    """In training mode too: a sample's features do not depend on its batch company, and the
    statistics do not move; the scale and shift still train."""
    net = BackboneNet("resnet18", weights, 2, (32, 32)).train()
    before = net.net.bn1.running_mean.clone()
    images = torch.rand(4, 1, 32, 32) * 255
    torch.testing.assert_close(net(images)[:1], net(images[:1]))
    torch.testing.assert_close(net.net.bn1.running_mean, before)
    assert net.net.bn1.weight.requires_grad


def test_synergies_paper_preset_takes_the_vit_tokens_without_a_memory(vit_weights):
    """The paper's image path: ViT-S patch tokens (384 wide: no projection at d = 384) straight
    into the joint transformer; the raw-pixel paper preset no longer gives the image a memory."""
    specs = specs_with(Backbone("vit-s", str(vit_weights), (64, 64)))
    model = create_model("synergies", specs, TASKS, preset="paper")
    tokenizer = model.tokenizers["scan"]
    assert tokenizer.num_patches == 16 and isinstance(tokenizer.proj, torch.nn.Identity)
    assert "scan" not in model.memory_modalities
    small = create_model("synergies", specs, TASKS, memory_threshold=8)  # 16 tokens > 8
    assert small.memory_modalities == ()
    tokens, mask = tokenizer(batch()["scan"])
    assert tokens.shape == (4, 16, 384) and mask[:, 0].tolist() == [True, True, False, True]
    raw = {"scan": ModalitySpec("scan", "image", (3, 384, 384))}
    assert create_model("synergies", raw, TASKS, preset="paper").memory_modalities == ()
    assert create_model("synergies", raw, TASKS).memory_modalities == ("scan",)  # the default


def test_a_fine_tuned_backbone_trains_and_predicts_from_its_run(tmp_path, weights):
    """From a config: the backbone's weights move during training, the run saves them, and the
    loaded run predicts exactly what the fitted model does."""
    rng = np.random.default_rng(0)
    (tmp_path / "scans").mkdir()
    n = 16
    for i in range(n):
        pixels = rng.uniform(0, 100, (24, 24)) + 120 * (i % 2)
        Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "scans" / f"s{i}.png")
    frame = pd.DataFrame(
        {"id": [f"p{i}" for i in range(n)], "scan": [f"scans/s{i}.png" for i in range(n)]}
    )
    frame["y"] = np.arange(n) % 2
    frame.to_csv(tmp_path / "patients.csv", index=False)
    encoder = {"name": "resnet18", "weights": str(weights), "trainable": True, "size": [32, 32]}
    config = {
        "data": {
            "table": "patients.csv",
            "modalities": {"scan": {"kind": "image", "path_column": "scan", "encoder": encoder}},
            "tasks": {"y": {"type": "binary", "column": "y"}},
        },
        "model": {"name": "late"},
        "training": {"epochs": 2, "batch_size": 8, "progress": False, "val_fraction": 0.25},
        "output": "runs",
    }
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(config))
    run_dir, fitted = run_fit(load_config(tmp_path / "experiment.yaml"))
    saved = load_file(str(run_dir / "model.safetensors"))
    key = next(k for k in saved if k.endswith("backbone.net.conv1.weight"))
    assert not torch.equal(saved[key], load_file(str(weights))["conv1.weight"])
    scores = Predictor.load(run_dir).predict(tmp_path / "patients.csv")
    direct = fitted.predict(fitted.contract.read_new(frame, root=tmp_path, where="p"))
    np.testing.assert_allclose(scores["y.prob"], np.ravel(direct["y"]["prob"]), atol=1e-6)
