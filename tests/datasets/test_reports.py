"""The report cohort of issue #20: deterministic, balanced, its label said only by paraphrases.

No encoder is loaded here; `benchmarks/text_encoders.py` runs them on this cohort.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from polyfuse.datasets.reports import BENIGN, FILLER, MALIGNANT, make_reports
from polyfuse.errors import ConfigError

FINDING = re.compile(r"(?:Impression|Conclusion|Diagnosis|Opinion|Summary): ([^.]+)\.")


def words(texts) -> set[str]:
    """The word types the hashing tokenizer sees (`polyfuse.data.dataset.tokenize`)."""
    return {w for t in texts for w in re.findall(r"\w+", t.lower())}


def truth(frame: pd.DataFrame) -> np.ndarray:
    """The finding each report states: the label before noise."""
    return np.where(frame["flipped"], 1 - frame["label"], frame["label"])


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    return make_reports(2000, seed=1)


def test_the_same_seed_gives_the_same_cohort():
    pd.testing.assert_frame_equal(make_reports(150, seed=3), make_reports(150, seed=3))
    assert not make_reports(150, seed=3)["report"].equals(make_reports(150, seed=4)["report"])


def test_columns_ids_and_balance():
    frame = make_reports(400, seed=0)
    assert list(frame.columns) == ["id", "report", "age", "label", "flipped"]
    assert frame["id"].is_unique and frame["report"].notna().all()
    assert truth(frame).sum() == 200  # exactly the prevalence before noise
    assert 0.4 < frame["label"].mean() < 0.6
    assert 0.02 < frame["flipped"].mean() < 0.09  # noise 5 %
    assert frame["age"].between(18, 95).all()


def test_each_report_states_one_paraphrase_of_its_true_finding(big):
    for report, y in zip(big["report"], truth(big), strict=True):
        found = FINDING.findall(report)
        assert len(found) == 1, report
        assert found[0] in (MALIGNANT if y == 1 else BENIGN), report


def test_the_two_vocabularies_and_the_filler_share_no_word():
    malignant, benign, filler = words(MALIGNANT), words(BENIGN), words(FILLER)
    assert malignant & benign == set()
    assert (malignant | benign) & filler == set()


def test_no_filler_word_separates_the_classes(big):
    """Outside the finding every word is as common in both classes (2000 reports: a share
    differs by chance by ~0.02)."""
    y = truth(big)
    bags = [words([r]) for r in big["report"]]
    label_words = words(MALIGNANT) | words(BENIGN)
    for word in words(big["report"]) - label_words:
        has = np.array([word in b for b in bags])
        assert abs(has[y == 1].mean() - has[y == 0].mean()) < 0.08, word


def test_no_single_word_of_the_findings_covers_its_class(big):
    """Even the commonest finding word is in under half of its class's reports, so no one word
    gives the label: a model must link many paraphrases."""
    y = truth(big)
    for cls, phrases in ((1, MALIGNANT), (0, BENIGN)):
        reports = big["report"][y == cls]
        for word in words(phrases):
            share = reports.str.lower().str.contains(rf"\b{re.escape(word)}\b").mean()
            assert share < 0.5, (cls, word, share)


def test_many_paraphrases_are_rare_at_the_benchmark_size():
    frame = make_reports(200, seed=0)
    y = truth(frame)
    for cls, phrases in ((1, MALIGNANT), (0, BENIGN)):
        counts = Counter(FINDING.findall(" ".join(frame["report"][y == cls])))
        rare = [p for p in phrases if counts[p] <= 2]
        assert len(rare) >= len(phrases) // 3, counts
        assert max(counts.values()) < 0.3 * (y == cls).sum()


@pytest.mark.parametrize(
    "kwargs",
    [{"n": 1}, {"noise": 0.5}, {"prevalence": 0.0}, {"prevalence": 1.0}, {"zipf": -1.0}],
)
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ConfigError, match="make_reports"):
        make_reports(**kwargs)
