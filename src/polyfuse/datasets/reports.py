"""A synthetic cohort of short pathology and radiology reports whose label lies in their meaning.

Issue #20 compares the text encoders (a trainable bag of hashed words against the pretrained
`wordllama` and `minilm` embeddings). That comparison needs reports in which the label is said
in many different words: each report states its finding with one of many paraphrases of
malignancy ("invasive carcinoma", "metastatic deposit", "malignant neoplasm", …) or of
benignity ("no evidence of malignancy", "reactive changes only", "fibroadenoma", …), drawn
with Zipf-like frequencies, so that a few paraphrases are common and most are rare. A model
that learns words from a few hundred patients meets unseen paraphrases in its test folds; one
that knows what the words mean does not. The paraphrases of the two classes share no word, and
the rest of each report (specimen, site, size, clinical details, sign-off) is drawn
independently of the label, so no surface word outside the finding gives the label away.

Columns: `id`, `report`, `age` (a weak covariate: older on average when malignant), `label`
(1 = malignant, after label noise) and `flipped` (whether noise flipped the label; the truth of
the generator, not a feature).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from polyfuse.errors import ConfigError

__all__ = ["BENIGN", "FILLER", "MALIGNANT", "make_reports"]

MALIGNANT: tuple[str, ...] = (
    "invasive carcinoma",
    "malignant neoplasm",
    "cancerous growth",
    "invasive tumour",
    "metastatic deposit",
    "adenocarcinoma",
    "high-grade sarcoma",
    "lymphoma",
    "malignant melanoma",
    "poorly differentiated carcinoma",
    "secondary tumour spread",
    "neoplastic infiltration",
    "infiltrating ductal carcinoma",
    "cancer",
    "tumour with lymphovascular invasion",
    "mesothelioma",
    "leiomyosarcoma",
    "glioblastoma",
    "hepatocellular carcinoma",
    "transitional cell carcinoma",
    "neuroendocrine carcinoma",
    "anaplastic tumour",
    "spiculated mass in keeping with cancer",
    "destructive lytic process",
    "widespread metastases",
    "malignant transformation",
    "aggressive neoplastic process",
    "blastic metastasis",
    "seminoma",
    "myeloma",
)
"""Paraphrases of a malignant finding."""

BENIGN: tuple[str, ...] = (
    "benign appearances",
    "no evidence of malignancy",
    "reactive changes only",
    "noncancerous tissue",
    "simple cyst",
    "fibroadenoma",
    "lipoma",
    "haemangioma",
    "hyperplasia without atypia",
    "chronic inflammation",
    "normal parenchyma",
    "granulomatous inflammation",
    "fibrocystic change",
    "no atypia identified",
    "negative for neoplasia",
    "unremarkable appearances",
    "scar",
    "adenoma",
    "nodular hyperplasia",
    "benign cyst",
    "harmless calcification",
    "hamartoma",
    "reassuring features",
    "abscess",
    "granulation tissue",
    "fat necrosis",
    "no worrying features",
    "inflammatory polyp",
    "schwannoma",
    "osteochondroma",
)
"""Paraphrases of a benign finding."""

_SPECIMENS = (
    "Core biopsy",
    "Excision specimen",
    "CT scan",
    "MRI study",
    "Ultrasound-guided biopsy",
    "Resection specimen",
    "Fine needle aspirate",
)
_SITES = (
    "the left breast",
    "the right breast",
    "the right lung",
    "the left lung",
    "the liver",
    "the thyroid",
    "the left kidney",
    "the sigmoid colon",
    "the adrenal gland",
    "the prostate",
    "the upper back",
    "the thigh",
    "the pancreas",
    "the stomach",
)
_SIZES = ("The area measures {} mm.", "Largest dimension {} mm.", "Size approximately {} mm.")
_DETAILS = (
    "Clinical details: incidental finding.",
    "Clinical details: palpable lump.",
    "Clinical details: follow-up imaging.",
    "Clinical details: pain on examination.",
    "Clinical details: referred by the general practitioner.",
    "Clinical details: abnormal screening result.",
)
_LEADS = ("Impression", "Conclusion", "Diagnosis", "Opinion", "Summary")
_CLOSINGS = (
    "",
    " Discussed at the multidisciplinary meeting.",
    " Report verified by the consultant.",
    " Clinical correlation advised.",
    " Previous study reviewed.",
)
FILLER: tuple[str, ...] = (
    *_SPECIMENS,
    *_SITES,
    *_SIZES,
    *_DETAILS,
    *_LEADS,
    *_CLOSINGS,
    "from",
)
"""The text every report shares whatever its label (templates and their slots)."""


def make_reports(
    n: int = 200,
    seed: int = 0,
    *,
    noise: float = 0.05,
    prevalence: float = 0.5,
    zipf: float = 0.8,
    age_effect: float = 5.0,
) -> pd.DataFrame:
    """`n` patients, each with a report stating one paraphrase of their finding.

    Args:
        n: patients.
        seed: everything (paraphrase frequencies included) is drawn from it.
        noise: the share of labels flipped after the report was written.
        prevalence: the share of malignant findings (exactly `round(n * prevalence)`).
        zipf: paraphrase `k` (in a per-seed random order) is drawn with weight `1 / k**zipf`:
            0 makes them equally likely; larger values make a few common and the rest rare.
        age_effect: years by which malignant patients are older on average (age sd 12).
    """
    if n < 2:
        raise ConfigError(f"make_reports needs n >= 2, got {n}")
    if not 0.0 <= noise < 0.5:
        raise ConfigError(f"make_reports: noise must be in [0, 0.5), got {noise}")
    if not 0.0 < prevalence < 1.0:
        raise ConfigError(f"make_reports: prevalence must be in (0, 1), got {prevalence}")
    if zipf < 0:
        raise ConfigError(f"make_reports: zipf must be >= 0, got {zipf}")
    rng = np.random.default_rng(seed)
    truth = np.zeros(n, dtype=int)
    truth[: round(n * prevalence)] = 1
    truth = rng.permutation(truth)
    positives = int(truth.sum())
    findings = {
        1: _draw(MALIGNANT, positives, zipf, rng),
        0: _draw(BENIGN, n - positives, zipf, rng),
    }
    reports = [_report(findings[int(y)].pop(), rng) for y in truth]
    flipped = rng.random(n) < noise
    age = rng.normal(57.0 + age_effect * truth, 12.0).clip(18, 95).round()
    return pd.DataFrame(
        {
            "id": [f"R{i:04d}" for i in range(n)],
            "report": reports,
            "age": age,
            "label": np.where(flipped, 1 - truth, truth),
            "flipped": flipped,
        }
    )


def _draw(phrases: tuple[str, ...], count: int, zipf: float, rng: np.random.Generator) -> list[str]:
    """`count` paraphrases, Zipf-weighted over a random order of `phrases` (a list to pop from:
    the first patient's is last)."""
    order = rng.permutation(len(phrases))
    weights = 1.0 / np.arange(1, len(phrases) + 1) ** zipf
    picks = rng.choice(order, size=count, p=weights / weights.sum())
    return [phrases[k] for k in picks[::-1]]


def _report(finding: str, rng: np.random.Generator) -> str:
    """One report: specimen and site, size, clinical details, the finding, a sign-off."""

    def pick(options: tuple[str, ...]) -> str:
        return options[rng.integers(len(options))]

    size = pick(_SIZES).format(int(rng.integers(4, 80)))
    return (
        f"{pick(_SPECIMENS)} from {pick(_SITES)}. {size} {pick(_DETAILS)} "
        f"{pick(_LEADS)}: {finding}.{pick(_CLOSINGS)}"
    )
