"""Safe loading: resume checkpoints and fitted runs are safetensors + JSON, never pickles."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from polyfuse.config import TrainingConfig
from polyfuse.errors import DataError
from polyfuse.training.checkpoint import decode, encode, load_checkpoint, save_checkpoint
from polyfuse.training.fit import FittedModel, train_model

FAST = TrainingConfig(epochs=2, batch_size=32, patience=5, checkpoint_every=1, progress=False)


def test_round_trip_keeps_types_tensors_and_special_floats(tmp_path):
    w = torch.randn(3, 2)
    state = {
        "epoch": 3,
        "loops": {"fit": {"done": False, "best": math.inf, "none": None}},
        "optimizer_states": [{"state": {0: {"step": torch.tensor(4.0), "exp_avg": w}}}],
        "param_groups": [{"betas": (0.9, 0.999), "params": [0, 1], "lr": 1e-3}],
        "tied": {"a": w, "b": w},  # two names for one storage
        "__weird__": {"__tensor__": "not a tensor"},
        "nan": float("nan"),
    }
    save_checkpoint(state, tmp_path / "last.ckpt")
    back = load_checkpoint(tmp_path / "last.ckpt")
    assert back["epoch"] == 3 and back["loops"]["fit"]["best"] == math.inf
    assert back["loops"]["fit"]["none"] is None and back["loops"]["fit"]["done"] is False
    opt = back["optimizer_states"][0]["state"]
    assert list(opt) == [0]  # the integer key survives
    torch.testing.assert_close(opt[0]["exp_avg"], w)
    assert back["param_groups"][0]["betas"] == (0.9, 0.999)  # a tuple again
    torch.testing.assert_close(back["tied"]["b"], w)
    assert back["__weird__"] == {"__tensor__": "not a tensor"}
    assert math.isnan(back["nan"])
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left
    with pytest.raises(TypeError, match="cannot hold a object"):
        encode({"x": object()}, {})
    assert decode(encode([1, (2, 3)], {}), {}) == [1, (2, 3)]


def test_a_pickle_checkpoint_is_refused_before_training(signal_data, tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save({"epoch": 1}, ckpt / "last.ckpt")  # Lightning's default format: a pickle
    with pytest.raises(DataError, match="never unpickles"):
        train_model("early", signal_data, training=FAST, checkpoint_dir=ckpt, resume=True)
    (ckpt / "last.ckpt").write_bytes(pickle.dumps({"epoch": 1}))
    with pytest.raises(DataError, match=r"pickle checkpoints .* are refused"):
        load_checkpoint(ckpt / "last.ckpt")


def test_resume_never_unpickles(signal_data, tmp_path, monkeypatch):
    ckpt = tmp_path / "ckpt"
    train_model("early", signal_data, training=FAST, checkpoint_dir=ckpt)
    assert (ckpt / "last.ckpt").read_bytes()[8:9] == b"{"  # safetensors: u64 size, JSON header

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    more = FAST.model_copy(update={"epochs": 3})
    train_model("early", signal_data, training=more, checkpoint_dir=ckpt, resume=True)
    assert load_checkpoint(ckpt / "last.ckpt")["epoch"] == 3


def test_fitted_run_with_pickled_or_missing_weights_is_refused(signal_data, tmp_path):
    fitted = train_model("early", signal_data, training=FAST)
    run = tmp_path / "run"
    fitted.save(run)
    FittedModel.load(run)  # the complete run loads
    weights = run / "model.safetensors"
    torch.save(fitted.model.state_dict(), run / "model.pt")
    weights.rename(tmp_path / "aside.safetensors")
    with pytest.raises(DataError, match=r"model\.safetensors is missing; model\.pt would need"):
        FittedModel.load(run)
    weights.write_bytes((run / "model.pt").read_bytes())  # a pickle under the right name
    with pytest.raises(DataError, match="not a readable safetensors file"):
        FittedModel.load(run)
    weights.write_bytes((tmp_path / "aside.safetensors").read_bytes()[:100])  # truncated
    with pytest.raises(DataError, match="not a readable safetensors file"):
        FittedModel.load(run)
    (run / "model.json").write_text("{ half")
    with pytest.raises(DataError, match="corrupt"):
        FittedModel.load(run)
