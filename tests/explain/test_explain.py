import numpy as np
import pytest

from polyfuse.config import TrainingConfig
from polyfuse.data.dataset import ArraySource, ListSource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.explain.attention import token_attention
from polyfuse.explain.attribution import modality_contributions
from polyfuse.explain.report import explain
from polyfuse.training.fit import train_model

FAST = TrainingConfig(epochs=3, progress=False)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bag_data() -> MultimodalDataset:
    rng = np.random.default_rng(0)
    n = 30
    bags = [rng.normal(size=(int(rng.integers(2, 9)), 5)).astype(np.float32) for _ in range(n)]
    bags[3] = None  # one sample without a bag
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return MultimodalDataset(
        [f"p{i}" for i in range(n)],
        {
            "clin": ModalitySpec("clin", "tabular", (4,), ("a", "b", "c", "d")),
            "wsi": ModalitySpec("wsi", "bag", (5,)),
        },
        {"clin": ArraySource(x, np.ones(n, bool)), "wsi": ListSource(bags)},
        {"y": TaskSpec("y", "binary")},
        {"y": (x[:, 0] > 0).astype(np.float32)},
    )


def test_unused_modality_contributes_exactly_nothing(bag_data):
    fitted = train_model("unimodal", bag_data, training=FAST, hparams={"modality": "clin"}, seed=0)
    table = modality_contributions(fitted, bag_data)
    assert table.loc["wsi", "y"] == 0.0
    assert table.loc["clin", "y"] > 0.0


def test_bag_attention_is_collected_per_sample(bag_data):
    fitted = train_model("early", bag_data, training=FAST, seed=0)
    att = token_attention(fitted, bag_data)["wsi"]
    assert att.shape[0] == 30
    assert np.isnan(att[3]).all()  # the sample without a bag
    sizes = [len(b) for b in bag_data.sources["wsi"].values if b is not None]
    assert att.shape[1] == max(sizes)
    for i, bag in enumerate(bag_data.sources["wsi"].values):
        if bag is not None:
            np.testing.assert_allclose(np.nansum(att[i]), 1.0, rtol=1e-5)


def test_explain_writes_readable_figures(bag_data, tmp_path):
    fitted = train_model("early", bag_data, training=FAST, seed=0)
    files = explain(fitted, bag_data, tmp_path)
    names = {f.name for f in files}
    assert {"contributions.png", "contributions.csv", "top_instances_wsi.png"} <= names
    for f in files:
        if f.suffix == ".png":
            assert f.read_bytes()[:8] == PNG and f.stat().st_size > 5000


def test_healnet_feature_attention_and_bag_instances(bag_data, tmp_path):
    fitted = train_model(
        "healnet",
        bag_data,
        training=FAST,
        hparams={"tabular_as_tokens": True, "depth": 1, "latent_dim": 16, "num_latents": 4},
        seed=0,
    )
    att = token_attention(fitted, bag_data)
    assert att["clin"].shape == (30, 4)
    np.testing.assert_allclose(att["clin"].sum(1), 1.0, rtol=1e-5)  # one map per feature token
    files = {f.name for f in explain(fitted, bag_data, tmp_path)}
    assert {"attention_clin.png", "attention_clin.csv", "top_instances_wsi.csv"} <= files
    table = (tmp_path / "attention_clin.csv").read_text()
    assert all(name in table for name in "abcd")


def test_hierarchical_pair_weights_figure(bag_data, tmp_path):
    fitted = train_model("hierarchical", bag_data, training=FAST, hparams={"dim": 8}, seed=0)
    files = {f.name: f for f in explain(fitted, bag_data, tmp_path)}
    assert files["pair_weights.png"].read_bytes()[:8] == PNG
