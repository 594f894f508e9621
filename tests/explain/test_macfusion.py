"""MACFusion inspection of EHPAL-Net: tables equal the aux tensors, figures only where they exist."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from polyfuse.config import TrainingConfig
from polyfuse.data.dataset import ArraySource, ListSource, MultimodalDataset
from polyfuse.data.specs import ModalitySpec, TaskSpec
from polyfuse.explain.attention import token_attention
from polyfuse.explain.macfusion import (
    MacKey,
    collect_macfusion,
    explain_macfusion,
    parse_key,
    stream_names,
)
from polyfuse.explain.report import explain
from polyfuse.training.fit import train_model

FAST = TrainingConfig(epochs=1, progress=False)
TINY = {"width": 0.125, "grid_size": 4, "adapter_dim": 8}
PNG = b"\x89PNG\r\n\x1a\n"
N = 24
ABSENT = 3  # the sample without a bag


def cohort(names: tuple[str, str, str] = ("clin", "rna", "wsi")) -> MultimodalDataset:
    clin, rna, wsi = names
    rng = np.random.default_rng(0)
    bags = [rng.normal(size=(int(rng.integers(2, 6)), 3)).astype(np.float32) for _ in range(N)]
    bags[ABSENT] = None
    x = rng.normal(size=(N, 4)).astype(np.float32)
    r = rng.normal(size=(N, 6)).astype(np.float32)
    return MultimodalDataset(
        [f"p{i}" for i in range(N)],
        {
            clin: ModalitySpec(clin, "tabular", (4,)),
            rna: ModalitySpec(rna, "tabular", (6,)),
            wsi: ModalitySpec(wsi, "bag", (3,)),
        },
        {clin: ArraySource(x, np.ones(N, bool)), rna: ArraySource(r, np.ones(N, bool))}
        | {wsi: ListSource(bags)},
        {"y": TaskSpec("y", "binary")},
        {"y": (x[:, 0] > 0).astype(np.float32)},
    )


@pytest.fixture(scope="module")
def data() -> MultimodalDataset:
    return cohort()


@pytest.fixture(scope="module")
def fitted(data):
    return train_model("ehpal", data, training=FAST, hparams=TINY, seed=0)


@pytest.fixture(scope="module")
def written(fitted, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("explain")
    return {f.name: f for f in explain(fitted, data, out)}


@pytest.fixture(scope="module")
def direct_aux(fitted, data) -> dict[str, np.ndarray]:
    """aux of one forward pass over every sample, straight from the model."""
    batch = fitted.preprocessor.transform(data).batch(np.arange(N))
    fitted.model.eval()
    with torch.no_grad():
        aux = fitted.model(batch.inputs).aux
    return {k: v.numpy() for k, v in aux.items()}


def test_keys_are_parsed_and_others_ignored():
    assert parse_key("attention/stage3/ehf2/mac1/b") == MacKey(3, "ehf2/mac1", "b", "attention")
    assert parse_key("gate/stage1/ehf1/mac2/a") == MacKey(1, "ehf1/mac2", "a", "gate")
    for other in ("attention/layer0/rna", "gate/rna", "pair_weights", "attention/stage1/a"):
        assert parse_key(other) is None
    assert collect_macfusion([{"gate/rna": torch.ones(2, 1)}]) == {}


def test_streams_are_named_after_the_injection_schedule():
    names = stream_names([["clin", "rna"], ["clin", "rna"], ["wsi"], ["clin"]], 4)
    assert names[1, "a"] == names[2, "a"] == "clin" and names[2, "b"] == "rna"
    assert names[3, "a"] == "clin+rna" and names[3, "b"] == "wsi"
    assert names[4, "a"] == "clin+rna+wsi" and names[4, "b"] == "clin"  # re-injected
    assert stream_names(None, 2)[2, "b"] == "stream b"


def test_tables_equal_the_mean_of_the_aux_tensors(written, direct_aux, fitted):
    assert fitted.model.schedule == [["clin", "rna"], ["clin", "rna"], ["wsi"]]
    table = pd.read_csv(written["macfusion_attention.csv"])
    assert set(table["stage"]) == {1, 2, 3}
    assert set(table["layer"]) == {"ehf1/mac1", "ehf1/mac2", "ehf2/mac1", "ehf2/mac2"}
    has_bag = np.arange(N) != ABSENT
    for (stage, layer, stream), part in table.groupby(["stage", "layer", "stream"]):
        aux = direct_aux[f"attention/stage{stage}/{layer}/{stream}"]
        rows = aux[has_bag] if (stage, stream) == (3, "b") else aux
        assert (part["n"] == len(rows)).all()
        np.testing.assert_allclose(part.sort_values("unit")["mean"], rows.mean(0), atol=1e-6)
        np.testing.assert_allclose(part.sort_values("unit")["sd"], rows.std(0, ddof=1), atol=1e-6)
        np.testing.assert_allclose(part["mean"].sum(), 1.0, rtol=1e-5)  # a softmax over units
    assert (direct_aux["attention/stage3/ehf1/mac1/b"][ABSENT] == 0).all()  # absent: left out
    names = table.drop_duplicates(["stage", "stream"]).set_index(["stage", "stream"])["modality"]
    assert names[1, "a"] == "clin" and names[2, "b"] == "rna"
    assert names[3, "a"] == "clin+rna" and names[3, "b"] == "wsi"

    gates = pd.read_csv(written["macfusion_gates.csv"])
    assert len(gates) == 3 * 4 * 2
    for row in gates.itertuples():
        g = direct_aux[f"gate/stage{row.stage}/{row.layer}/{row.stream}"][:, 0]
        g = g[has_bag] if (row.stage, row.stream) == (3, "b") else g
        np.testing.assert_allclose(row.mean, g.mean(), atol=1e-6)
        assert row.n == len(g)
        # σ(·) ∈ (0, 1), which float32 rounds to 1.0 once the logit passes ≈ 17
        assert 0.0 <= row.min <= row.median <= row.max <= 1.0


def test_figures_are_valid_pngs(written):
    from PIL import Image

    for name in ("macfusion_attention.png", "macfusion_gates.png"):
        path = written[name]
        assert path.read_bytes()[:8] == PNG
        with Image.open(path) as image:
            image.verify()
    assert not any(p.name.startswith(".") for p in path.parent.iterdir())  # no temporaries left


def test_models_without_macfusion_get_no_such_files(data, tmp_path):
    fitted = train_model("early", data, training=FAST, seed=0)
    assert explain_macfusion(fitted, data, tmp_path) == []
    names = {f.name for f in explain(fitted, data, tmp_path)}
    assert "contributions.png" in names
    assert not any(n.startswith("macfusion") for n in names)
    assert not any(p.name.startswith("macfusion") for p in tmp_path.iterdir())


def test_modalities_named_like_streams_are_not_token_attention():
    """A modality called "b" must not collect MACFusion's stream-b attention as its tokens."""
    data = cohort(("a", "b", "c"))
    fitted = train_model("ehpal", data, training=FAST, hparams=TINY, seed=0)
    assert token_attention(fitted, data) == {}
