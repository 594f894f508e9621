"""A model that cannot do what it was asked says so (FallbackWarning), and only then."""

from __future__ import annotations

import warnings

import pytest

from polyfuse.data.specs import ModalitySpec
from polyfuse.errors import FallbackWarning
from polyfuse.models.registry import create_model, list_models


def test_default_models_are_silent(specs, tasks, inputs) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        for name in list_models():
            create_model(name, specs, tasks)(inputs)


def _only(specs, *names):
    return {m: specs[m] for m in names}


def test_hierarchical_max_order_beyond_the_modalities(specs, tasks) -> None:
    two = _only(specs, "clinical", "xray")
    with pytest.warns(FallbackWarning, match=r"max_order=3 is capped at 2"):
        model = create_model("hierarchical", two, tasks, max_order=3)
    assert model.max_order == 2 and model.pairs == (("clinical", "xray"),)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        create_model("hierarchical", _only(specs, "clinical", "xray", "wsi"), tasks, max_order=3)
        create_model("hierarchical", _only(specs, "clinical"), tasks)  # one modality: no pair


def test_synergies_zero_fill_names_the_modalities_it_cannot_fill(specs, tasks) -> None:
    with pytest.warns(FallbackWarning, match=r"zero_fill.*\['report'\]"):
        create_model("synergies", specs, tasks, missing="zero_fill")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        # with a memory, the report is filled (its memory reads no input)
        create_model(
            "synergies",
            specs,
            tasks,
            missing="zero_fill",
            memory_modalities=["wsi", "labs", "report"],
        )
        create_model("synergies", _only(specs, "clinical", "xray"), tasks, missing="zero_fill")


def test_mcat_without_omics_queries_the_first_modality(specs, tasks) -> None:
    images = _only(specs, "xray", "wsi")
    with pytest.warns(FallbackWarning, match=r"first modality 'xray'"):
        model = create_model("mcat", images, tasks)
    assert model.queries == ["xray"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        create_model("mcat", images, tasks, queries=["wsi"])


@pytest.mark.parametrize("name", ["healnet", "perceiver"])
def test_weight_tying_at_depth_one_has_nothing_to_tie(name, tasks) -> None:
    specs = {"x": ModalitySpec("x", "tabular", (4,))}
    with pytest.warns(FallbackWarning, match="weight_tie_layers has no effect at depth 1"):
        create_model(name, specs, tasks, depth=1, weight_tie_layers=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        create_model(name, specs, tasks, depth=2, weight_tie_layers=True)
